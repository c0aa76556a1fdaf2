"""Identities, opt-outs and raw feeds of synthetic England (issue 3, sections 7 and 8).

Built on a small hand-made truth (``fixtures.feeds.demo_truth``, in ``tests/fixtures``) so these tests
do not depend on the incidence model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures.feeds import DEMO_END, demo_truth
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.errors import ConfigError, RegistryLabError
from registry_lib.nhs_number import is_valid_nhs_number
from registry_lib.schema import enforce
from registry_lib.synth import feeds_errors as fe
from registry_lib.synth.feed_dates import dates_to_strings
from registry_lib.synth.feed_params import feed_params, rate
from registry_lib.synth.feeds import FEED_NAMES, alternative_trusts, make_feeds
from registry_lib.synth.feeds_identifiers import errors_text
from registry_lib.synth.identities import (
    REGION_POSTCODE_AREAS,
    assign_identities,
    canonical_region,
    make_postcodes,
    name_frequencies,
)
from registry_lib.synth.optouts import area_effects, assign_optouts, ndop_probability
from registry_lib.synth.tables import FEEDS, POSTCODES, RECORD_TRUTH, TRUTH

CONFIG = {"end_of_follow_up": DEMO_END}
# Error rates raised so that every kind is frequent enough to test its rate.
HIGH = {"feeds": {"errors": {
    "nhs_missing": 0.08, "nhs_transposed": 0.05, "given_nickname": 0.2, "given_typo": 0.05,
    "family_typo": 0.05, "dob_swap": 0.05, "dob_typo": 0.03, "sex_miscoded": 0.03,
    "sex_unknown": 0.02, "postcode_missing": 0.04, "unusable": 0.02, "icd10_invalid": 0.02,
    "morphology_invalid": 0.02,
}, "identities": {"surname_change": {"female": 0.3, "male": 0.05}, "house_move": {"rate": 0.4}}}}
IDENT = ["nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode"]


def within_binomial(k: int, n: int, p: float, z: float = 4.5) -> bool:
    """True when k successes out of n are consistent with probability p (±z standard errors)."""
    sd = np.sqrt(n * p * (1 - p))
    return abs(k - n * p) <= z * sd + 1


@pytest.fixture(scope="module")
def world():
    reference, truth = demo_truth(n_patients=4000, seed=11, config={**CONFIG, **HIGH})
    feeds, record_truth = make_feeds(reference, truth, {**CONFIG, **HIGH}, np.random.default_rng(3))
    return reference, truth, feeds, record_truth


@pytest.fixture(scope="module")
def joined(world):
    """Every identifier-carrying feed record joined to its true patient, with its errors."""
    _, truth, feeds, record_truth = world
    pts = truth["patients"].set_index("patient_id")
    frames = []
    for name in FEED_NAMES[:-1]:
        f = feeds[name].copy()
        for col in IDENT:
            if col not in f:
                f[col] = None
        date_col = {"notifications": "received_date", "sact": "start_date", "radiotherapy": "start_date",
                    "surgery": "procedure_date", "deaths": "death_date",
                    "registration_optouts": "request_date"}[name]
        source = f["source"] if "source" in f else name
        f = f[["record_id", *IDENT]].assign(record_date=pd.to_datetime(f[date_col]), feed=name, source=source)
        frames.append(f)
    recs = pd.concat(frames, ignore_index=True)
    recs = recs.merge(record_truth, on=["feed", "record_id"], how="left", validate="one_to_one")
    recs = recs.join(pts, on="patient_id", rsuffix="_true")
    recs["kinds"] = recs["errors"].str.split(";").apply(lambda k: set(k) - {""})
    return recs


def has(recs: pd.DataFrame, kind: str) -> pd.Series:
    return recs["kinds"].apply(lambda k: kind in k)


# --------------------------------------------------------------------------------------------
# Postcodes
# --------------------------------------------------------------------------------------------
def _areas(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    regions = ["North East", "North West", "Yorkshire and The Humber", "East Midlands", "West Midlands",
               "East of England", "London", "South East", "South West"]
    reg = np.array(regions)[np.arange(n) % 9]
    # each region a 100 km square block, so districts can be checked for compactness
    off = (np.arange(n) % 9) * 200_000.0
    return pd.DataFrame({"area_id": [f"E01{i:06d}" for i in range(n)], "region": reg,
                         "x": off + rng.uniform(0, 100_000, n), "y": rng.uniform(0, 100_000, n)})


def test_postcodes_are_unique_uk_format_and_cover_every_area():
    areas = _areas(3000)
    pcs = make_postcodes(areas, np.random.default_rng(1))
    enforce(pcs, POSTCODES)
    assert pcs["postcode"].is_unique
    assert pcs["postcode"].str.fullmatch(r"[A-Z]{1,2}\d{1,2} \d[ABD-HJLNP-UW-Z]{2}").all()
    per_area = pcs.groupby("area_id").size()
    assert set(per_area.index) == set(areas["area_id"]) and per_area.min() >= 1
    assert 6 <= per_area.mean() <= 10  # default mean 8


def test_outward_codes_belong_to_one_region_with_its_real_letters_and_are_compact():
    areas = _areas(3000)
    pcs = make_postcodes(areas, np.random.default_rng(1)).merge(areas, on="area_id")
    pcs["outward"] = pcs["postcode"].str.split(" ").str[0]
    pcs["letters"] = pcs["outward"].str.extract(r"^([A-Z]+)")[0]
    assert (pcs.groupby("outward")["region"].nunique() == 1).all()
    for region, letters in pcs.groupby("region")["letters"].unique().items():
        assert set(letters) <= set(REGION_POSTCODE_AREAS[canonical_region(region)])
    # A district's areas are close together: spread well below that of the region.
    spread_district = pcs.groupby("outward")[["x", "y"]].std().mean().mean()
    spread_region = pcs.groupby("region")[["x", "y"]].std().mean().mean()
    assert spread_district < 0.5 * spread_region


def test_postcodes_deterministic_and_region_names():
    areas = _areas(500)
    a = make_postcodes(areas, np.random.default_rng(5))
    b = make_postcodes(areas, np.random.default_rng(5))
    c = make_postcodes(areas, np.random.default_rng(6))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert canonical_region("E12000003") == "yorkshire"
    assert canonical_region("East of England") == "east"
    assert canonical_region("North East") == "north_east"
    assert canonical_region("Atlantis") is None
    odd = areas.assign(region="Atlantis")
    assert make_postcodes(odd, np.random.default_rng(1))["postcode"].str.startswith("Q").all()


def test_postcodes_bad_areas_raise():
    with pytest.raises(RegistryLabError, match="missing column"):
        make_postcodes(pd.DataFrame({"area_id": ["a"]}), np.random.default_rng(0))
    dup = _areas(3)
    dup.loc[1, "area_id"] = dup.loc[0, "area_id"]
    with pytest.raises(RegistryLabError, match="more than once"):
        make_postcodes(dup, np.random.default_rng(0))


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------
def _patients(n: int, areas: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    diag = np.datetime64("2015-01-01") + rng.integers(0, 2500, n).astype("timedelta64[D]")
    death = np.where(rng.random(n) < 0.4, diag + rng.integers(0, 1500, n).astype("timedelta64[D]"),
                     np.datetime64("NaT"))
    return pd.DataFrame({
        "patient_id": np.arange(n, dtype=np.int64) * 7 + 3,
        "sex": rng.integers(1, 3, n).astype(np.int8),
        "birth_date": pd.to_datetime(np.datetime64("1940-01-01") + rng.integers(0, 20000, n).astype("timedelta64[D]")),
        "area_id": areas["area_id"].to_numpy()[rng.integers(0, len(areas), n)],
        "first_diagnosis_date": pd.to_datetime(diag),
        "death_date": pd.to_datetime(death),
    })


@pytest.fixture(scope="module")
def identities():
    areas = _areas(900)
    pcs = make_postcodes(areas, np.random.default_rng(2))
    pts = _patients(60_000, areas)
    cfg = {"end_of_follow_up": "2022-12-31"}
    return areas, pcs, pts, assign_identities(pts, pcs, cfg, np.random.default_rng(9)), cfg


def test_identities_keep_rows_and_add_valid_unique_numbers(identities):
    _, pcs, pts, out, _ = identities
    pd.testing.assert_frame_equal(out[pts.columns], pts)
    assert out["nhs_number"].is_unique
    assert is_valid_nhs_number(out["nhs_number"]).all()
    assert out["nhs_number"].str.startswith("9").all()
    assert out["postcode"].isin(pcs["postcode"]).all()
    home_area = out["postcode"].map(pcs.set_index("postcode")["area_id"])
    assert (home_area == out["area_id"]).all()


def test_names_by_sex_with_realistic_frequencies(identities):
    *_, out, _ = identities
    names = name_frequencies()
    female, male = out["sex"] == 2, out["sex"] == 1
    assert out.loc[female, "given_name"].isin(names["female"][0]).all()
    assert out.loc[male, "given_name"].isin(names["male"][0]).all()
    # Common names are common: the commonest given name 1.5-6% of its sex, Smith the commonest
    # family name at ~3% (Faker's UK frequencies: 1.15 / 39.5).
    top = out.loc[female, "given_name"].value_counts(normalize=True)
    assert 0.015 < top.iloc[0] < 0.06 and top.index[0] in names["female"][0][:5]
    fam = out["family_name"].value_counts(normalize=True)
    assert fam.index[0] == "Smith" and 0.022 < fam.iloc[0] < 0.036
    assert out["family_name"].nunique() < 600 and out["given_name"].nunique() < 400


def test_marriage_and_moves_at_configured_rates_and_dates(identities):
    _, pcs, pts, out, cfg = identities
    p = feed_params(cfg)["identities"]
    changed = out["family_name_later"].notna()
    assert (changed == out["name_change_date"].notna()).all()
    for sex, key in ((2, "female"), (1, "male")):
        m = out["sex"] == sex
        # eligible = a non-empty window after diagnosis; nearly everyone here
        assert within_binomial(int(changed[m].sum()), int(m.sum()), p["surname_change"][key] * 0.99, z=5)
    assert (out.loc[changed, "family_name_later"] != out.loc[changed, "family_name"]).all()
    ch = out[changed]
    assert (ch["name_change_date"] > ch["first_diagnosis_date"]).all()
    assert (ch["name_change_date"] <= pd.Timestamp(cfg["end_of_follow_up"])).all()
    dead = ch["death_date"].notna()
    assert (ch.loc[dead, "name_change_date"] <= ch.loc[dead, "death_date"]).all()
    limit = ch["first_diagnosis_date"] + pd.Timedelta(days=round(p["window_years"] * 365.25))
    assert (ch["name_change_date"] <= limit).all()

    moved = out["postcode_later"].notna()
    assert (moved == out["move_date"].notna()).all()
    assert within_binomial(int(moved.sum()), len(out), p["house_move"]["rate"] * 0.99, z=5)
    mv = out[moved]
    assert (mv["postcode_later"] != mv["postcode"]).all()
    assert mv["postcode_later"].isin(pcs["postcode"]).all()
    same_district = mv["postcode"].str.split(" ").str[0] == mv["postcode_later"].str.split(" ").str[0]
    assert abs(same_district.mean() - p["house_move"]["same_district"]) < 0.05
    assert (mv["move_date"] > mv["first_diagnosis_date"]).all()


def test_identities_bad_input():
    areas = _areas(20)
    pcs = make_postcodes(areas, np.random.default_rng(0))
    pts = _patients(10, areas)
    with pytest.raises(RegistryLabError, match="lack column"):
        assign_identities(pts.drop(columns="death_date"), pcs, {}, np.random.default_rng(0))
    with pytest.raises(RegistryLabError, match="sex"):
        assign_identities(pts.assign(sex=np.int8(3)), pcs, {}, np.random.default_rng(0))
    bad = pts.copy()
    bad.loc[4, "area_id"] = "E99999999"
    with pytest.raises(RegistryLabError, match="E99999999.*has no postcode"):
        assign_identities(bad, pcs, {}, np.random.default_rng(0))


def test_no_faker_call_per_record(monkeypatch):
    """Names are sampled from Faker's word lists with numpy; a Faker instance is never used."""
    import faker

    def boom(*args, **kwargs):
        raise AssertionError("a Faker generator was created")

    monkeypatch.setattr(faker.Faker, "__init__", boom)
    monkeypatch.setattr(faker.Generator, "__init__", boom)
    areas = _areas(50)
    pcs = make_postcodes(areas, np.random.default_rng(0))
    out = assign_identities(_patients(2000, areas), pcs, {}, np.random.default_rng(0))
    assert out["given_name"].notna().all()


