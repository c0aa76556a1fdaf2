"""Late effects of treatment: Lexis person-years, SIRs of second cancers, recall lists.

- :func:`lexis_split` — split each person's time at risk on several time scales at once
  (attained age, calendar period, time since treatment…), vectorised.
- :func:`expected_counts` — expected cases from population rates by the split's bands.
- :func:`late_effects_cohort` — the radiotherapy cohort from registry/release tables: women
  given chest radiotherapy for a first cancer (e.g. Hodgkin lymphoma) at ages 10–35, with
  their follow-up for a second primary (e.g. breast cancer) and death.
- :func:`second_cancer_sir` — person-years at risk from a latency after treatment, observed
  and expected second cancers and SIRs with exact CIs (``registry_lib.stats.rates.sir``),
  overall, by age at treatment and by time since treatment.
- :func:`bard_recall` — the BARD rule: who is due for very-high-risk breast screening on a
  date.

All times on the Lexis diagram are decimal calendar years (see
``registry_lib.stats.life_table.decimal_year``).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"id": [1], "entry": [2000.5], "exit": [2003.25], "event": [1],
    ...                    "birth": [1980.0]})
    >>> lexis_split(df, entry="entry", exit="exit", event="event",
    ...             scales={"age": ("birth", [0, 21, 22, 100])}, keep=["id"])
       id   age   start     stop  pyrs  event
    0   1   0.0  2000.5  2001.00  0.50      0
    1   1  21.0  2001.0  2002.00  1.00      0
    2   1  22.0  2002.0  2003.25  1.25      1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.stats.life_table import decimal_year

DAYS_PER_YEAR = 365.25


# ----------------------------------------------------------------------------------------
# Lexis splitting
# ----------------------------------------------------------------------------------------
def lexis_split(
    df: pd.DataFrame,
    *,
    entry: str,
    exit: str,
    event: str | None = None,
    scales: Mapping[str, tuple[str | None, Sequence[float]]],
    keep: Sequence[str] = (),
) -> pd.DataFrame:
    """Split follow-up ``[entry, exit]`` on several time scales (Lexis diagram), vectorised.

    Each scale is ``name: (origin, breaks)``: the scale's value at calendar time ``c`` is
    ``c - df[origin]`` (e.g. origin = birth gives attained age; origin = treatment date gives
    time since treatment) or ``c`` itself when origin is None (calendar period). Bands are
    ``[breaks[i], breaks[i+1])``; use ``np.inf`` as the last break for an open band.
    Follow-up outside the first and last break of a scale is dropped (give breaks that
    cover the follow-up to keep all of it). The event, if any, stays on the piece ending at
    the exit.

    Args:
        df: one row per person.
        entry, exit: decimal calendar years of the start and end of time at risk.
        event: optional 0/1 column: the follow-up ended with the event.
        scales: the time scales, e.g. ``{"age": ("birth", [15, 20, …, inf]),
            "period": (None, [1970, 1980, …])}``.
        keep: columns of ``df`` to carry onto every piece.

    Returns:
        One row per piece: ``keep`` columns, a column per scale holding the lower break of
        its band, ``start``, ``stop``, ``pyrs`` and ``event``.

    Example:
        >>> df = pd.DataFrame({"entry": [1999.0], "exit": [2001.5]})
        >>> lexis_split(df, entry="entry", exit="exit",
        ...             scales={"period": (None, [1995, 2000, 2005])})[["period", "pyrs"]]
           period  pyrs
        0  1995.0   1.0
        1  2000.0   1.5
    """
    keep = list(keep)
    need = [entry, exit, *keep] + ([event] if event else [])
    need += [o for o, _ in scales.values() if o is not None]
    missing = [c for c in dict.fromkeys(need) if c not in df.columns]
    if missing:
        raise RegistryLabError(f"lexis_split: column(s) {missing} not found")
    start = pd.to_numeric(df[entry], errors="coerce").to_numpy(dtype=float)
    stop = pd.to_numeric(df[exit], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(start) | ~np.isfinite(stop) | (stop < start)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RegistryLabError(f"row {df.index[i]!r}: {entry}={df[entry].iloc[i]!r}, "
                               f"{exit}={df[exit].iloc[i]!r}: exit must not precede entry")
    ev = (np.zeros(len(df)) if event is None else
          df[event].astype(float).to_numpy())
    row = np.arange(len(df))
    bands: dict[str, np.ndarray] = {}
    for name, (origin, breaks) in scales.items():
        br = np.asarray(breaks, dtype=float)
        if br.size < 2 or np.any(np.diff(br) <= 0):
            raise RegistryLabError(f"scale {name!r}: breaks must be increasing (at least two)")
        off = np.zeros(len(df)) if origin is None else \
            pd.to_numeric(df[origin], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(off)):
            raise RegistryLabError(f"scale {name!r}: origin column {origin!r} has missing values")
        o = off[row]
        v0 = np.maximum(start - o, br[0])
        v1 = np.minimum(stop - o, br[-1])
        inside = v1 >= v0
        ended_inside = (stop - o) <= br[-1]
        ev = np.where(ended_inside, ev, 0.0)
        row, v0, v1, ev, o = row[inside], v0[inside], v1[inside], ev[inside], o[inside]
        bands = {k: v[inside] for k, v in bands.items()}
        lo = np.clip(np.searchsorted(br, v0, side="right") - 1, 0, br.size - 2)
        hi = np.clip(np.searchsorted(br, v1, side="left") - 1, 0, br.size - 2)
        hi = np.maximum(hi, lo)
        m = hi - lo + 1
        rep = np.repeat(np.arange(row.size), m)
        band = lo[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(m) - m, m))
        last = np.zeros(rep.size, dtype=bool)
        last[np.cumsum(m) - 1] = True
        new_v0 = np.maximum(v0[rep], br[band])
        new_v1 = np.minimum(v1[rep], br[band + 1])
        start = new_v0 + o[rep]
        stop = new_v1 + o[rep]
        ev = np.where(last, ev[rep], 0.0)
        row = row[rep]
        bands = {k: v[rep] for k, v in bands.items()}
        bands[name] = br[band]
    out = df[keep].iloc[row].reset_index(drop=True) if keep else pd.DataFrame(index=range(row.size))
    for name in scales:
        out[name] = bands[name]
    out["start"] = start
    out["stop"] = stop
    out["pyrs"] = stop - start
    out["event"] = ev.astype(np.int64)
    return out


def expected_counts(
    pyrs: pd.DataFrame,
    rates: pd.DataFrame,
    on: Sequence[str],
    *,
    rate: str = "rate",
    rate_on: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Attach population rates to split person-years and compute expected cases.

    ``rates`` holds a rate per person-year for each combination of the ``rate_on`` columns
    (default: the same names as ``on``), e.g. ``age_band, sex, period, rate``. Every piece
    of person-time must find a rate (error naming the first that does not).

    Example:
        >>> py = pd.DataFrame({"age": [20.0, 25.0], "pyrs": [2.0, 3.0]})
        >>> r = pd.DataFrame({"age_band": [20, 25], "rate": [0.001, 0.002]})
        >>> expected_counts(py, r, ["age"], rate_on=["age_band"])["expected"].tolist()
        [0.002, 0.006]
    """
    on = list(on)
    rate_on = list(rate_on) if rate_on is not None else on
    if len(on) != len(rate_on):
        raise RegistryLabError("expected_counts: on and rate_on must pair up")
    miss = [c for c in [*rate_on, rate] if c not in rates.columns]
    if miss:
        raise RegistryLabError(f"rates: column(s) {miss} not found")
    r = rates[[*rate_on, rate]].rename(columns=dict(zip(rate_on, on, strict=True)))
    r = r.rename(columns={rate: "_rate"})
    if r.duplicated(on).any():
        raise RegistryLabError(f"rates: more than one rate for some {rate_on} combination")
    left = pyrs.copy()
    for c in on:
        try:
            r[c] = r[c].astype(left[c].dtype)
        except (ValueError, TypeError):
            pass
    out = left.merge(r, on=on, how="left")
    if out["_rate"].isna().any():
        i = int(np.flatnonzero(out["_rate"].isna().to_numpy())[0])
        raise RegistryLabError(f"rates: no rate for {dict(out[on].iloc[i])}")
    out["expected"] = out["pyrs"] * out["_rate"]
    return out.rename(columns={"_rate": rate})


