"""Generate, write and run a synthetic cohort: ``generate(config)``, ``write(cohort, path)``, ``run``.

``generate`` runs the stages in order - geography, populations and life tables, incidence
(with the cluster), tumour characteristics, treatment, outcomes (with the treatment effect,
subsequent primaries and the late effect, COVID-19 deaths), identities and opt-outs (helper
modules ``identities`` and ``optouts``), then the raw feeds (``feeds``) - each stage drawing
from its own random stream spawned from the seed, so the same config and seed give
byte-identical output and changing one stage does not shift the draws of the others.

Example:
    >>> from registry_lib import synth
    >>> cfg = synth.load_config("params/cohort/small.yaml", scale=0.0005, years=(2019, 2019))
    >>> cohort = synth.generate(cfg, quiet=True)
    >>> sorted(cohort.truth)
    ['patients', 'record_truth', 'screening_detection', 'treatments', 'tumours']
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.io import atomic_parts, write_json, write_parquet
from registry_lib.progress import in_ci, progress, say
from registry_lib.synth import tables as T
from registry_lib.synth.config import load_config, resolve_config  # noqa: F401  (re-exported)
from registry_lib.synth.effects import cluster_areas
from registry_lib.synth.geography import make_geography
from registry_lib.synth.incidence import (
    Diagnoses,
    _draw_ages,
    _draw_dates,
    area_factors,
    covid_month_multipliers,
    draw_year,
    month_factors,
    national_incidence,
    sample_cells,
    site_rates,
)
from registry_lib.synth.multiple import late_effect_expected, rates_by_year, subsequent_primaries
from registry_lib.synth.outcomes import (
    YEAR_DAYS,
    _year_start,
    background_deaths,
    cancer_death_years,
    covid_deaths,
    excess_curves,
)
from registry_lib.synth.params import N_BANDS, epidemiology_params, month_key
from registry_lib.synth.population import (
    area_population,
    life_table,
    mortality_hazard,
    national_population,
    population_frame,
    standard_populations,
)
from registry_lib.synth.treatment import TreatmentPlan, plan_treatments
from registry_lib.synth.tumours import (
    ROUTE_DCO,
    categorical,
    ethnicity,
    patient_state,
    route_table,
    tumour_characteristics,
)

# Random streams, one per stage. Append new names at the END so existing streams keep their seeds.
STREAMS = ("geography", "incidence", "cluster", "tumours", "treatment", "outcomes", "subsequent",
           "tumours2", "treatment2", "outcomes2", "covid", "causes", "postcodes", "identities",
           "optouts", "feeds", "thinning", "screening", "cpes", "screening_statistics", "linked_feeds",
           "nhs_numbers")


@dataclass
class Cohort:
    """A generated cohort: the config used, reference data, truth, raw feeds and true effects.

    Example:
        >>> c = Cohort(config={"name": "demo", "seed": 1}, reference={}, effects={"cluster": None},
        ...            truth={"patients": pd.DataFrame({"patient_id": [1, 2]})}, feeds={})
        >>> c.config["name"], len(c.truth["patients"]), c.summary   # summary (stage times, sizes) defaults to empty
        ('demo', 2, {})
    """

    config: dict[str, Any]
    reference: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    feeds: dict[str, pd.DataFrame]
    effects: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}


def _day(date: str) -> int:
    return int(np.datetime64(date, "D").astype(np.int64))


class _Timer:
    def __init__(self, quiet: bool):
        self.t = time.perf_counter()
        self.quiet = quiet
        self.times: dict[str, float] = {}

    def done(self, stage: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.times[stage] = round(now - self.t, 3)
        self.t = now
        if not self.quiet:
            say(f"synth: {stage:<12} {self.times[stage]:6.2f} s  {detail}")


def generate(config: dict[str, Any], *, quiet: bool | None = None) -> Cohort:
    """Generate a cohort from a (resolved or raw) config mapping; see the module docstring.

    The whole cohort is held in memory; :func:`run` writes cohorts of more than ``chunk_areas``
    areas chunk by chunk instead (:mod:`registry_lib.synth.chunks`).

    Example:
        >>> cfg = load_config("params/cohort/tiny.yaml")
        >>> cfg["years"] = [2021, 2018]   # generate validates the config before drawing anything
        >>> generate(cfg, quiet=True)
        Traceback (most recent call last):
        registry_lib.errors.ConfigError: cohort 'tiny': years start 2021 is after end 2018
    """
    cfg = resolve_config(config, where=f"cohort {config.get('name', '?')!r}")
    quiet = in_ci() if quiet is None else quiet
    timer = _Timer(quiet)
    ctx = setup(cfg, timer)
    cohort = generate_part(ctx, ctx.rng, timer)
    _say_done(cohort, timer, quiet)
    return cohort


def _say_done(cohort: Cohort, timer: _Timer, quiet: bool) -> None:
    if not quiet or in_ci():
        say(f"synth: {cohort.config['name']} done in {sum(timer.times.values()):.1f} s - "
            f"{len(cohort.truth['patients']):,} patients, {len(cohort.truth['tumours']):,} tumours, "
            f"{cohort.summary['sizes']['feed_records']:,} feed records", summary=True)


@dataclass
class Context:
    """What every part of a cohort shares: the resolved config, the global random streams, the
    epidemiology, the geography and populations, and the reference tables (written once).

    Example:
        >>> ctx = setup(load_config("params/cohort/tiny.yaml"), _Timer(quiet=True))
        >>> ctx.years == list(range(2018, 2022)), sorted(ctx.reference)[:3]
        (True, ['areas', 'life_table', 'national_incidence'])
    """

    cfg: dict[str, Any]
    rng: dict[str, np.random.Generator]
    params: dict[str, Any]
    geo: Any
    rates: Any
    chosen: set[str]
    gen_mask: np.ndarray
    years: list[int]
    pop: np.ndarray
    factors: np.ndarray
    reference: dict[str, pd.DataFrame]
    cmult: dict[str, np.ndarray]


def setup(cfg: dict[str, Any], timer: _Timer | None = None) -> Context:
    """The shared stages of a resolved config: geography, populations, life tables, postcodes and
    screening statistics (each from its own stream of the seed, as :func:`generate` draws them).

    Example:
        >>> ctx = setup(load_config("params/cohort/tiny.yaml"))
        >>> len(ctx.geo.areas) == len(ctx.reference["areas"]), ctx.pop.shape[0]
        (True, 4)
    """
    timer = timer or _Timer(quiet=True)
    rng = _streams(cfg["seed"])
    eff = cfg["effects"]
    params = _switch_off_baselines(epidemiology_params(), eff)
    y0, y1 = cfg["years"]
    hist = cfg["historic"]
    first_year = hist["start"] if hist else y0
    years = list(range(first_year, y1 + 1))
    eof_year = int(cfg["end_of_follow_up"][:4])
    geo = make_geography(cfg["scale"], params, rng["geography"])
    areas = geo.areas
    rates = site_rates(params)
    sites = rates.sites
    chosen = set(cfg["sites"] or sites)
    gen_mask = np.zeros((len(years), len(sites)), dtype=bool)
    for j, s in enumerate(sites):   # loop over sites
        if s in chosen:
            gen_mask[[i for i, y in enumerate(years) if y >= y0], j] = True
            if hist and s in hist["sites"]:
                gen_mask[[i for i, y in enumerate(years) if y < y0], j] = True
    nat = national_population(years, params)
    pop = area_population(nat, geo.size, geo.age_tilt, cfg["scale"])
    pop_ref = area_population(national_population([rates.reference_year], params), geo.size, geo.age_tilt,
                              cfg["scale"])[0]
    factors = area_factors(rates, areas, pop_ref)
    lt_years = list(range(first_year, eof_year + 1))
    reference = {
        "areas": areas,
        "population": population_frame(pop, years, areas["area_id"].to_numpy()),
        "postcodes": None,
        "point_sources": geo.point_sources,
        "life_table": life_table(lt_years, params),
        "standard_populations": standard_populations(params),
        "trusts": geo.trusts,
        "national_incidence": national_incidence(rates, lt_years),
    }
    from registry_lib.synth import identities
    from registry_lib.synth import screening as screening_mod

    reference["postcodes"] = identities.make_postcodes(areas, rng["postcodes"])
    stats = screening_mod.screening_statistics(reference["population"], areas, cfg, params,
                                               rng["screening_statistics"])
    reference["screening_statistics"] = stats.sort_values(["programme", "year", "area_id", "sex", "age_band"],
                                                          kind="stable").reset_index(drop=True)
    timer.done("geography", f"{len(areas):,} areas, {int(pop[years.index(y1)].sum()):,} residents in {y1}, "
               f"{len(reference['postcodes']):,} postcodes")
    return Context(cfg, rng, params, geo, rates, chosen, gen_mask, years, pop, factors, reference,
                   covid_month_multipliers(sites, eff["covid"]))


@dataclass
class Part:
    """Which areas a part of a cohort covers and where its ids start (:func:`generate_part`).

    ``areas``: indices into the reference areas; the ids of the part start after
    ``patient_id``, ``tumour_id``, ``treatment_id``; its NHS numbers avoid ``nhs_numbers`` (int64, sorted).

    Example:
        >>> Part(np.arange(3), 10, 12, 40, np.array([], dtype=np.int64)).patient_id
        10
    """

    areas: np.ndarray
    patient_id: int
    tumour_id: int
    treatment_id: int
    nhs_numbers: np.ndarray


def generate_part(ctx: Context, rng: dict[str, np.random.Generator], timer: _Timer, part: Part | None = None
                  ) -> Cohort:
    """The people of ``part`` (all areas when None) from the streams ``rng``: incidence, tumours,
    treatments, outcomes, identities, feeds and true effects, as one in-memory cohort.

    Example:
        >>> ctx = setup(load_config("params/cohort/tiny.yaml"), _Timer(quiet=True))
        >>> one = generate_part(ctx, _streams(1), _Timer(quiet=True), Part(np.arange(5), 0, 0, 0, np.zeros(0, int)))
        >>> bool(one.truth["patients"]["area_id"].isin(ctx.geo.areas["area_id"][:5]).all())
        True
    """
    cfg, params, eff, geo, rates = ctx.cfg, ctx.params, ctx.cfg["effects"], ctx.geo, ctx.rates
    reference, years, gen_mask, chosen, cmult = ctx.reference, ctx.years, ctx.gen_mask, ctx.chosen, ctx.cmult
    y0, y1 = cfg["years"]
    first_year = years[0]
    eof = _day(cfg["end_of_follow_up"])
    eof_year = int(cfg["end_of_follow_up"][:4])
    lt_years = list(range(first_year, eof_year + 1))
    areas = geo.areas
    sites = rates.sites
    quiet = timer.quiet
    if part is None:
        pop, factors, in_part = ctx.pop, ctx.factors, None
    else:
        pop, factors = ctx.pop[:, part.areas], ctx.factors[:, part.areas]
        in_part = np.zeros(len(areas), dtype=bool)
        in_part[part.areas] = True

    # ---------------------------------------------------------------- incidence (+ cluster)
    covid = eff["covid"]
    expected: dict[str, Any] = {}
    parts = []
    site_start = np.array([years[int(np.argmax(gen_mask[:, j]))] if gen_mask[:, j].any() else y0
                           for j in range(len(sites))])
    for i, year in progress(list(enumerate(years)), "synth: incidence", disable=quiet or len(years) < 5):
        site_list = [j for j in range(len(sites)) if gen_mask[i, j]]
        d = draw_year(year, site_list, rates, pop[i], factors, cmult, rng["incidence"], expected,
                      rates.first_primary_factor(year - site_start))
        if part is not None:
            d = Diagnoses(d.site, d.sex, d.age, part.areas[d.area], d.date, d.in_cluster)
        parts.append(d)
    cluster_info = None
    if eff["cluster"] is not None and eff["cluster"]["site"] in chosen:
        extra, cluster_info = _cluster_cases(eff["cluster"], areas, geo.point_sources, years, gen_mask, rates,
                                             ctx.pop, ctx.factors, cmult, rng["cluster"], in_part)
        parts.append(extra)
    dx = Diagnoses.concat(parts)
    order = np.lexsort((dx.age, dx.area, dx.site, dx.date))
    dx = Diagnoses(*(getattr(dx, k)[order] for k in ("site", "sex", "age", "area", "date", "in_cluster")))
    n_first = len(dx)
    timer.done("incidence", f"{n_first:,} first primaries")

    # ---------------------------------------------------------------- tumour characteristics
    quint = areas["deprivation_quintile"].to_numpy().astype(np.int64)
    region = areas["region"].to_numpy()
    exp2019 = rates.expected_national(rates.reference_year)
    rshares = route_table(sites, exp2019, params)
    site_codes = np.array(sites, dtype=object)
    d0 = dx.date.astype(np.int64)
    birth = d0 - np.floor(dx.age * YEAR_DAYS).astype(np.int64)
    tum1 = tumour_characteristics(site_codes[dx.site], dx.date, quint[dx.area], geo.area_trust_choices[dx.area],
                                  region[dx.area], geo.trusts, rshares, dx.site, params, covid, rng["tumours"])
    ps, cm = patient_state(dx.age, quint[dx.area], tum1["stage"].to_numpy(), params, rng["tumours"])
    eth = ethnicity(dx.age, region[dx.area] == "London", params, rng["tumours"])
    timer.done("tumours")

    # ---------------------------------------------------------------- treatment & outcomes
    frame1 = tum1.assign(age=dx.age, sex=dx.sex, performance_status=ps, comorbidity_score=cm,
                         deprivation_quintile=quint[dx.area], diagnosis_date=dx.date)
    plan1 = plan_treatments(frame1, params, eff, rng["treatment"])
    a_tab, b_tab = excess_curves(sites, params)
    te = eff["treatment_effect"]
    c1, c1_years, norm, dco1 = _cancer_death_days(tum1, frame1, dx.site, d0, plan1, a_tab, b_tab, te, params, None,
                                        rng["outcomes"])
    mu = mortality_hazard(np.array(lt_years), params)
    all_cause = te is not None and te["applies_to"] == "all_cause"
    split = np.where(plan1.target_treated & all_cause, d0 + plan1.target_start, np.inf)
    hr_after = np.where(plan1.target_treated & all_cause, te["hazard_ratio"] if te else 1.0, 1.0)
    e_bg = rng["outcomes"].exponential(1.0, n_first)
    bg = background_deaths(d0, birth, dx.sex.astype(np.int64), quint[dx.area], eof, mu, first_year, e_bg,
                           split, hr_after)
    bg = np.where(dco1, np.inf, bg)
    death1 = np.minimum(bg, c1)
    timer.done("outcomes", f"{int((death1 <= eof).sum()):,} deaths before subsequent primaries")

    # ---------------------------------------------------------------- subsequent primaries, late effect
    late = eff["late_effect"]
    late_ok = late is not None and late["first_site"] in chosen and late["second_site"] in chosen
    late_cfg = late if late_ok else None
    eligible, late_from, rt_day = _late_effect_cohort(late_cfg, dx, plan1, d0, birth, death1, site_codes)
    ry = rates_by_year(rates, range(first_year, y1 + 1), gen_mask, params)
    t_end = _year_start(y1 + 1)
    sub = subsequent_primaries(d0, birth, dx.sex.astype(np.int64), quint[dx.area], dx.site, death1, eligible,
                               late_from, ry, first_year, t_end, rates, params, late_cfg, rng["subsequent"])
    # COVID-19 thinning of subsequent primaries (the late-effect ones are left whole)
    if covid is not None and len(sub.patient):
        mk = sub.day.astype(np.int64).astype("datetime64[D]").astype("datetime64[M]")
        m = np.ones(len(sub.patient))
        for key, vec in cmult.items():   # loop over COVID-19 months
            hit = mk == np.datetime64(key, "M")
            m[hit] = vec[sub.site[hit]]
        keep = sub.late_effect | (rng["thinning"].random(len(m)) < m)
        sub = type(sub)(sub.patient[keep], sub.site[keep], sub.day[keep], sub.late_effect[keep])
    n2 = len(sub.patient)
    p2 = sub.patient
    d2 = sub.day.astype(np.int64)
    date2 = d2.astype("datetime64[D]")
    age2 = (d2 - birth[p2]) / YEAR_DAYS
    tum2 = tumour_characteristics(site_codes[sub.site], date2, quint[dx.area[p2]], geo.area_trust_choices[dx.area[p2]],
                                  region[dx.area[p2]], geo.trusts, rshares, sub.site, params, covid, rng["tumours2"])
    frame2 = tum2.assign(age=age2, sex=dx.sex[p2], performance_status=ps[p2], comorbidity_score=cm[p2],
                         deprivation_quintile=quint[dx.area[p2]], diagnosis_date=date2)
    plan2 = plan_treatments(frame2, params, eff, rng["treatment2"])
    c2, _, _, _ = _cancer_death_days(tum2, frame2, sub.site, d2, plan2, a_tab, b_tab, te, params, norm,
                                     rng["outcomes2"])
    c2_pat = np.full(n_first, np.inf)
    np.minimum.at(c2_pat, p2, c2)
    death2 = np.minimum(death1, c2_pat)

    # ---------------------------------------------------------------- COVID-19 deaths
    cov_death = np.full(n_first, np.inf)
    if covid is not None:
        sact1 = _first_sact_day(plan1, d0, n_first)
        sact2 = np.full(n_first, np.nan)
        s2 = _first_sact_day(plan2, d2, n2)
        ok = ~np.isnan(s2)
        sact2[p2[ok]] = s2[ok]
        e_cov = rng["covid"].exponential(1.0, n_first)
        cov_death = covid_deaths(d0.astype(float), death2, birth.astype(float), dx.sex.astype(np.int64),
                                 cm.astype(float), [sact1, sact2], covid, eof, e_cov)
    final = np.minimum(death2, cov_death)
    keep2 = d2 < final[p2]
    timer.done("follow-up", f"{int(keep2.sum()):,} subsequent primaries, {int(np.isfinite(cov_death).sum()):,} COVID-19 deaths")

    # ---------------------------------------------------------------- causes of death
    dead = final <= eof
    death_day = np.where(dead, np.floor(final), np.nan)
    cause = np.full(n_first, None, dtype=object)
    is_c1 = dead & (c1 <= final) & (c1 < np.minimum(bg, np.minimum(c2_pat, cov_death)) + 1e-9)
    cause[is_c1] = site_codes[dx.site[is_c1]]
    # second tumour that killed
    c2_kill = keep2 & (c2 <= final[p2] + 1e-9) & dead[p2] & ~is_c1[p2]
    cause[p2[c2_kill]] = site_codes[sub.site[c2_kill]]
    is_cov = dead & np.isfinite(cov_death) & (cov_death <= final + 1e-9) & (cause == None)  # noqa: E711
    cause[is_cov] = covid["death_code"] if covid is not None else None
    is_bg = dead & (cause == None)  # noqa: E711
    cause[is_bg] = _background_causes((death_day[is_bg] - birth[is_bg]) / YEAR_DAYS, params, rng["causes"])

    # ---------------------------------------------------------------- assemble truth
    truth, patients_core = _assemble(cfg, dx, tum1, tum2, plan1, plan2, sub, keep2, d0, birth, ps, cm, eth,
                                     quint, areas, death_day, cause, eof,
                                     (part.patient_id, part.tumour_id, part.treatment_id) if part else (0, 0, 0))
    timer.done("truth", f"{len(truth['patients']):,} patients, {len(truth['tumours']):,} tumours, "
               f"{len(truth['treatments']):,} treatments")

    # ---------------------------------------------------------------- screening programmes (issue 14)
    from registry_lib.synth import screening as screening_mod

    scr = screening_mod.assign_screening(truth["tumours"], truth["patients"], areas, cfg, params, rng["screening"])
    truth["tumours"] = truth["tumours"].assign(route_to_diagnosis=scr.routes)
    timer.done("screening", f"{len(scr.episodes):,} screening invitations")

    # ---------------------------------------------------------------- identities, opt-outs, feeds
    from registry_lib.synth import feeds as feeds_mod
    from registry_lib.synth import identities, optouts

    postcodes = reference["postcodes"]
    with_ids = identities.assign_identities(patients_core, postcodes, cfg, rng["identities"])
    if part is not None:
        with_ids["nhs_number"] = distinct_nhs_numbers(with_ids["nhs_number"].to_numpy(), part.nhs_numbers,
                                                      rng["nhs_numbers"])
    with_opt = optouts.assign_optouts(with_ids, areas, cfg, rng["optouts"])
    truth["patients"] = _patients_table(with_opt, truth["patients"])
    timer.done("identities", f"{len(postcodes):,} postcodes")
    feeds, record_truth = feeds_mod.make_feeds(reference, {k: truth[k] for k in ("patients", "tumours", "treatments")},
                                               cfg, rng["feeds"])
    linked, linked_truth, linked_effects, weights = _linked_feeds(cfg, params, truth, scr, rng)
    feeds.update(linked)
    truth["record_truth"] = pd.concat([record_truth, linked_truth], ignore_index=True)
    truth["screening_detection"] = feeds_linked_detection(scr)
    n_records = sum(len(f) for f in feeds.values())
    timer.done("feeds", f"{n_records:,} feed records")

    # ---------------------------------------------------------------- true effects
    effects = _effects_summary(cfg, truth, expected, cmult, sites, rates, cluster_info, plan1, dx, eligible,
                               late_from, rt_day, sub, keep2, final, birth, quint, ry, first_year, t_end,
                               cov_death, params, rshares, exp2019)
    effects.update(linked_effects)
    summary = {
        "stage_seconds": timer.times,
        "sizes": {"areas": len(areas), "patients": len(truth["patients"]), "tumours": len(truth["tumours"]),
                  "treatments": len(truth["treatments"]), "feed_records": n_records,
                  **{f"feed_{k}": len(v) for k, v in feeds.items()}},
        "expected_all_primaries": {s: {int(y): float(v.sum()) for y, v in d.items()} for s, d in expected.items()},
        "net_survival": _net_survival(c1_years, dco1, dx, site_codes, y0),
        "weights": {**weights, "sact_starts": _sact_counts(truth["treatments"])},
    }
    return Cohort(cfg, reference, truth, feeds, effects, summary)


# ----------------------------------------------------------------------------------------------
def feeds_linked_detection(scr: Any) -> pd.DataFrame:
    """``truth/screening_detection`` (see :func:`registry_lib.synth.feeds_linked.detection_truth`).

    Example:
        >>> from registry_lib.synth.screening import ScreeningResult
        >>> det = pd.DataFrame({"tumour_id": [7], "programme": "bowel", "detection": ["screen_detected"],
        ...                     "screen_day": [18000.0], "years_since_screen": [0.0]})
        >>> feeds_linked_detection(ScreeningResult(np.array([]), pd.DataFrame(), det)).to_dict("records")
        [{'tumour_id': 7, 'programme': 'bowel', 'detection': 'screen_detected', 'screen_date': datetime.date(2019, 4, 14), 'years_since_screen': 0.0}]
    """
    from registry_lib.synth.feeds_linked import detection_truth

    return detection_truth(scr)


def _linked_feeds(cfg: dict[str, Any], params: dict[str, Any], truth: dict[str, pd.DataFrame], scr: Any,
                  rng: dict[str, np.random.Generator]
                  ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, Any], dict[str, int]]:
    """The screening and CPES feeds, their record truth, their true effects (issue 14) and the
    respondent counts behind the CPES means (to pool the means of a chunked cohort)."""
    from registry_lib.synth import cpes as cpes_mod
    from registry_lib.synth import screening as screening_mod
    from registry_lib.synth.feeds_linked import make_linked_feeds

    frame, cpes_effects = cpes_mod.survey(truth["tumours"], truth["treatments"], truth["patients"], cfg, params,
                                          rng["cpes"])
    responded = frame["responded"].to_numpy(dtype=bool)
    weights = {"cpes_responded": int(responded.sum()),
               "cpes_emergency": int((responded & (frame["route_to_diagnosis"].to_numpy(dtype=object)
                                                   == cpes_mod.EMERGENCY)).sum()),
               "cpes_outlier": int((responded & (frame["trust_code"].to_numpy(dtype=object)
                                                 == cpes_effects["outlier_trust"])).sum())}
    feeds, record_truth = make_linked_feeds(truth["patients"], scr, frame, cfg, rng["linked_feeds"])
    return feeds, record_truth, {"cpes": cpes_effects,
                                 "screening": screening_mod.effects_summary(scr, cfg, params)}, weights


def _cluster_cases(cluster: dict[str, Any], areas: pd.DataFrame, sources: pd.DataFrame, years: list[int],
                   gen_mask: np.ndarray, rates: Any, pop: np.ndarray, factors: np.ndarray,
                   cmult: dict[str, np.ndarray], rng: np.random.Generator, in_part: np.ndarray | None = None
                   ) -> tuple[Diagnoses, dict[str, Any]]:
    """The cluster's extra cases (``in_part``: only in those areas) and its expected counts."""
    info = cluster_areas(cluster, areas, sources)
    s = rates.index(cluster["site"])
    src = info["source"]
    parts, base_expected, extra_expected = [], 0.0, 0.0
    rr = float(cluster["relative_risk"])
    pooled = cluster.get("pooled")
    for i, year in enumerate(years):   # loop over years
        if not gen_mask[i, s]:
            continue
        mf = month_factors(year, rates, cmult)
        cov_factor = mf[s].sum()
        rate = rates.rate(year)[s].reshape(-1)
        for mask, excess, start in (
            (info["named"], rr - 1.0, np.full(len(areas), int(src["start_year"]))),
            (info["pooled"], (float(pooled["relative_risk"]) - 1.0) if pooled else 0.0, info["pooled_start"]),
        ):
            on = mask & (year >= start) if in_part is None else mask & (year >= start) & in_part
            if cluster["years"][0] <= year <= cluster["years"][1] and on.any():
                idx = np.flatnonzero(on)
                w = pop[i][idx].reshape(len(idx), -1) * factors[s][idx, None]
                mean = w.sum(axis=0) * rate * cov_factor
                if mask is info["named"]:
                    base_expected += float(mean.sum())
                    extra_expected += float(mean.sum()) * max(excess, 0.0)
                if excess <= 0:
                    continue
                cell, area = sample_cells(mean * excess, w, rng)
                k = len(cell)
                if k:
                    si = np.full(k, s)
                    parts.append(Diagnoses(si, (cell // N_BANDS + 1).astype(np.int8), _draw_ages(cell % N_BANDS, rng),
                                           idx[area], _draw_dates(year, si, mf, rng), np.ones(k, dtype=bool)))
    info["near_ids"] = areas["area_id"].to_numpy()[info["named"]].tolist()
    info["base_expected"] = base_expected
    info["extra_expected"] = extra_expected
    return Diagnoses.concat(parts), info


def _cancer_death_days(tumours, frame, site, diagnosis_day, plan, a_tab, b_tab, effect, params, norm, rng):
    """Day of cancer death of each tumour (diagnosis day for death-certificate-only ones).

    The excess hazard comes from the site × stage curves, scaled by the patient's multiplier
    (``norm`` from the first primaries, or None to compute it), and lowered by the injected
    treatment effect from the treatment's start. Returns (days, years from diagnosis, norm, death-certificate-only).
    """
    stage = tumours["stage"].to_numpy().astype(int) - 1
    h5 = a_tab[site, stage] * (1 - np.exp(-5 * b_tab[site, stage]))
    k, norm = _excess_multiplier(frame, site, plan, params, norm, h5)
    e = rng.exponential(1.0, len(stage))
    hr = np.where(plan.target_treated, effect["hazard_ratio"] if effect else 1.0, 1.0)
    start = np.where(plan.target_treated, plan.target_start / YEAR_DAYS, np.inf)
    years = cancer_death_years(a_tab[site, stage], b_tab[site, stage], k, e, hr, start)
    dco = tumours["route_to_diagnosis"].to_numpy() == ROUTE_DCO
    days = np.where(dco, diagnosis_day.astype(float), diagnosis_day + years * YEAR_DAYS)
    return days, years, norm, dco


def _excess_multiplier(frame: pd.DataFrame, site_idx: np.ndarray, plan: TreatmentPlan, params: dict[str, Any],
                       norm: dict[int, float] | None, h5: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
    """Covariate × generic-treatment multiplier ``k`` of the excess hazard.

    Within each site × stage, ``k`` is scaled so that the cohort's mean 5-year net survival,
    ``mean(exp(-k·H(5)))``, equals the reference value in survival.yaml (``h5`` = H(5) of each
    tumour at k = 1); the relative effects of covariates and treatments are kept exactly.
    ``norm`` (site*10+stage -> scale) is solved on first primaries and reused for later ones.
    """
    sp = params["survival"]
    cv = sp["covariates"]
    lin = (cv["age_per_10y"] * (frame["age"].to_numpy() - 70.0) / 10.0
           + cv["performance_status"] * (frame["performance_status"].to_numpy() - 1)
           + cv["comorbidity"] * (frame["comorbidity_score"].to_numpy() - 1)
           + cv["deprivation"] * (frame["deprivation_quintile"].to_numpy() - 3))
    hr = sp["treatment_hazard_ratio"]
    treat = (np.where(plan.surgery, hr["surgery"], 1.0)
             * np.where(plan.sact & ~plan.target, hr["sact"], 1.0)
             * np.where(plan.radiotherapy, hr["radiotherapy"], 1.0))
    stage = frame["stage"].to_numpy().astype(int)
    key = site_idx.astype(np.int64) * 10 + stage
    raw = np.exp(lin) * treat
    if len(key) == 0:
        return np.zeros(0), norm or {}
    uniq, inv = np.unique(key, return_inverse=True)
    if norm is None:
        target = np.bincount(inv, weights=np.exp(-h5)) / np.bincount(inv)      # S(5) at k = 1 (all equal)
        lo, hi = np.full(len(uniq), -8.0), np.full(len(uniq), 8.0)             # log scale
        counts = np.bincount(inv)
        for _ in range(50):   # bisection, vectorised over site × stage cells
            mid = (lo + hi) / 2
            surv = np.bincount(inv, weights=np.exp(-np.exp(mid[inv]) * raw * h5)) / counts
            lo = np.where(surv > target, mid, lo)
            hi = np.where(surv > target, hi, mid)
        norm = {int(k): float(np.exp((a + b) / 2)) for k, a, b in zip(uniq, lo, hi, strict=True)}
    scale = np.array([norm.get(int(k), 1.0) for k in uniq])
    return raw * scale[inv], norm


def _first_sact_day(plan: TreatmentPlan, d0: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    rows = plan.rows[plan.rows["modality"] == "sact"]
    if len(rows):
        t = rows["tumour"].to_numpy()
        out[t] = d0[t] + rows["offset_days"].to_numpy()
    return out


def _late_effect_cohort(late: dict[str, Any] | None, dx: Diagnoses, plan: TreatmentPlan, d0: np.ndarray,
                        birth: np.ndarray, death1: np.ndarray, site_codes: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(d0)
    eligible = np.zeros(n, dtype=bool)
    late_from = np.full(n, np.inf)
    rt_day = np.full(n, np.nan)
    if late is None:
        return eligible, late_from, rt_day
    rows = plan.rows[(plan.rows["modality"] == "radiotherapy") & plan.rows["rt_region"].isin(late["rt_regions"])]
    t = rows["tumour"].to_numpy()
    rt_day[t] = d0[t] + rows["offset_days"].to_numpy()
    age_rt = (rt_day - birth) / YEAR_DAYS
    lo, hi = late["ages"]
    with np.errstate(invalid="ignore"):
        eligible = ((site_codes[dx.site] == late["first_site"]) & (dx.sex == late["sex"]) & ~np.isnan(rt_day)
                    & (age_rt >= lo) & (age_rt < hi + 1) & (rt_day < death1))
    late_from = np.where(eligible, rt_day + float(late["latency_years"]) * YEAR_DAYS, np.inf)
    return eligible, late_from, rt_day


def _background_causes(age: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    bc = params["mortality"]["background_causes"]
    codes = np.array(bc["codes"], dtype=object)
    p = np.where((age < 65)[:, None], np.asarray(bc["under_65"])[None, :], np.asarray(bc["over_65"])[None, :])
    return codes[categorical(p, rng)] if len(age) else np.zeros(0, dtype=object)


def _assemble(cfg: dict[str, Any], dx: Diagnoses, tum1: pd.DataFrame, tum2: pd.DataFrame, plan1: TreatmentPlan,
              plan2: TreatmentPlan, sub: Any, keep2: np.ndarray, d0: np.ndarray, birth: np.ndarray,
              ps: np.ndarray, cm: np.ndarray, eth: np.ndarray, quint: np.ndarray, areas: pd.DataFrame,
              death_day: np.ndarray, cause: np.ndarray, eof: int, offsets: tuple[int, int, int] = (0, 0, 0)
              ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    n1 = len(d0)
    area_ids = areas["area_id"].to_numpy()
    pid0, tid0, trid0 = offsets
    pid = np.arange(pid0 + 1, pid0 + n1 + 1, dtype=np.int64)
    p2 = sub.patient[keep2]
    d2 = sub.day[keep2].astype(np.int64)
    tum2k = tum2[keep2].reset_index(drop=True)
    tumours = pd.concat([
        tum1.assign(patient_id=pid, day=d0, birth=birth, area_id=area_ids[dx.area], in_cluster=dx.in_cluster,
                    slot=np.arange(n1), batch=1),
        tum2k.assign(patient_id=pid[p2], day=d2, birth=birth[p2], area_id=area_ids[dx.area[p2]], in_cluster=False,
                     slot=np.flatnonzero(keep2), batch=2),
    ], ignore_index=True)
    order = np.lexsort((tumours["batch"].to_numpy(), tumours["patient_id"].to_numpy(), tumours["day"].to_numpy()))
    tumours = tumours.iloc[order].reset_index(drop=True)
    tumours["tumour_id"] = np.arange(tid0 + 1, tid0 + len(tumours) + 1, dtype=np.int64)
    dates = tumours["day"].to_numpy().astype("datetime64[D]")
    births = tumours["birth"].to_numpy().astype("datetime64[D]")
    tumours["diagnosis_date"] = dates
    tumours["age_at_diagnosis"] = _completed_years(births, dates)
    tumours["stage"] = tumours["stage"].astype(str)
    # treatments: keep those started before death and by the end of follow-up
    tid_of = {}
    for batch in (1, 2):   # the two tumour batches
        sel = tumours["batch"].to_numpy() == batch
        tid_of[batch] = pd.Series(tumours["tumour_id"].to_numpy()[sel], index=tumours["slot"].to_numpy()[sel])
    trs = []
    for batch, plan, base_day, pat in ((1, plan1, d0, pid), (2, plan2, sub.day.astype(np.int64), pid[sub.patient])):
        rows = plan.rows
        t = rows["tumour"].to_numpy()
        valid = np.isin(t, tid_of[batch].index.to_numpy())
        rows = rows[valid]
        t = t[valid]
        start = base_day[t] + rows["offset_days"].to_numpy().astype(np.int64)
        pat_death = death_day[(pat[t] - 1 - pid0)]
        ok = (start <= eof) & (np.isnan(pat_death) | (start < pat_death))
        trs.append(rows[ok].assign(tumour_id=tid_of[batch].loc[t[ok]].to_numpy(), patient_id=pat[t[ok]],
                                   start_day=start[ok]))
    tr = pd.concat(trs, ignore_index=True)
    tr = tr.sort_values(["patient_id", "start_day", "tumour_id", "modality"], kind="stable").reset_index(drop=True)
    treatments = pd.DataFrame({
        "treatment_id": np.arange(trid0 + 1, trid0 + len(tr) + 1, dtype=np.int64),
        "patient_id": tr["patient_id"].to_numpy(), "tumour_id": tr["tumour_id"].to_numpy(),
        "modality": tr["modality"].to_numpy(), "start_date": tr["start_day"].to_numpy().astype("datetime64[D]"),
        "intent": tr["intent"].to_numpy(), "regimen": tr["regimen"].to_numpy(),
        "cycles": _nullable_int(tr["cycles"].to_numpy()),
        "rt_region": tr["rt_region"].to_numpy(), "dose_gy": tr["dose_gy"].to_numpy(),
        "fractions": _nullable_int(tr["fractions"].to_numpy()),
        "procedure_code": tr["procedure_code"].to_numpy(),
    })
    tumours_out = tumours[T.TRUE_TUMOURS.column_names].copy()
    death_dates = pd.to_datetime(np.where(np.isnan(death_day), np.datetime64("NaT"),
                                          np.nan_to_num(death_day).astype(np.int64).astype("datetime64[D]")))
    core = pd.DataFrame({
        "patient_id": pid, "sex": dx.sex.astype(np.int8), "birth_date": birth.astype("datetime64[D]"),
        "area_id": area_ids[dx.area], "first_diagnosis_date": d0.astype("datetime64[D]"),
        "death_date": death_dates,
    })
    core["birth_date"] = pd.to_datetime(core["birth_date"])
    core["first_diagnosis_date"] = pd.to_datetime(core["first_diagnosis_date"])
    patients = pd.DataFrame({
        "patient_id": pid, "birth_date": core["birth_date"], "sex": dx.sex.astype(np.int8), "ethnicity": eth,
        "area_id": area_ids[dx.area], "deprivation_quintile": quint[dx.area].astype(np.int8),
        "performance_status": ps.astype(np.int8), "comorbidity_score": cm.astype(np.int8),
        "death_date": death_dates, "death_cause_icd10": cause,
    })
    return {"patients": patients, "tumours": tumours_out, "treatments": treatments}, core


def _nullable_int(values: np.ndarray) -> pd.Series:
    """Int16 with nulls where the value is negative (the 'not applicable' marker)."""
    values = values.astype(np.int64)
    return pd.Series(values, dtype="Int16").mask(values < 0)


def _patients_table(with_ids: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    merged = base.copy()
    for col in ("nhs_number", "given_name", "family_name", "family_name_later", "name_change_date", "postcode",
                "postcode_later", "move_date", "ndop_opted_out", "registration_opted_out",
                "registration_optout_date"):
        merged[col] = with_ids[col].to_numpy()
    return merged[T.TRUE_PATIENTS.column_names]


def distinct_nhs_numbers(numbers: np.ndarray, used: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``numbers`` (NHS numbers as text) with those in ``used`` (int64, sorted) or repeated
    redrawn, so a chunk's people never share a number with earlier chunks'.

    Example:
        >>> out = distinct_nhs_numbers(np.array(["9000000009", "9000000017"], dtype=object),
        ...                            np.array([9000000009]), np.random.default_rng(0))
        >>> out[1], out[0] != "9000000009", len(out[0])
        ('9000000017', True, 10)
    """
    from registry_lib.nhs_number import generate_nhs_numbers

    num = np.asarray(numbers).astype(np.int64)
    while True:   # a few rounds at most: clashes are rare and redraws rarer
        first = np.zeros(len(num), dtype=bool)
        first[np.unique(num, return_index=True)[1]] = True
        at = np.minimum(np.searchsorted(used, num), max(len(used) - 1, 0))
        clash = ~first | (used[at] == num if len(used) else False)
        if not clash.any():
            return num.astype("U10").astype(object)
        num[clash] = generate_nhs_numbers(int(clash.sum()), rng).astype(np.int64)


def _completed_years(birth: np.ndarray, date: np.ndarray) -> np.ndarray:
    b = pd.DatetimeIndex(birth)
    d = pd.DatetimeIndex(date)
    years = d.year - b.year - ((d.month < b.month) | ((d.month == b.month) & (d.day < b.day)))
    return np.asarray(years, dtype=np.int16)


def _net_survival(c1_years: np.ndarray, dco: np.ndarray, dx: Diagnoses, site_codes: np.ndarray, y0: int
                  ) -> dict[str, dict[str, float]]:
    """True (latent) 1- and 5-year net survival by site, first primaries diagnosed from ``y0``."""
    t = np.where(dco, 0.0, c1_years)
    year = dx.date.astype("datetime64[Y]").astype(int) + 1970
    out = {}
    for s in np.unique(dx.site):   # loop over sites
        sel = (dx.site == s) & (year >= y0)
        if sel.sum() < 20:
            continue
        out[str(site_codes[s])] = {"n": int(sel.sum()), "one_year": float((t[sel] > 1).mean()),
                                   "five_year": float((t[sel] > 5).mean())}
    return out


def _effects_summary(cfg: dict[str, Any], truth: dict[str, pd.DataFrame], expected: dict[str, Any],
                     cmult: dict[str, np.ndarray], sites: list[str], rates: Any, cluster_info: dict[str, Any] | None,
                     plan1: TreatmentPlan, dx: Diagnoses, eligible: np.ndarray, late_from: np.ndarray,
                     rt_day: np.ndarray, sub: Any, keep2: np.ndarray, final: np.ndarray, birth: np.ndarray,
                     quint: np.ndarray, ry: np.ndarray, first_year: int, t_end: int, cov_death: np.ndarray,
                     params: dict[str, Any], rshares: np.ndarray, exp2019: np.ndarray) -> dict[str, Any]:
    eff = cfg["effects"]
    tumours = truth["tumours"]
    out: dict[str, Any] = {"seed": cfg["seed"], "scale": cfg["scale"], "cohort": cfg["name"]}
    # (a) cluster
    c = eff["cluster"]
    if c is None or cluster_info is None:
        out["cluster"] = None
    else:
        src = cluster_info["source"]
        area_ids = truth["tumours"]["area_id"]
        years = tumours["diagnosis_date"].dt.year
        in_window = (tumours["site_icd10"] == c["site"]) & (years >= max(c["years"][0], int(src["start_year"]))) \
            & (years <= c["years"][1])
        observed = int((in_window & area_ids.isin(cluster_info["near_ids"])).sum())
        e_base = cluster_info["base_expected"]
        out["cluster"] = {
            "site": c["site"], "source_id": str(src["source_id"]), "source_type": str(src["source_type"]),
            "source_x": float(src["x"]), "source_y": float(src["y"]), "source_start_year": int(src["start_year"]),
            "relative_risk": float(c["relative_risk"]), "radius_km": float(c["radius_km"]),
            "years": [max(c["years"][0], int(src["start_year"])), c["years"][1]],
            "areas_within_radius": cluster_info["near_ids"],
            "expected_without_effect": round(e_base, 3),
            "expected_extra_cases": round(cluster_info["extra_expected"], 3),
            "observed_within_radius": observed,
            "observed_relative_risk": round(observed / e_base, 4) if e_base > 0 else None,
            "in_cluster_cases": int(tumours["in_cluster"].sum()),
            "pooled": c.get("pooled"),
            "note": "expected_without_effect: the model expectation (all primaries) of the site in the areas within "
                    "the radius over the years; observed includes every tumour of the site there.",
        }
    # (b) treatment effect
    te = eff["treatment_effect"]
    if te is None:
        out["treatment_effect"] = None
    else:
        out["treatment_effect"] = {
            "sites": te["sites"], "stage": te["stage"], "treatment": te["treatment"],
            "hazard_ratio": float(te["hazard_ratio"]), "applies_to": te["applies_to"],
            "grace_days": te["grace_days"],
            "eligible_first_primaries": int(plan1.target.sum()),
            "treated_first_primaries": int(plan1.target_treated.sum()),
            "assignment": te["assignment"],
            "definition": "first or later primary of the sites at the true stage, with surgery; treated = adjuvant "
                          "SACT started within grace_days of diagnosis. The hazard ratio multiplies the "
                          + ("patient's whole (all-cause) hazard" if te["applies_to"] == "all_cause" else
                             "cancer (excess) hazard") + " from the SACT start; assignment is confounded by age, "
                          "performance status, comorbidity and deprivation, which also raise the excess hazard.",
        }
    # (c) late effect
    le = eff["late_effect"]
    if le is None:
        out["late_effect"] = None
    else:
        late_site = rates.index(le["second_site"]) if le["second_site"] in rates.sites else -1
        kept_late = sub.late_effect & keep2
        late_pat = sub.patient[kept_late]
        late_day = np.full(len(final), np.inf)
        late_day[late_pat] = sub.day[kept_late]
        d_from = np.where(eligible, late_from, np.inf)
        d_to = np.minimum(np.minimum(final, late_day), float(t_end))
        sel = eligible & (d_to > d_from)
        e_late, py = (late_effect_expected(d_from[sel], d_to[sel], birth[sel].astype(float), dx.sex[sel].astype(np.int64),
                                           quint[dx.area[sel]], late_site, ry, first_year) if late_site >= 0 else (0.0, 0.0))
        obs = int(kept_late.sum())
        out["late_effect"] = {
            **{k: le[k] for k in ("first_site", "second_site", "sex", "rt_regions", "ages", "latency_years")},
            "relative_risk": float(le["relative_risk"]),
            "cohort_size": int(eligible.sum()),
            "observed": obs, "expected": round(e_late, 4), "person_years_after_latency": round(py, 2),
            "observed_to_expected": round(obs / e_late, 4) if e_late > 0 else None,
            "note": "cohort: women whose first primary is the first_site, with radiotherapy to rt_regions at ages in "
                    "[ages[0], ages[1]] (completed years); at risk from latency after the radiotherapy start to breast "
                    "cancer, death or the end of the diagnosis years; expected at the population rates of the "
                    "generator (by attained age band, year, deprivation).",
        }
    # (d) COVID-19
    cv = eff["covid"]
    if cv is None:
        out["covid"] = None
    else:
        months = cv["months"]
        per_site: dict[str, Any] = {}
        tum_month = tumours["diagnosis_date"].to_numpy().astype("datetime64[M]")
        month_arr = np.array(months, dtype="datetime64[M]")
        in_months = np.isin(tum_month, month_arr)
        counts = (pd.DataFrame({"site": tumours["site_icd10"].to_numpy()[in_months],
                                "month": tum_month[in_months].astype(str)})
                  .value_counts().to_dict())
        for j, s in enumerate(sites):   # loop over sites
            covered = [mo for mo in months if int(mo[:4]) in expected.get(s, {})]
            if not covered:
                continue
            exp_m = {}
            for mo in covered:   # the COVID-19 months within the diagnosis years
                y, m = int(mo[:4]), int(mo[5:])
                exp_m[mo] = float(expected[s][y][m - 1])
            mult = {mo: float(cmult[mo][j]) for mo in months}
            deficit = {mo: exp_m[mo] * (1 - mult[mo]) for mo in covered}

            def window(a: str, b: str, _d: dict[str, float] = deficit) -> float:
                return round(sum(v for k, v in _d.items() if a <= k <= b), 3)
            per_site[s] = {
                "april_2020_multiplier": mult.get("2020-04"),
                "multipliers": mult,
                "expected_without_covid": {k: round(v, 3) for k, v in exp_m.items()},
                "cumulative_deficit": {"2020-03..2020-12": window("2020-03", "2020-12"),
                                       "2020-03..2021-12": window("2020-03", "2021-12")},
                "observed": {mo: int(counts.get((s, mo), 0)) for mo in covered},
            }
        routes = params["tumour"]["routes"]
        nat_mix = (exp2019[:, None] * rshares).sum(axis=0) / exp2019.sum()
        april = months.index("2020-04") if "2020-04" in months else 0
        fac = np.array([cv["route_factors"].get(r, [1.0] * len(months))[april] for r in routes])
        out["covid"] = {
            "months": months,
            "sites": per_site,
            "route_relative_multipliers_april_2020": {r: round(float(fac[i] / (nat_mix * fac).sum()), 4)
                                                      for i, r in enumerate(routes)},
            "route_factors": cv["route_factors"],
            "stage_shift": cv["stage_shift"],
            "sact_start_multipliers": cv["sact_start_multipliers"],
            "sact_starts_vs_same_month_2019": _sact_ratios(truth["treatments"]),
            "breast_rt_5_fraction": cv["breast_rt_5_fraction"],
            "covid_deaths": int((truth["patients"]["death_cause_icd10"] == cv["death_code"]).sum()),
            "death_code": cv["death_code"],
            "death_model": {k: cv[k] for k in ("death_monthly_hazard", "death_age_per_year", "death_male_hr",
                                               "death_comorbidity_hr", "death_recent_sact_hr", "recent_sact_days")},
            "note": "Months outside the diagnosis years are left out of expected/observed/deficits. "
                    "expected_without_covid: the model's expected count of all primaries of the site in that month "
                    "(first and subsequent); cumulative_deficit = sum over months of "
                    "expected_without_covid × (1 − multiplier). Route multipliers: the site multiplier times this "
                    "relative factor.",
        }
    out["contrasts"] = true_contrasts(eff, params, out["covid"]["sites"] if out["covid"] else None, list(sites))
    return out


def _switch_off_baselines(params: dict[str, Any], eff: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the generic effects of a switched-off kind removed (a copy if changed).

    ``treatment_effect: null`` also removes the generic SACT excess-hazard ratio of survival.yaml
    (no SACT effect on survival anywhere); ``late_effect: null`` also sets the generic
    ``second_primary_rate_ratio`` of incidence.yaml to 1 (second cancers at population rates).
    """
    if eff["treatment_effect"] is not None and eff["late_effect"] is not None:
        return params
    params = copy.deepcopy(params)
    if eff["treatment_effect"] is None:
        params["survival"]["treatment_hazard_ratio"]["sact"] = 1.0
    if eff["late_effect"] is None:
        params["incidence"]["second_primary_rate_ratio"] = 1.0
    return params


def true_contrasts(eff: dict[str, Any], params: dict[str, Any], covid_sites: dict[str, Any] | None,
                   sites: list[str]) -> dict[str, Any]:
    """The true value of every contrast a study estimates, 1.0 (or 0 missing diagnoses) when the
    effect is switched off; the contrast's definition comes from the effect, or from
    ``params/epidemiology/effects.yaml`` when it is off. (The COVID-19 death hazard ratio on SACT
    has no true value without COVID-19: there are no COVID-19 deaths.)

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> off = {"cluster": None, "treatment_effect": None, "late_effect": None, "covid": None}
        >>> t = true_contrasts(off, epidemiology_params(), None, ["C50"])
        >>> t["cluster_sir_within_radius"]["true_value"], t["adjuvant_sact_hazard_ratio"]["true_value"]
        (1.0, 1.0)
    """
    defaults = params["effects"]
    c = eff["cluster"] or defaults["cluster"]
    te = eff["treatment_effect"] or defaults["treatment_effect"]
    le = eff["late_effect"] or defaults["late_effect"]
    surv_hr = params["survival"]["treatment_hazard_ratio"]
    rr_c = float(eff["cluster"]["relative_risk"]) if eff["cluster"] else 1.0
    hr_t = float(eff["treatment_effect"]["hazard_ratio"]) if eff["treatment_effect"] else 1.0
    rr_l = (float(eff["late_effect"]["relative_risk"]) if eff["late_effect"]
            else float(params["incidence"]["second_primary_rate_ratio"]))
    out: dict[str, Any] = {
        "cluster_sir_within_radius": {
            **{k: c[k] for k in ("site", "source_id", "radius_km", "years")},
            "relative_risk": rr_c, "true_value": rr_c, "present": eff["cluster"] is not None},
        "adjuvant_sact_hazard_ratio": {
            **{k: te[k] for k in ("sites", "stage", "treatment", "applies_to", "grace_days")},
            "hazard_ratio": hr_t, "true_value": hr_t, "present": eff["treatment_effect"] is not None},
        "late_effect_sir": {
            **{k: le[k] for k in ("first_site", "second_site", "sex", "rt_regions", "ages", "latency_years")},
            "relative_risk": rr_l, "true_value": rr_l, "present": eff["late_effect"] is not None},
        "covid_april_2020_multiplier": {
            s: (float(covid_sites[s]["april_2020_multiplier"]) if covid_sites and s in covid_sites
                and covid_sites[s]["april_2020_multiplier"] is not None else 1.0) for s in sites},
        "covid_cumulative_missing_diagnoses": {
            s: (covid_sites[s]["cumulative_deficit"] if covid_sites and s in covid_sites
                else {"2020-03..2020-12": 0.0, "2020-03..2021-12": 0.0}) for s in sites},
        "covid_late_stage_odds_ratio": (float(eff["covid"]["stage_shift"]["late_stage_odds_ratio"])
                                        if eff["covid"] else 1.0),
        "covid_death_hr_recent_sact": (float(eff["covid"]["death_recent_sact_hr"]) if eff["covid"] else None),
        "baseline": {
            "second_primary_rate_ratio": float(params["incidence"]["second_primary_rate_ratio"]),
            "generic_excess_hazard_ratio": {k: float(v) for k, v in surv_hr.items()},
            "note": "Generic effects the generator applies besides the injected ones (after switching off: "
                    "treatment_effect null sets the SACT ratio to 1, late_effect null the second-primary "
                    "ratio to 1). The late-effect SIR is measured after the latency, where the rate is the "
                    "population rate times the late effect's relative_risk (or the second-primary ratio "
                    "when the late effect is off)."},
    }
    return out


def _sact_counts(treatments: pd.DataFrame) -> dict[str, int]:
    """SACT starts in March-June of 2019 and 2020, by month ("2019-03": n, ...)."""
    s = treatments.loc[treatments["modality"] == "sact", "start_date"].to_numpy().astype("datetime64[M]")
    return {f"{y}-{m}": int((s == np.datetime64(f"{y}-{m}", "M")).sum())
            for y in (2019, 2020) for m in ("03", "04", "05", "06")}


def sact_ratios(counts: dict[str, int]) -> dict[str, float | None]:
    """Realised SACT starts in March-June 2020 relative to the same month of 2019.

    Example:
        >>> sact_ratios({"2019-03": 10, "2020-03": 7, "2019-04": 0, "2020-04": 3})
        {'2020-03': 0.7, '2020-04': None, '2020-05': None, '2020-06': None}
    """
    out: dict[str, float | None] = {}
    for m in ("03", "04", "05", "06"):   # four months
        base = counts.get(f"2019-{m}", 0)
        now = counts.get(f"2020-{m}", 0)
        out[f"2020-{m}"] = round(now / base, 4) if base else None
    return out


def _sact_ratios(treatments: pd.DataFrame) -> dict[str, float | None]:
    """Realised SACT starts in March-June 2020 relative to the same month of 2019."""
    return sact_ratios(_sact_counts(treatments))


# ----------------------------------------------------------------------------------------------
#: What synth writes in a cohort folder (cohort.json last: a half-swapped cohort has none).
SYNTH_PARTS = ("reference", "truth", "feeds", "cohort.json")


def write(cohort: Cohort, path: Path | str) -> Path:
    """Write ``cohort`` atomically to ``path``: reference/, truth/, feeds/ Parquet (schemas
    enforced), truth/effects.json and cohort.json. Same config and seed → byte-identical files.

    Only those four entries of ``path`` are replaced: a cohort's ``registry/`` and ``releases/``
    (with the append-only audit log) are left alone and become stale through the step cache.

    Example:
        >>> import json, os, tempfile
        >>> from registry_lib import synth
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> src = tiny_cohort()   # written by synth.run; read it back into a Cohort and write it again
        >>> tables = {g: {name: pd.read_parquet(src / g / f"{name}.parquet") for name in schemas}
        ...           for g, schemas in (("reference", synth.tables.REFERENCE), ("truth", synth.tables.TRUTH),
        ...                              ("feeds", synth.tables.FEEDS))}
        >>> info = json.loads((src / "cohort.json").read_text())
        >>> cohort = Cohort(info["config"], tables["reference"], tables["truth"], tables["feeds"],
        ...                 json.loads((src / "truth" / "effects.json").read_text()), {"sizes": info["sizes"]})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     out = write(cohort, Path(d) / "copy")
        ...     sorted(p.name for p in out.iterdir())
        ...     all((out / g / f"{n}.parquet").read_bytes() == (src / g / f"{n}.parquet").read_bytes()
        ...         for g in tables for n in tables[g])   # same data, byte-identical files
        ['cohort.json', 'feeds', 'reference', 'truth']
        True
    """
    path = Path(path)
    jobs = [(group[name], stage, name, schema)
            for stage, group, tables in (("reference", cohort.reference, T.REFERENCE), ("truth", cohort.truth, T.TRUTH),
                                         ("feeds", cohort.feeds, T.FEEDS))
            for name, schema in tables.items()]
    jobs.sort(key=lambda j: -len(j[0]))               # biggest first, for the thread pool
    with atomic_parts(path, SYNTH_PARTS) as tmp:
        # Parquet encoding and zstd release the GIL: two threads keep both cores busy.
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(write_parquet, df, tmp / stage / f"{name}.parquet", schema)
                       for df, stage, name, schema in jobs]
            try:
                for f in futures:   # re-raise the first failure (the atomic folder is then removed)
                    f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        write_json(cohort.effects, tmp / "truth" / "effects.json")
        from registry_lib import __version__
        from registry_lib.config import params_hash

        write_json({"config": cohort.config, "seed": cohort.config["seed"], "registry_lab_version": __version__,
                    "epidemiology_params_sha256": params_hash(epidemiology_params()),
                    "sizes": cohort.summary.get("sizes", {})}, tmp / "cohort.json")
    return path


__all__ = ["Cohort", "generate", "write", "month_key"]