# --------------------------------------------------------------------------------------------
# Opt-outs
# --------------------------------------------------------------------------------------------
def test_ndop_rates_by_sex_age_and_area():
    n_areas, n = 2000, 400_000
    areas = pd.DataFrame({"area_id": [f"A{i:05d}" for i in range(n_areas)]})
    rng = np.random.default_rng(4)
    # Everyone aged 64 at 30 June 2021 (relative rate 1.0) or 45 (relative rate 6.04/4.97).
    age = np.where(np.arange(n) % 2 == 0, 64, 45)
    birth = np.datetime64("2021-06-30") - (age * 365.25 + 100).astype("timedelta64[D]")
    pts = pd.DataFrame({
        "patient_id": np.arange(n), "sex": rng.integers(1, 3, n),
        "birth_date": pd.to_datetime(birth), "area_id": areas["area_id"].to_numpy()[rng.integers(0, n_areas, n)],
        "first_diagnosis_date": pd.Timestamp("2019-01-01"), "death_date": pd.NaT,
    })
    out = assign_optouts(pts, areas, {}, np.random.default_rng(5))
    nd = feed_params({})["optouts"]["ndop"]
    for sex, key in ((2, "female"), (1, "male")):
        m = (out["sex"] == sex) & (age == 64)
        assert within_binomial(int(out.loc[m, "ndop_opted_out"].sum()), int(m.sum()), nd[key], z=6)
    m40 = age == 45
    assert abs(out.loc[m40, "ndop_opted_out"].mean() - 0.0604) < 0.004
    assert abs(out["ndop_opted_out"].mean() - 0.0497 * (1 + 1.215) / 2) < 0.004
    # Local rates range from ~1% to over 10%.
    p_area = nd["overall"] * area_effects(areas["area_id"].to_numpy(), nd["area_log_sd"], np.random.default_rng(0))
    assert p_area.min() < 0.015 and p_area.max() > 0.10
    assert ndop_probability(np.array([2]), np.array([45]), np.ones(1), nd)[0] == pytest.approx(0.0553 * 1.215)