# ----------------------------------------------------------------------------------------
# the radiotherapy cohort and second-cancer SIRs
# ----------------------------------------------------------------------------------------
def _dates(s: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_datetime(s, errors="raise")
    except (ValueError, TypeError) as exc:
        raise RegistryLabError(f"column {name!r}: values must be dates ({exc})") from exc


def _patient_key(df: pd.DataFrame, what: str) -> str:
    for k in ("pseudo_id", "patient_id", "nhs_number"):
        if k in df.columns:
            return k
    raise RegistryLabError(f"{what}: no patient key column (pseudo_id, patient_id or nhs_number)")


def late_effects_cohort(
    patients: pd.DataFrame,
    tumours: pd.DataFrame,
    treatments: pd.DataFrame,
    *,
    end_of_follow_up,
    first_sites: Sequence[str] = ("C81",),
    rt_regions: Sequence[str] = ("chest", "mantle"),
    ages_at_treatment: tuple[int, int] = (10, 35),
    sex: int | None = 2,
    second_site: str = "C50",
) -> pd.DataFrame:
    """Women (by default) given chest radiotherapy for a first cancer at ages 10–35.

    A person enters when their first qualifying radiotherapy course (``modality ==
    "radiotherapy"``, ``rt_region`` in ``rt_regions``, for a tumour of ``first_sites``)
    starts at a completed age within ``ages_at_treatment``. Anyone with a ``second_site``
    tumour diagnosed before that date is excluded (not at risk of a first one). The
    outcome is the first ``second_site`` tumour after the radiotherapy; follow-up ends at it,
    at death or at ``end_of_follow_up``.

    Birth: ``birth_date`` when the table has it (direct-care release); otherwise it is
    estimated from the first tumour's diagnosis date and completed age as diagnosis −
    (age + 0.5) years (pseudonymised release).

    Returns:
        One row per person: key, ``sex`` (if present), ``birth`` (decimal year),
        ``rt_date``, ``rt`` (decimal year), ``age_at_rt`` (exact years), ``death_date``,
        ``second_cancer_date``, ``exit`` (decimal year), ``second_cancer`` (0/1), ``died``
        (0/1 death before a second cancer and the end of follow-up) and ``birth_date``
        when known.

    Example:
        >>> pat = pd.DataFrame({"patient_id": [1], "sex": [2], "birth_date": ["1970-03-01"],
        ...                     "death_date": [None]})
        >>> tum = pd.DataFrame({"tumour_id": [11, 12], "patient_id": [1, 1],
        ...                     "diagnosis_date": ["1990-01-10", "2010-06-01"],
        ...                     "age_at_diagnosis": [19, 40], "site_icd10": ["C81", "C50"]})
        >>> trt = pd.DataFrame({"patient_id": [1], "tumour_id": [11], "modality": ["radiotherapy"],
        ...                     "rt_region": ["mantle"], "start_date": ["1990-02-01"]})
        >>> c = late_effects_cohort(pat, tum, trt, end_of_follow_up="2020-12-31")
        >>> c[["age_at_rt", "second_cancer"]].round(2).to_dict("records")
        [{'age_at_rt': 19.92, 'second_cancer': 1}]
    """
    key = _patient_key(patients, "patients")
    has_birth = "birth_date" in patients.columns and patients["birth_date"].notna().all()
    for what, d, cols in (("tumours", tumours, [key, "tumour_id", "diagnosis_date",
                                                "site_icd10"]
                           + ([] if has_birth else ["age_at_diagnosis"])),
                          ("treatments", treatments, ["tumour_id", "modality", "start_date",
                                                      "rt_region"]),
                          ("patients", patients, [key, "death_date"])):
        miss = [c for c in cols if c not in d.columns]
        if miss:
            raise RegistryLabError(f"{what}: column(s) {miss} not found")
    end = pd.Timestamp(end_of_follow_up)
    tum = tumours.assign(diagnosis_date=_dates(tumours["diagnosis_date"], "diagnosis_date"))
    first_tum = tum[tum["site_icd10"].astype(str).str[:3].isin(first_sites)]
    rt = treatments[(treatments["modality"].astype(str) == "radiotherapy")
                    & treatments["rt_region"].astype(str).isin(rt_regions)]
    rt = rt[["tumour_id", "start_date"]].merge(first_tum[["tumour_id", key]], on="tumour_id")
    rt = rt.assign(rt_date=_dates(rt["start_date"], "start_date"))
    rt = rt.sort_values(["rt_date", "tumour_id"]).drop_duplicates(key, keep="first")
    pat = patients.copy()
    left_out_sex = 0
    if sex is not None:
        if "sex" not in pat.columns:
            raise RegistryLabError("patients: column 'sex' needed to select by sex")
        sex_code = pd.to_numeric(pat["sex"], errors="coerce")
        # people treated in the cohort's way whose sex is not recorded cannot be selected by sex
        left_out_sex = int(pat.loc[sex_code.isna(), key].isin(rt[key]).sum())
        pat = pat[sex_code == int(sex)]
    c = rt[[key, "rt_date"]].merge(pat, on=key, how="inner")
    if has_birth:
        c["birth_date"] = _dates(c["birth_date"], "birth_date")
        c["birth"] = decimal_year(c["birth_date"])
    else:
        ft = tum.sort_values("diagnosis_date").drop_duplicates(key)[
            [key, "diagnosis_date", "age_at_diagnosis"]]
        c = c.merge(ft, on=key, how="left")
        c["birth"] = decimal_year(c["diagnosis_date"]) - (
            c["age_at_diagnosis"].astype(float) + 0.5)
        c = c.drop(columns=["diagnosis_date", "age_at_diagnosis"])
    c["rt"] = decimal_year(c["rt_date"])
    c["age_at_rt"] = c["rt"] - c["birth"]
    completed = np.floor(c["age_at_rt"] + 1e-9)
    c = c[(completed >= ages_at_treatment[0]) & (completed <= ages_at_treatment[1])]
    sec = tum[tum["site_icd10"].astype(str).str[:3] == second_site][[key, "diagnosis_date"]]
    prior = sec.merge(c[[key, "rt_date"]], on=key)
    prior_ids = prior.loc[prior["diagnosis_date"] < prior["rt_date"], key].unique()
    c = c[~c[key].isin(prior_ids)]
    after = prior[prior["diagnosis_date"] >= prior["rt_date"]].groupby(key)["diagnosis_date"].min()
    c["second_cancer_date"] = c[key].map(after)
    c["death_date"] = _dates(c["death_date"], "death_date")
    exit_date = pd.concat([c["second_cancer_date"], c["death_date"],
                           pd.Series(end, index=c.index)], axis=1).min(axis=1)
    c["second_cancer"] = (c["second_cancer_date"].notna()
                          & (c["second_cancer_date"] <= end)).astype(int)
    c["died"] = ((c["second_cancer"] == 0) & c["death_date"].notna()
                 & (c["death_date"] <= end)).astype(int)
    c["exit_date"] = exit_date
    c["exit"] = decimal_year(exit_date)
    c = c[c["rt_date"] < end]
    cols = [key] + [x for x in ("sex", "birth_date") if x in c.columns] + [
        "birth", "rt_date", "rt", "age_at_rt", "death_date", "second_cancer_date",
        "exit_date", "exit", "second_cancer", "died"]
    out = c[cols].sort_values(key).reset_index(drop=True)
    out.attrs["left_out_missing_sex"] = left_out_sex
    return out


def second_cancer_sir(
    cohort: pd.DataFrame,
    rates: pd.DataFrame,
    *,
    latency_years: float = 5.0,
    by: Mapping[str, Sequence[float]] | None = None,
    sex: int | None = 2,
    rate: str = "rate",
    level: float = 0.95,
    method: str = "exact",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SIRs of second cancers after treatment, overall and by band (Lexis person-years).

    Time at risk runs from ``latency_years`` after treatment (``rt``) to ``exit``. It is
    split by attained age and calendar period on the bands of the population ``rates``
    (columns ``age_band``, ``period`` — lower bounds — and optionally ``sex``, plus
    ``rate`` per person-year), and by each ``by`` scale: ``age_at_treatment`` (fixed per
    person) and ``time_since_treatment``. Expected = person-years × rate; SIR with exact
    (Garwood) limits via ``registry_lib.stats.rates.sir``.

    Args:
        cohort: from :func:`late_effects_cohort` (``birth``, ``rt``, ``age_at_rt``, ``exit``,
            ``second_cancer``).
        rates: population incidence of the second cancer by age band × period (× sex).
        latency_years: years after treatment before time at risk starts.
        by: bands for ``age_at_treatment`` and/or ``time_since_treatment`` (lower bounds;
            last value is the upper end), e.g. ``{"age_at_treatment": [10, 15, 20, 25, 30, 36],
            "time_since_treatment": [5, 10, 15, 20, 30, inf]}``.
        sex: the sex of the cohort when ``rates`` has a ``sex`` column.
        level, method: passed to ``rates.sir`` (``"exact"`` by default).

    Returns:
        ``(sir_table, person_years)``: the SIR table (``group, band, observed, expected,
        pyrs, sir, lower, upper, method``; group ``"overall"`` first) and the split
        person-years with expected counts.

    Example:
        >>> cohort = pd.DataFrame({"birth": [1970.0, 1975.0], "rt": [1990.0, 1995.0],
        ...     "age_at_rt": [20.0, 20.0], "exit": [2015.0, 2018.0], "second_cancer": [1, 0]})
        >>> rates = pd.DataFrame({"age_band": [0, 40], "period": 1990, "rate": [0.001, 0.002]})
        >>> sir_tab, _ = second_cancer_sir(cohort, rates, sex=None)
        >>> sir_tab[["group", "observed", "expected"]].round(4).to_dict("records")
        [{'group': 'overall', 'observed': 1, 'expected': 0.046}]
    """
    from registry_lib.stats.rates import sir as sir_fn

    need = ["birth", "rt", "age_at_rt", "exit", "second_cancer"]
    miss = [c for c in need if c not in cohort.columns]
    if miss:
        raise RegistryLabError(f"cohort: column(s) {miss} not found")
    miss = [c for c in ("age_band", "period", rate) if c not in rates.columns]
    if miss:
        raise RegistryLabError(f"rates: column(s) {miss} not found")
    r = rates
    if "sex" in r.columns:
        if sex is None:
            raise RegistryLabError("rates have a sex column: say which sex the cohort is")
        r = r[r["sex"].astype(int) == int(sex)]
    by = dict(by or {})
    unknown = set(by) - {"age_at_treatment", "time_since_treatment"}
    if unknown:
        raise RegistryLabError(f"by: unknown scale(s) {sorted(unknown)}; use age_at_treatment "
                               "or time_since_treatment")
    c = cohort.assign(_entry=cohort["rt"] + latency_years)
    c = c[c["exit"] > c["_entry"]].copy()
    age_br = np.append(np.sort(r["age_band"].unique()).astype(float), np.inf)
    per_br = np.append(np.sort(r["period"].unique()).astype(float), np.inf)
    low_age = (c["_entry"] - c["birth"]).min() if len(c) else np.inf
    low_per = c["_entry"].min() if len(c) else np.inf
    if low_age < age_br[0] or low_per < per_br[0]:
        raise RegistryLabError(
            f"rates start at age {age_br[0]:g} and period {per_br[0]:g} but the cohort is at "
            f"risk from age {low_age:.1f} and year {low_per:.1f}: extend the rates"
        )
    scales = {"attained_age": ("birth", age_br), "period": (None, per_br)}
    if "time_since_treatment" in by:
        scales["time_since_treatment"] = ("rt", by["time_since_treatment"])
    keep = ["age_at_rt"]
    py = lexis_split(c, entry="_entry", exit="exit", event="second_cancer", scales=scales,
                     keep=keep)
    py = expected_counts(py, r, ["attained_age", "period"], rate=rate,
                         rate_on=["age_band", "period"])
    if "age_at_treatment" in by:
        br = np.asarray(by["age_at_treatment"], dtype=float)
        idx = np.searchsorted(br, py["age_at_rt"].to_numpy(), side="right") - 1
        if np.any((idx < 0) | (idx >= br.size - 1)):
            raise RegistryLabError("age_at_treatment bands do not cover every age at treatment")
        py["age_at_treatment"] = br[idx]
    tables = []
    groups = [("overall", None)] + [(g, g) for g in by]
    for name, col in groups:
        agg = (py.groupby(col, sort=True) if col else py.groupby(lambda _: "all"))[
            ["event", "expected", "pyrs"]].sum()
        s = sir_fn(agg["event"].to_numpy(), agg["expected"].to_numpy(), level=level,
                   method=method)
        s.insert(0, "band", agg.index.to_numpy() if col else "all")
        s.insert(0, "group", name)
        s.insert(4, "pyrs", agg["pyrs"].to_numpy())
        tables.append(s)
    out = pd.concat(tables, ignore_index=True)
    out["observed"] = out["observed"].astype(np.int64)
    return out, py


# ----------------------------------------------------------------------------------------
# BARD recall rule
# ----------------------------------------------------------------------------------------
def bard_recall(
    women: pd.DataFrame,
    reference_date,
    *,
    birth_date: str = "birth_date",
    rt_date: str = "rt_date",
    death_date: str = "death_date",
    ages_at_rt: tuple[int, int] = (10, 35),
    years_after_rt: int = 8,
    from_age: int = 25,
) -> pd.DataFrame:
    """Women due for very-high-risk breast screening on ``reference_date`` (BARD rule).

    A woman given radiotherapy involving breast tissue at a completed age within
    ``ages_at_rt`` (10–35) is due from the later of ``years_after_rt`` (8) years after her
    radiotherapy and her ``from_age`` (25, or 30) birthday, if she is alive on the reference
    date (no death date, or a death after it). Anniversaries of 29 February fall on 28
    February in other years (pandas calendar arithmetic).

    Returns:
        The due women (all input columns) with ``age_at_rt`` (completed years), ``due_from``
        (date) and ``age_on_reference_date`` (completed years), sorted by ``due_from``.

    Example:
        >>> w = pd.DataFrame({"id": [1, 2, 3],
        ...                   "birth_date": ["1990-05-01", "1980-01-01", "2000-01-01"],
        ...                   "rt_date": ["2010-05-01", "2014-01-01", "2018-06-01"],
        ...                   "death_date": [None, None, None]})
        >>> bard_recall(w, "2024-01-01")[["id", "due_from"]].astype(str).to_dict("records")
        [{'id': '1', 'due_from': '2018-05-01'}, {'id': '2', 'due_from': '2022-01-01'}]
    """
    miss = [c for c in (birth_date, rt_date, death_date) if c not in women.columns]
    if miss:
        raise RegistryLabError(f"women: column(s) {miss} not found")
    ref = pd.Timestamp(reference_date)
    w = women.copy()
    b = _dates(w[birth_date], birth_date)
    r = _dates(w[rt_date], rt_date)
    d = _dates(w[death_date], death_date)
    for name, s in ((birth_date, b), (rt_date, r)):
        if s.isna().any():
            i = int(np.flatnonzero(s.isna().to_numpy())[0])
            raise RegistryLabError(f"women row {w.index[i]!r}: {name} is missing")
    bad = r < b
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise RegistryLabError(f"women row {w.index[i]!r}: radiotherapy before birth")

    def completed_years(start: pd.Series, end: pd.Series) -> np.ndarray:
        years = end.dt.year - start.dt.year
        before_birthday = (end.dt.month < start.dt.month) | (
            (end.dt.month == start.dt.month) & (end.dt.day < start.dt.day))
        return (years - before_birthday.astype(int)).to_numpy()

    w["age_at_rt"] = completed_years(b, r)
    after_rt = r + pd.DateOffset(years=years_after_rt)
    at_age = b + pd.DateOffset(years=from_age)
    w["due_from"] = after_rt.where(after_rt >= at_age, at_age)
    w["age_on_reference_date"] = completed_years(b, pd.Series(ref, index=w.index))
    alive = d.isna() | (d > ref)
    in_ages = (w["age_at_rt"] >= ages_at_rt[0]) & (w["age_at_rt"] <= ages_at_rt[1])
    due = in_ages & alive & (w["due_from"] <= ref) & (b <= ref)
    return w[due].sort_values(["due_from"], kind="stable").reset_index(drop=True)
