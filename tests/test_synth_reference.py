"""Reference data: geography, populations, life tables, standard populations, data dictionary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from registry_lib.release.dictionary import data_dictionary
from registry_lib.synth.geography import _inside, _largest_remainder, make_geography
from registry_lib.synth.params import AGE_BANDS, epidemiology_params
from registry_lib.synth.population import (
    area_population,
    life_expectancy,
    life_table,
    national_population,
    population_frame,
    standard_populations,
)

PARAMS = epidemiology_params()


@pytest.fixture(scope="module")
def geo():
    return make_geography(0.05, PARAMS, np.random.default_rng(3))


def test_areas_regions_and_quintiles(geo):
    areas = geo.areas
    assert len(areas) == round(37_000 * 0.05)
    assert areas["area_id"].is_unique and areas["area_id"].str.fullmatch(r"E01\d{6}").all()
    assert set(areas["region"]) == set(PARAMS["geography"]["regions"])
    counts = areas["deprivation_quintile"].value_counts().sort_index()
    assert counts.index.tolist() == [1, 2, 3, 4, 5]
    assert counts.max() - counts.min() <= 1                       # national ranks: equal fifths
    # London holds about 16% of England's people (ONS), so about 16% of the areas
    share = (areas["region"] == "London").mean()
    assert 0.14 < share < 0.18
    # cities more deprived than the countryside; the north more than the south-west
    assert areas.loc[areas.urban, "deprivation_quintile"].mean() > areas.loc[~areas.urban, "deprivation_quintile"].mean() + 0.4
    by_region = areas.groupby("region")["deprivation_quintile"].mean()
    assert by_region["North East"] > by_region["South West"] + 1
    poly = np.array(PARAMS["geography"]["england_outline_km"]) * 1000
    assert _inside(poly, areas["x"].to_numpy(), areas["y"].to_numpy()).all()


def test_settlement_is_dense_in_cities(geo):
    """Nearest-neighbour distances: city areas far closer together than countryside areas."""
    xy = geo.areas[["x", "y"]].to_numpy()
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    nn = d.min(axis=1)
    urban = geo.areas["urban"].to_numpy()
    assert np.median(nn[urban]) * 3 < np.median(nn[~urban])


def test_trusts_and_point_sources(geo):
    full = make_geography(1.0, PARAMS, np.random.default_rng(0))
    assert len(full.trusts) == 130 and full.trusts["trust_code"].is_unique
    assert full.trusts["trust_code"].str.fullmatch(r"R[0-9A-Z]{2}").all()
    assert full.trusts.groupby("region").size().min() >= 2
    assert set(full.point_sources["source_type"]) == {"power_station", "phone_mast", "incinerator", "industrial_site"}
    ps1 = geo.point_sources.iloc[0]
    assert (ps1["source_id"], ps1["source_type"]) == ("PS0001", "incinerator")
    # PS0001 is placed in Birmingham: many areas within 6 km
    near = np.hypot(geo.areas["x"] - ps1["x"], geo.areas["y"] - ps1["y"]) < 6000
    assert near.sum() >= 10
    # nearest-trust choices really are the nearest
    a = geo.areas.iloc[5]
    d = np.hypot(geo.trusts["x"] - a["x"], geo.trusts["y"] - a["y"]).to_numpy()
    assert geo.area_trust_choices[5, 0] == int(np.argmin(d))


def test_national_population_and_ageing():
    nat = national_population([1971, 2013, 2019, 2023], PARAMS)
    totals = nat.sum(axis=(1, 2))
    assert totals[2] == pytest.approx(56_287_000, rel=1e-6)             # ONS MYE 2019
    assert totals[0] == pytest.approx(46_412_000, rel=1e-6)
    old = nat[:, :, AGE_BANDS >= 65].sum(axis=(1, 2)) / totals
    assert old[0] < old[1] < old[2] < old[3]                             # slowly ageing
    assert 0.17 < old[2] < 0.20
    female_90 = nat[2, 1, -1] / nat[2, :, -1].sum()
    assert female_90 > 0.65                                              # women outlive men


def test_area_population_keeps_national_totals(geo):
    nat = national_population([2019], PARAMS)
    pop = area_population(nat, geo.size, geo.age_tilt, 0.05)
    assert pop.shape == (1, len(geo.areas), 2, 19)
    assert pop.sum() == pytest.approx(nat.sum() * 0.05, rel=1e-3)
    assert 1300 < pop[0].sum(axis=(1, 2)).mean() < 1700                 # ~1,500 residents per area
    frame = population_frame(pop, [2019], geo.areas["area_id"].to_numpy())
    row = frame.iloc[19 + 3]                                            # area 0, women, band 15
    assert (row.area_id, row.sex, row.age_band, row.population) == (geo.areas.area_id[0], 2, 15, pop[0, 0, 1, 3])
    # city areas younger than countryside areas
    share_old = pop[0][:, :, AGE_BANDS >= 65].sum(axis=(1, 2)) / pop[0].sum(axis=(1, 2))
    assert share_old[geo.areas.urban].mean() < share_old[~geo.areas.urban].mean()


def test_life_expectancy_matches_ons():
    lt = life_table([1971, 2019], PARAMS)
    assert len(lt) == 2 * 2 * 5 * 101
    assert lt["qx"].between(0, 1).all()
    assert life_expectancy(lt, 2019, 1) == pytest.approx(79.4, abs=0.1)  # ONS 2017-19, men
    assert life_expectancy(lt, 2019, 2) == pytest.approx(83.1, abs=0.1)  # women
    gap = life_expectancy(lt, 2019, 1, 1) - life_expectancy(lt, 2019, 1, 5)
    assert 6 < gap < 10                                                  # deprivation gap
    assert life_expectancy(lt, 1971, 1) < life_expectancy(lt, 2019, 1) - 6


def test_standard_populations():
    sp = standard_populations(PARAMS)
    esp = sp[sp.standard == "esp2013"]
    assert esp["weight"].sum() == 100_000 and len(esp) == 19
    for icss in ("icss1", "icss2", "icss3"):
        w = sp[sp.standard == icss]
        assert w["age_band"].tolist() == [15, 45, 55, 65, 75]
        assert w["weight"].sum() == pytest.approx(1.0)


def test_largest_remainder():
    assert _largest_remainder(10, np.array([1.0, 1.0, 1.0])).tolist() == [4, 3, 3]
    assert _largest_remainder(9, np.array([0.0, 5.0, 1.0]), minimum=2).tolist() == [2, 5, 2]


def test_data_dictionary_is_up_to_date():
    text = Path("synthetic/README.md").read_text()
    assert text == data_dictionary(), "run registry_lib.release.write_data_dictionary() to refresh synthetic/README.md"
    for table in ("reference/areas", "truth/effects", "feeds/notifications", "truth/record_truth"):
        if table != "truth/effects":
            assert f"`{table}.parquet`" in text