def test_registration_optouts_rare_and_dated_after_diagnosis():
    areas = _areas(100)
    pts = _patients(200_000, areas, seed=3)
    cfg = {"end_of_follow_up": "2022-12-31"}
    out = assign_optouts(pts, areas, cfg, np.random.default_rng(1))
    opted = out[out["registration_opted_out"]]
    assert within_binomial(len(opted), len(out), 0.0003 * 0.98, z=5) and len(opted) < 0.001 * len(out)
    assert (out["registration_opted_out"] == out["registration_optout_date"].notna()).all()
    assert (opted["registration_optout_date"] > opted["first_diagnosis_date"]).all()
    assert (opted["registration_optout_date"] <= opted["first_diagnosis_date"] + pd.Timedelta(days=730)).all()
    d = opted["death_date"].notna()
    assert (opted.loc[d, "registration_optout_date"] <= opted.loc[d, "death_date"]).all()
    with pytest.raises(RegistryLabError, match="not in reference/areas"):
        assign_optouts(pts.head(5).assign(area_id="nowhere"), areas, cfg, np.random.default_rng(1))


# --------------------------------------------------------------------------------------------
# Feeds: shape, schema, determinism
# --------------------------------------------------------------------------------------------
def test_feeds_follow_their_schemas(world):
    _, truth, feeds, record_truth = world
    assert list(feeds) == list(FEED_NAMES)
    for name, df in feeds.items():
        assert list(df.columns) == FEEDS[name].column_names
        enforce(df, FEEDS[name])
        if name != "ndop":
            assert df["record_id"].is_unique
    enforce(record_truth, RECORD_TRUTH)
    for name in ("patients", "tumours", "treatments"):
        enforce(truth[name], TRUTH[name])
    assert record_truth.groupby("feed").size().to_dict() == {
        n: len(feeds[n]) for n in FEED_NAMES[:-1] if len(feeds[n])}


def test_feeds_are_deterministic():
    reference, truth = demo_truth(n_patients=400, seed=2)
    a = make_feeds(reference, truth, CONFIG, np.random.default_rng(42))
    b = make_feeds(reference, truth, CONFIG, np.random.default_rng(42))
    c = make_feeds(reference, truth, CONFIG, np.random.default_rng(43))
    for name in FEED_NAMES:
        pd.testing.assert_frame_equal(a[0][name], b[0][name])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert not a[0]["notifications"].equals(c[0]["notifications"])


def test_feed_files_are_byte_identical_for_the_same_seed(tmp_path):
    from registry_lib.io import sha256_file, write_parquet

    reference, truth = demo_truth(n_patients=300, seed=5)
    digests = []
    for run in ("a", "b"):
        feeds, record_truth = make_feeds(reference, truth, CONFIG, np.random.default_rng(9))
        paths = [write_parquet(df, tmp_path / run / f"{name}.parquet", FEEDS[name]) for name, df in feeds.items()]
        paths.append(write_parquet(record_truth, tmp_path / run / "record_truth.parquet", RECORD_TRUTH))
        digests.append([sha256_file(p) for p in paths])
    assert digests[0] == digests[1]


def test_one_record_per_treatment_death_and_optout(world):
    _, truth, feeds, rt = world
    tr = truth["treatments"]
    for feed in ("sact", "radiotherapy", "surgery"):
        got = rt.loc[rt["feed"] == feed, "treatment_id"].astype("int64")
        assert sorted(got) == sorted(tr.loc[tr["modality"] == feed, "treatment_id"])
    pts = truth["patients"]
    deaths = rt[rt["feed"] == "deaths"].merge(feeds["deaths"], on="record_id")
    assert sorted(deaths["patient_id"]) == sorted(pts.loc[pts["death_date"].notna(), "patient_id"])
    cause = deaths["patient_id"].map(pts.set_index("patient_id")["death_cause_icd10"])
    assert all(str(s).startswith(c) for s, c in zip(deaths["underlying_cause_icd10"], cause, strict=True))
    assert (deaths["death_date"] == deaths["patient_id"].map(
        pts.set_index("patient_id")["death_date"].dt.strftime("%Y-%m-%d"))).all()
    assert (deaths["registration_date"] >= deaths["death_date"]).all()
    opt = rt[rt["feed"] == "registration_optouts"]
    assert sorted(opt["patient_id"]) == sorted(pts.loc[pts["registration_opted_out"], "patient_id"])
    # NDOP is the exact list of true NHS numbers of opted-out people, dated from NDOP's start.
    assert sorted(feeds["ndop"]["nhs_number"]) == sorted(pts.loc[pts["ndop_opted_out"], "nhs_number"])
    assert feeds["ndop"]["optout_date"].between("2018-05-25", DEMO_END).all()
    nd = feeds["ndop"].merge(pts[["nhs_number", "death_date"]], on="nhs_number")
    died_later = nd["death_date"] >= pd.Timestamp("2018-05-25")
    assert (pd.to_datetime(nd.loc[died_later, "optout_date"]) <= nd.loc[died_later, "death_date"]).all()
    assert (nd.loc[nd["death_date"] < pd.Timestamp("2018-05-25"), "optout_date"] == "2018-05-25").all()


def test_notifications_per_tumour_sources_trusts_and_dates(world):
    reference, truth, feeds, rt = world
    n = feeds["notifications"].merge(rt[rt["feed"] == "notifications"], on="record_id")
    tum = truth["tumours"].set_index("tumour_id")
    per = n.groupby("tumour_id").size()
    assert set(per.index) == set(tum.index)            # every tumour is notified
    assert per.min() >= 1 and per.max() <= 6 and abs(per.mean() - 3.0) < 0.1
    assert set(n["source"]) == {"pathology", "mdt", "pas", "screening"}
    screen = tum["route_to_diagnosis"].str.contains("Screen")
    got_screen = n[n["source"] == "screening"]["tumour_id"].unique()
    assert set(got_screen) == set(tum.index[screen])
    diag = n["tumour_id"].map(tum["diagnosis_date"].dt.strftime("%Y-%m-%d"))
    assert (n["received_date"] > diag).all()
    assert (n["received_date"] <= DEMO_END).all()
    alt = alternative_trusts(reference["trusts"])
    home = n["tumour_id"].map(tum["diagnosing_trust"])
    assert ((n["trust_code"] == home) | (n["trust_code"] == home.map(alt))).all()
    assert 0.72 < (n["trust_code"] == home).mean() < 0.88       # 20% from a second trust
    # MDT carries stage and PS; pathology morphology and grade; PAS comorbidity and route.
    by = n.groupby("source")
    assert by["stage"].apply(lambda s: s.notna().mean())["mdt"] > 0.6
    assert by["performance_status"].apply(lambda s: s.notna().mean())["pathology"] == 0
    assert by["morphology_icdo3"].apply(lambda s: s.notna().mean())["pathology"] > 0.9
    assert by["comorbidity_score"].apply(lambda s: s.notna().mean())["pas"] > 0.7
    assert by["route_to_diagnosis"].apply(lambda s: s.notna().mean())["pathology"] == 0
    assert not n["stage"].isin(["U"]).any()
    # ICD-10 sometimes with 4 characters, always starting with the true site unless invalid.
    bad_site = n["errors"].str.contains("icd10_invalid")
    site = n.loc[~bad_site & n["site_icd10"].notna()]
    true_site = site["tumour_id"].map(tum["site_icd10"])
    assert all(s.startswith(t) for s, t in zip(site["site_icd10"], true_site, strict=True))
    assert (site["site_icd10"].str.len() == 4).mean() > 0.15
    assert set(site.loc[site["site_icd10"].str.len() == 4, "site_icd10"].str[:3]) <= {"C50", "C34", "C18", "C43", "C81", "C25"}
    invalid = n.loc[bad_site, "site_icd10"]
    assert invalid.isin(feed_params({})["errors"]["invalid_icd10_codes"]).all() and len(invalid) > 0
    # Invalid codes at their configured rate among records that carry the field.
    for col, kind in (("site_icd10", "icd10_invalid"), ("morphology_icdo3", "morphology_invalid")):
        sent = n[n[col].notna()]
        hits = int(sent["errors"].str.contains(kind).sum())
        assert within_binomial(hits, len(sent), HIGH["feeds"]["errors"][kind]), kind
    bad_morph = n["errors"].str.contains("morphology_invalid")
    assert n.loc[bad_morph, "morphology_icdo3"].isin(feed_params({})["errors"]["invalid_morphology_codes"]).all()


# --------------------------------------------------------------------------------------------
# Feeds: every error kind at its rate, recorded truthfully
# --------------------------------------------------------------------------------------------
def test_record_truth_errors_match_what_was_sent(joined):
    r = joined
    unusable = has(r, "unusable")
    # unusable: no name, no birth date, no NHS number
    assert r.loc[unusable, ["nhs_number", "given_name", "family_name", "birth_date"]].isna().all().all()
    ok = ~unusable
    # NHS number: missing iff nhs_missing; equal to the truth iff no NHS error.
    assert (r.loc[ok, "nhs_number"].isna() == has(r, "nhs_missing")[ok]).all()
    sent = r[ok & r["nhs_number"].notna()]
    assert ((sent["nhs_number"] == sent["nhs_number_true"]) == ~has(sent, "nhs_transposed")).all()
    tr = sent[has(sent, "nhs_transposed")]
    assert all(sorted(a) == sorted(b) for a, b in zip(tr["nhs_number"], tr["nhs_number_true"], strict=True))
    assert is_valid_nhs_number(tr["nhs_number"]).mean() < 0.2   # mostly fails the check digit
    # Given name equals the truth iff no nickname or typo (names may come in capitals).
    g = r[ok]
    same = g["given_name"].str.lower() == g["given_name_true"].str.lower()
    assert (same == ~(has(g, "given_nickname") | has(g, "given_typo"))).all()
    nick = g[has(g, "given_nickname") & ~has(g, "given_typo")]
    table = fe.nickname_table()
    assert all(s.title() in table[t] for s, t in zip(nick["given_name"], nick["given_name_true"], strict=True))
    # Family name: the later surname after the change date, the first one before; typos flagged.
    later = g["name_change_date"].notna() & (g["record_date"] >= g["name_change_date"])
    assert (has(g, "surname_change") == later).all()
    expected = g["family_name_later"].where(later, g["family_name_true"])
    assert ((g["family_name"].str.lower() == expected.str.lower()) == ~has(g, "family_typo")).all()
    # Birth date: exact unless swapped or mistyped; a swap puts the day in the month place.
    true_dob = g["birth_date_true"].dt.strftime("%Y-%m-%d")
    dob_err = has(g, "dob_swap") | has(g, "dob_typo")
    assert ((g["birth_date"] == true_dob) == ~dob_err).all()
    sw = g[has(g, "dob_swap")]
    assert (sw["birth_date"] == fe.swap_day_month(true_dob[has(g, "dob_swap")].to_numpy().astype(str))).all()
    assert (sw["birth_date"].str[5:7].astype(int) > 12).any()    # impossible dates are kept
    ty = g[has(g, "dob_typo")]
    assert (ty["birth_date"].str[:8] == true_dob[has(g, "dob_typo")].str[:8]).all()
    # Sex and postcode.
    s = r[r["sex"].notna()]
    true_sex = s["sex_true"].astype(int).astype(str)
    assert ((s["sex"] == true_sex) == ~(has(s, "sex_miscoded") | has(s, "sex_unknown"))).all()
    assert (s.loc[has(s, "sex_unknown"), "sex"] == "9").all()
    p = r[r["feed"] != "registration_optouts"]
    assert (p["postcode"].isna() == has(p, "postcode_missing")).all()
    moved = p["move_date"].notna() & (p["record_date"] >= p["move_date"])
    assert (has(p, "house_move") == moved).all()
    sent_pc = p[p["postcode"].notna()]
    expected_pc = sent_pc["postcode_later"].where(has(sent_pc, "house_move"), sent_pc["postcode_true"])
    assert (sent_pc["postcode"] == expected_pc).all()


@pytest.mark.parametrize("kind", ["nhs_missing", "nhs_transposed", "given_nickname", "given_typo", "family_typo",
                                  "dob_swap", "dob_typo", "sex_miscoded", "sex_unknown", "postcode_missing",
                                  "unusable"])
def test_each_error_kind_occurs_at_its_configured_rate(joined, kind):
    """Per source (pathology, mdt, pas, screening) and feed, among the records it can apply to."""
    r = joined[joined["feed"] != "registration_optouts"]
    eligible = {
        "nhs_transposed": ~has(r, "nhs_missing"),
        "dob_swap": r["birth_date_true"].dt.day != r["birth_date_true"].dt.month,
        "dob_typo": ~has(r, "dob_swap"),
        "given_nickname": r["given_name_true"].isin(list(fe.nickname_table())),
        "sex_unknown": ~has(r, "sex_miscoded"),
    }.get(kind, pd.Series(True, index=r.index))
    spec = feed_params(HIGH)["errors"][kind]
    checked = 0
    for source, grp in r[eligible.to_numpy()].groupby("source"):
        assert within_binomial(int(has(grp, kind).sum()), len(grp), rate(spec, source)), (kind, source)
        checked += len(grp)
    assert checked > 5000


def test_default_rates_by_source():
    d = feed_params({})["errors"]
    assert rate(d["nhs_missing"], "pathology") > rate(d["nhs_missing"], "pas")   # higher from some sources


def test_default_error_rates_are_realistic():
    p = feed_params({})["errors"]
    assert 0.05 <= np.mean([rate(p["nhs_missing"], s) for s in ("pathology", "mdt", "pas")]) <= 0.10
    assert rate(p["sex_miscoded"], "mdt") == pytest.approx(0.002)
    assert rate(p["unusable"], "sact") == 0.0 and rate(p["unusable"], "pathology") > 0


def test_surname_and_postcode_follow_the_record_date():
    """A hand-made patient who marries and moves: records before/after carry old/new values."""
    reference, truth = demo_truth(n_patients=30, seed=4)
    pts = truth["patients"].copy()
    pid = pts["patient_id"].iloc[0]
    tum = truth["tumours"][truth["tumours"]["patient_id"] == pid].iloc[[0]].copy()
    diag = tum["diagnosis_date"].iloc[0]
    pts.loc[0, ["family_name_later", "name_change_date"]] = ["Newname", diag + pd.Timedelta(days=100)]
    pts.loc[0, ["postcode_later", "move_date"]] = ["ZZ9 9ZZ", diag + pd.Timedelta(days=200)]
    pts.loc[0, "death_date"] = diag + pd.Timedelta(days=300)
    starts = [diag + pd.Timedelta(days=d) for d in (50, 150, 250)]
    trt = pd.DataFrame({
        "treatment_id": [1, 2, 3], "patient_id": pid, "tumour_id": tum["tumour_id"].iloc[0],
        "modality": "surgery", "start_date": starts, "intent": "curative", "regimen": None,
        "cycles": pd.array([None] * 3, dtype="Int16"), "rt_region": None, "dose_gy": np.nan,
        "fractions": pd.array([None] * 3, dtype="Int16"), "procedure_code": "H333",
    })
    no_errors = {"feeds": {"errors": {k: 0.0 for k in fe.ERROR_KINDS if k in feed_params({})["errors"]}
                           | {"uppercase_names": 0.0}}}
    feeds, rt = make_feeds(reference, {"patients": pts, "tumours": tum, "treatments": trt},
                           {**CONFIG, **no_errors}, np.random.default_rng(0))
    s = feeds["surgery"].sort_values("procedure_date")
    assert s["family_name"].tolist() == [pts.loc[0, "family_name"], "Newname", "Newname"]
    assert s["postcode"].tolist() == [pts.loc[0, "postcode"], pts.loc[0, "postcode"], "ZZ9 9ZZ"]
    d = feeds["deaths"].merge(rt, on="record_id")
    mine = d[d["patient_id"] == pid].iloc[0]
    assert (mine["family_name"], mine["postcode"]) == ("Newname", "ZZ9 9ZZ")
    errs = rt.set_index("record_id").loc[feeds["surgery"]["record_id"], "errors"]
    assert errs.tolist() == ["", "surname_change", "surname_change;house_move"]


def test_make_feeds_bad_input_raises_clear_errors(world):
    reference, truth, *_ = world
    with pytest.raises(RegistryLabError, match="no 'tumours'"):
        make_feeds(reference, {"patients": truth["patients"]}, CONFIG, np.random.default_rng(0))
    bad = truth["tumours"].copy()
    bad.loc[0, "diagnosing_trust"] = "XXX"
    with pytest.raises(RegistryLabError, match="XXX.*reference/trusts"):
        make_feeds(reference, {**truth, "tumours": bad}, CONFIG, np.random.default_rng(0))
    orphan = truth["treatments"].copy()
    orphan.loc[0, "patient_id"] = -5
    with pytest.raises(RegistryLabError, match="patient -5"):
        make_feeds(reference, {**truth, "treatments": orphan}, CONFIG, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="feeds.errors.nhs_mising: unknown key"):
        feed_params({"feeds": {"errors": {"nhs_mising": 0.1}}})
    with pytest.raises(ConfigError, match="rate 1.5"):
        feed_params({"feeds": {"errors": {"dob_swap": 1.5}}})
    with pytest.raises(ConfigError, match="feeds.errors.dob_swap.pathlogy: unknown key"):
        feed_params({"feeds": {"errors": {"dob_swap": {"pathlogy": 0.1}}}})
    # A per-source override may name any source, and keeps the other sources' defaults.
    p = feed_params({"feeds": {"errors": {"given_typo": {"pas": 0.2}, "nhs_missing": {"pas": 0.5}}}})
    assert rate(p["errors"]["given_typo"], "pas") == 0.2 and rate(p["errors"]["given_typo"], "mdt") == 0.01
    assert rate(p["errors"]["nhs_missing"], "pathology") == 0.10 and rate(p["errors"]["nhs_missing"], "pas") == 0.5


# --------------------------------------------------------------------------------------------
# Vectorised string errors (properties)
# --------------------------------------------------------------------------------------------
names_st = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-'", min_size=1,
                            max_size=20), min_size=1, max_size=50)


@settings(max_examples=60, deadline=None)
@given(names=names_st, seed=st.integers(0, 2**32 - 1))
def test_typo_always_changes_one_character_and_keeps_the_first(names, seed):
    ops = feed_params({})["errors"]["typo_operations"]
    out = fe.typo(np.array(names), np.random.default_rng(seed), ops)
    for a, b in zip(names, out, strict=True):
        assert a != b and a[0] == b[0] and abs(len(a) - len(b)) <= 1


@settings(max_examples=60, deadline=None)
@given(days=st.lists(st.integers(-40000, 40000), min_size=1, max_size=50))
def test_dates_and_day_month_swap(days):
    d = np.array(days).astype("datetime64[D]")
    text = dates_to_strings(d)
    assert text.tolist() == np.datetime_as_string(d, unit="D").tolist()
    swapped = fe.swap_day_month(text)
    assert all(s[5:7] == t[8:10] and s[8:10] == t[5:7] for s, t in zip(swapped, text, strict=True))
    assert fe.swap_day_month(swapped).tolist() == text.tolist()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200))
def test_transposed_nhs_numbers(seed, n):
    from registry_lib.nhs_number import generate_nhs_numbers

    rng = np.random.default_rng(seed)
    nums = generate_nhs_numbers(n, rng)
    new, changed = fe.transpose_adjacent_digits(nums, rng)
    for a, b, c in zip(nums, new, changed, strict=True):
        diff = [i for i in range(10) if a[i] != b[i]]
        assert c == (a != b)
        if c:
            assert len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
    body_swap = np.array([c and a[:9] != b[:9] and a[9] == b[9] for a, b, c in zip(nums, new, changed, strict=True)])
    assert not is_valid_nhs_number(pd.Series(new[body_swap])).any()


def test_errors_text_and_nicknames():
    m = np.zeros((3, len(fe.ERROR_KINDS)), dtype=bool)
    m[1, list(fe.ERROR_KINDS).index("dob_swap")] = True
    m[2, [list(fe.ERROR_KINDS).index("nhs_missing"), list(fe.ERROR_KINDS).index("unusable")]] = True
    assert errors_text(m).tolist() == ["", "dob_swap", "nhs_missing;unusable"]
    nick, has_nick = fe.nickname_choices(np.array(["Elizabeth", "Robert", "Xyz"]), np.random.default_rng(0))
    assert has_nick.tolist() == [True, True, False]
    assert nick[0] in fe.nickname_table()["Elizabeth"] and nick[2] == "Xyz"
    assert {"Liz", "Beth"} <= set(fe.nickname_table()["Elizabeth"])


# --------------------------------------------------------------------------------------------
# More feed content, edge cases and speed
# --------------------------------------------------------------------------------------------
def test_treatment_feeds_carry_the_true_treatment(world):
    reference, truth, feeds, rt = world
    trt = truth["treatments"].set_index("treatment_id")
    tum = truth["tumours"].set_index("tumour_id")
    alt = alternative_trusts(reference["trusts"])
    subsites = feed_params({})["notifications"]["icd10_subsites"]
    for feed, date_col in (("sact", "start_date"), ("radiotherapy", "start_date"), ("surgery", "procedure_date")):
        f = feeds[feed].merge(rt[rt["feed"] == feed], on="record_id")
        t = trt.loc[f["treatment_id"].astype("int64")].reset_index()
        assert (f[date_col].to_numpy() == t["start_date"].dt.strftime("%Y-%m-%d").to_numpy()).all()
        home = f["tumour_id"].map(tum["diagnosing_trust"])
        assert ((f["trust_code"] == home) | (f["trust_code"] == home.map(alt))).all()
        site = f["tumour_id"].map(tum["site_icd10"])
        four = f["site_icd10"].str.len() == 4
        assert (f["site_icd10"].str[:3] == site).all()
        assert all(c[3] in subsites[c[:3]] for c in f.loc[four, "site_icd10"])
        if feed == "sact":
            assert (f["regimen"].to_numpy() == t["regimen"].to_numpy()).all()
            assert (f["cycles"].astype("int64").to_numpy() == t["cycles"].astype("int64").to_numpy()).all()
            sent = f["intent"].notna()
            assert (f.loc[sent, "intent"].to_numpy() == t.loc[sent.to_numpy(), "intent"].to_numpy()).all()
        if feed == "radiotherapy":
            assert (f["rt_region"].to_numpy() == t["rt_region"].to_numpy()).all()
            assert (f["dose_gy"].to_numpy() == t["dose_gy"].to_numpy()).all()
            assert not f["intent"].isin(["neoadjuvant"]).any()
        if feed == "surgery":
            assert (f["procedure_code"].to_numpy() == t["procedure_code"].to_numpy()).all()


def test_empty_truth_gives_empty_feeds_with_schemas():
    reference, truth = demo_truth(n_patients=40, seed=3)
    empty = {k: v.iloc[:0] for k, v in truth.items()}
    feeds, rt = make_feeds(reference, empty, CONFIG, np.random.default_rng(0))
    for name, df in feeds.items():
        assert len(df) == 0
        enforce(df, FEEDS[name])
    enforce(rt, RECORD_TRUTH)
    no_treatments = {**truth, "treatments": truth["treatments"].iloc[:0]}
    feeds, rt = make_feeds(reference, no_treatments, CONFIG, np.random.default_rng(0))
    assert len(feeds["sact"]) == 0 and len(feeds["notifications"]) >= len(truth["tumours"])


def test_small_cohorts_still_get_several_districts_per_region():
    areas = _areas(90)                      # 10 areas per region
    pcs = make_postcodes(areas, np.random.default_rng(0)).merge(areas, on="area_id")
    per_region = pcs.assign(outward=pcs["postcode"].str.split(" ").str[0]).groupby("region")["outward"].nunique()
    assert (per_region >= feed_params({})["identities"]["postcodes"]["min_districts_per_region"]).all()


def test_trusts_as_sent_maps_to_alternatives_outside_the_diagnosing_set():
    from registry_lib.synth.feeds import Coded, _trusts_as_sent

    trusts = Coded(np.array(["A", "C", "A", "D"], dtype=object))
    alt = {"A": "B", "C": "A", "D": "E"}
    out = _trusts_as_sent(trusts, np.array([True, True, False, True]), alt)
    assert out.tolist() == ["B", "A", "A", "E"]


def test_date_text_and_coded_columns():
    from registry_lib.synth.feed_dates import date_text
    from registry_lib.synth.feeds import Coded, _icd10_as_sent

    d = np.array(["1961-04-23", "NaT", "2000-02-29"], dtype="datetime64[D]")
    assert date_text(d).tolist() == ["1961-04-23", None, "2000-02-29"]
    c = Coded(np.array(["C50", None, "C61", "C50"], dtype=object))
    out = _icd10_as_sent(c, np.ones(4, dtype=bool), {"C50": "01", "C61": ""}, np.random.default_rng(0))
    assert out[0] in ("C500", "C501") and out[1] is None and out[2] == "C61" and out[3] in ("C500", "C501")
    three = _icd10_as_sent(c, np.zeros(4, dtype=bool), {"C50": "01"}, np.random.default_rng(0))
    assert three.tolist() == ["C50", None, "C61", "C50"]


def test_200k_identities_take_under_two_seconds_of_cpu():
    areas = _areas(2000)
    pcs = make_postcodes(areas, np.random.default_rng(0))
    pts = _patients(200_000, areas)
    import time

    start = time.process_time()
    assign_identities(pts, pcs, {}, np.random.default_rng(0))
    assert time.process_time() - start < 2.0
