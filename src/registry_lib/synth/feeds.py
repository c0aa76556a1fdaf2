"""Raw feeds as hospitals and ONS send them, with identifier errors, plus the truth of every record.

:func:`make_feeds` turns the true patients, tumours and treatments into the seven feeds of
``feeds/`` (notifications, sact, radiotherapy, surgery, deaths, registration_optouts, ndop)
and ``truth/record_truth``. Each record carries the identifiers of its true patient as of the
record's date (the married surname after ``name_change_date``, the new postcode after
``move_date``), then identifier errors at the rates of ``params/epidemiology/feeds.yaml``
(``errors``): missing or transposed NHS numbers, nicknames and typos, day-month swaps, sex
miscoding, missing postcodes and a few unusable records; notifications also carry the tumour
fields the sending source knows. ``record_truth.errors`` lists what was injected into each
record (kinds: :data:`~registry_lib.synth.feeds_errors.ERROR_KINDS`).

The record's date is: received_date (notifications), start_date (sact, radiotherapy),
procedure_date (surgery), death_date (deaths), request_date (registration opt-outs). Dates the
registry could not yet have (after ``config["end_of_follow_up"]``) are capped at that date.
Record ids are sequential in date order within a feed (``N000000001`` …, ties in random
order), so they reveal nothing about the true person.

Example:
    >>> from registry_lib.synth.feeds import FEED_NAMES
    >>> FEED_NAMES[0], FEED_NAMES[-1]
    ('notifications', 'ndop')
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import ConfigError, RegistryLabError
from registry_lib.synth.feed_dates import DAY, date_text, end_of_follow_up, to_days
from registry_lib.synth.feed_params import SourceIndex, feed_params
from registry_lib.synth.feeds_errors import zero_padded
from registry_lib.synth.feeds_identifiers import (
    KIND_INDEX,
    People,
    errors_text,
    identifiers_as_sent,
    people_from_patients,
)
from registry_lib.synth.optouts import ndop_dates
from registry_lib.synth.tables import FEEDS, RECORD_TRUTH

FEED_NAMES = ("notifications", "sact", "radiotherapy", "surgery", "deaths", "registration_optouts", "ndop")
RECORD_PREFIX = {"notifications": "N", "sact": "S", "radiotherapy": "R", "surgery": "H",
                 "deaths": "D", "registration_optouts": "O"}
#: While a chunked cohort is generated (:mod:`registry_lib.synth.chunks`): the last record number
#: used by prefix, so the ids of a chunk continue those of the chunks before it. Unset: from 1.
RECORD_NUMBERS: ContextVar[dict[str, int] | None] = ContextVar("record_numbers", default=None)


# --------------------------------------------------------------------------------------------
# Helpers for codes, trusts and dates
# --------------------------------------------------------------------------------------------
class Coded:
    """A string column factorised once: integer codes per row and the distinct labels.

    Example:
        >>> c = Coded(np.array(["C50", "C34", None, "C50"], dtype=object))
        >>> c.codes.tolist(), c.labels
        ([0, 1, -1, 0], ['C50', 'C34'])
    """

    def __init__(self, values: np.ndarray) -> None:
        codes, labels = pd.factorize(np.asarray(values, dtype=object))
        self.codes = codes
        self.labels = [str(v) for v in labels]

    def take(self, rows: np.ndarray) -> Coded:
        out = Coded.__new__(Coded)
        out.codes, out.labels = self.codes[rows], self.labels
        return out

    def text(self) -> np.ndarray:
        """The strings again, as an object array (None where missing)."""
        return np.array([*self.labels, None], dtype=object)[self.codes]


def _icd10_as_sent(sites: Coded, four_char: np.ndarray, subsites: dict[str, str],
                   rng: np.random.Generator) -> np.ndarray:
    """ICD-10 code as sent: the 3-character code, or 4 characters (e.g. C509) where one is valid.

    Works on the distinct (code, 4th character) pairs only. Returns an object array.
    """
    valid = [str(subsites.get(label) or "") if len(label) == 3 else "" for label in sites.labels]
    count = np.array([len(v) for v in valid] + [0], dtype=np.int64)[sites.codes]
    idx = np.floor(rng.random(len(sites.codes)) * np.maximum(count, 1)).astype(np.int64)
    combo = sites.codes.astype(np.int64) * 11 + np.where(four_char & (count > 0), idx, 10)
    codes, uniq = pd.factorize(combo)
    text = [None if c < 0 else sites.labels[c // 11] + (valid[c // 11][c % 11] if c % 11 != 10 else "")
            for c in map(int, uniq)]
    out = np.array(text + [None], dtype=object)[codes]
    out[sites.codes < 0] = None
    return out


def _trusts_as_sent(trusts: Coded, second: np.ndarray, alt_trust: dict[str, str]) -> np.ndarray:
    """The sending trust: its own, or its alternative where ``second`` (object array)."""
    names = list(trusts.labels)
    position = {name: i for i, name in enumerate(names)}
    alt = []
    for label in trusts.labels:  # loop over distinct trusts
        other = alt_trust[label]
        if other not in position:
            position[other] = len(names)
            names.append(other)
        alt.append(position[other])
    alt_code = np.array(alt + [0], dtype=np.int64)
    return np.array(names, dtype=object)[np.where(second, alt_code[trusts.codes], trusts.codes)]


def alternative_trusts(trusts: pd.DataFrame) -> dict[str, str]:
    """Second trust for each trust: its region's tertiary centre, or for the centre itself, its
    nearest other trust in the region (itself if alone).

    The tertiary centre of a region is the trust nearest the mean position of its trusts.

    Example:
        >>> t = pd.DataFrame({"trust_code": ["A", "B", "C"], "region": "X",
        ...                   "x": [0.0, 10.0, 30.0], "y": [0.0, 0.0, 0.0]})
        >>> alternative_trusts(t)
        {'A': 'B', 'B': 'A', 'C': 'B'}
    """
    out: dict[str, str] = {}
    for _, group in trusts.groupby("region", sort=True):  # loop over regions
        codes = group["trust_code"].astype(str).to_numpy()
        xy = group[["x", "y"]].to_numpy(dtype=float)
        centre = int(np.argmin(((xy - xy.mean(axis=0)) ** 2).sum(axis=1)))
        for code in codes:
            out[code] = codes[centre]
        dist = ((xy - xy[centre]) ** 2).sum(axis=1)
        dist[centre] = np.inf
        out[codes[centre]] = codes[int(np.argmin(dist))] if len(codes) > 1 else codes[centre]
    return out


def _cap(dates: np.ndarray, floor: np.ndarray, eof: np.datetime64 | None) -> np.ndarray:
    """Dates after the end of follow-up are capped at it (but never before ``floor``)."""
    if eof is None:
        return dates
    return np.where(dates > eof, np.maximum(floor, eof), dates)


def _date_order(dates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Records in date order, ties in random order."""
    key = dates.astype("datetime64[D]").astype(np.int64) * (1 << 24) + rng.integers(0, 1 << 24, size=len(dates))
    return np.argsort(key)


def record_ids(prefix: str, n: int) -> np.ndarray:
    """``n`` record ids ``<prefix>000000001`` … as an object array (continuing after the numbers
    already used when :data:`RECORD_NUMBERS` is set).

    Example:
        >>> record_ids("N", 2).tolist()
        ['N000000001', 'N000000002']
        >>> token = RECORD_NUMBERS.set({"N": 2})
        >>> record_ids("N", 1).tolist(), RECORD_NUMBERS.get()
        (['N000000003'], {'N': 3})
        >>> RECORD_NUMBERS.reset(token)
    """
    used = RECORD_NUMBERS.get()
    first = 0
    if used is not None:
        first = used.get(prefix, 0)
        used[prefix] = first + n
    if n == 0:
        return np.array([], dtype=object)
    return np.strings.add(prefix, zero_padded(np.arange(first + 1, first + n + 1), 9)).astype(object)


def _truth_frame(feed: str, ids: np.ndarray, patient_id: np.ndarray, tumour_id: np.ndarray | None,
                 treatment_id: np.ndarray | None, kinds: np.ndarray) -> pd.DataFrame:
    n = len(patient_id)
    none = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))
    return pd.DataFrame({
        "feed": np.full(n, feed, dtype=object),
        "record_id": ids,
        "patient_id": patient_id.astype(np.int64),
        "tumour_id": none if tumour_id is None else pd.array(tumour_id, dtype="Int64"),
        "treatment_id": none if treatment_id is None else pd.array(treatment_id, dtype="Int64"),
        "errors": errors_text(kinds),
    })


def _tumour_field(series: pd.Series, t: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A tumour column repeated for its records (rows ``t``), None where not ``keep`` or empty."""
    coded = Coded(series.to_numpy(dtype=object))
    empty = np.array([label == "" for label in coded.labels] + [True])
    codes = coded.codes[t]
    codes = np.where(keep & ~empty[codes], codes, -1)
    return np.array([*coded.labels, None], dtype=object)[codes]


def _field(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Object array with None where not kept."""
    out = np.asarray(values, dtype=object).copy()
    out[~keep] = None
    return out


def _int8(values: np.ndarray, present: np.ndarray) -> pd.arrays.IntegerArray:
    ok = present & (values >= 0)
    return pd.arrays.IntegerArray(np.where(ok, values, 0).astype(np.int8), ~ok)


def _int16(series: pd.Series, order: np.ndarray) -> pd.arrays.IntegerArray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)[order]
    ok = ~np.isnan(values)
    return pd.arrays.IntegerArray(np.where(ok, values, 0).astype(np.int16), ~ok)


def _invalid_codes(values: np.ndarray, kind: str, codes_key: str, sources: SourceIndex,
                   params: dict[str, Any], kinds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace a share of present codes by invalid ones, recording the error kind."""
    err = params["errors"]
    present = ~pd.isna(values)
    hit = (rng.random(len(values)) < sources.rates(err[kind])) & present
    bad = np.array(err[codes_key], dtype=object)
    out = values.copy()
    out[hit] = bad[rng.integers(0, len(bad), size=int(hit.sum()))]
    kinds[hit, KIND_INDEX[kind]] = True
    return out


def _check_trusts(tumours: pd.DataFrame, alt_trust: dict[str, str]) -> Coded:
    """The tumours' diagnosing trusts, coded; a clear error for one not in reference/trusts."""
    trusts = Coded(tumours["diagnosing_trust"].to_numpy(dtype=object))
    for k, label in enumerate(trusts.labels):
        if label not in alt_trust:
            i = int(np.flatnonzero(trusts.codes == k)[0])
            raise RegistryLabError(f"make_feeds: tumour {tumours['tumour_id'].iloc[i]} has diagnosing_trust "
                                   f"{label!r}, which is not in reference/trusts")
    if (trusts.codes < 0).any():
        i = int(np.flatnonzero(trusts.codes < 0)[0])
        raise RegistryLabError(f"make_feeds: tumour {tumours['tumour_id'].iloc[i]} has no diagnosing_trust")
    return trusts


# --------------------------------------------------------------------------------------------
# The feeds
# --------------------------------------------------------------------------------------------
_TUMOUR_FIELDS = ("morphology_icdo3", "behaviour", "grade", "laterality", "route_to_diagnosis",
                  "basis_of_diagnosis")


def _notifications(tumours: pd.DataFrame, people: People, alt_trust: dict[str, str],
                   params: dict[str, Any], eof: np.datetime64 | None,
                   rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = params["notifications"]
    nt = len(tumours)
    kmax = int(p["per_tumour_max"])
    mean = float(p["per_tumour_mean"])
    if kmax < 1 or not 1.0 <= mean <= kmax:
        raise ConfigError(f"feeds.notifications: per_tumour_mean {mean} must lie between 1 and per_tumour_max {kmax}")
    k = 1 + (rng.binomial(kmax - 1, (mean - 1) / (kmax - 1), size=nt) if kmax > 1 else np.zeros(nt, np.int64))
    t = np.repeat(np.arange(nt), k)
    n = len(t)
    first = np.ones(n, dtype=bool)
    first[1:] = t[1:] != t[:-1]

    mix = p["source_mix"]
    names = np.array(sorted(mix), dtype=object)
    probs = np.array([float(mix[s]) for s in names])
    source = names[rng.choice(len(names), size=n, p=probs / probs.sum())]
    codes, routes = pd.factorize(tumours["route_to_diagnosis"].fillna("").astype(str))
    screen = np.array(["screen" in r.lower() for r in routes] or [False])[codes]
    source[first & screen[t]] = "screening"
    for s in pd.unique(source):
        if s not in p["fields"]:
            raise ConfigError(f"feeds.notifications.fields: no field list for source {s!r}")
    src = SourceIndex(source)

    second = rng.random(n) < float(p["second_trust"])
    trust = _trusts_as_sent(_check_trusts(tumours, alt_trust).take(t), second, alt_trust)
    diag = to_days(tumours["diagnosis_date"])
    if np.isnat(diag).any():
        raise RegistryLabError(f"make_feeds: tumour {tumours['tumour_id'].to_numpy()[np.isnat(diag)][0]} has no diagnosis_date")
    diag = diag[t]
    lag = 1 + np.floor(rng.exponential(1.0, size=n) * src.rates(p["received_lag_days"]))
    received = _cap(diag + lag.astype(np.int64) * DAY, diag, eof)
    shifted = rng.random(n) < src.rates(p["diagnosis_date_shift"])
    shift = 1 + np.floor(rng.random(n) * int(p["diagnosis_date_shift_max_days"])).astype(np.int64)
    diag_sent = np.where(shifted, _cap(diag + shift * DAY, diag, eof), diag)

    # From here on, records are in the order they were received.
    order = _date_order(received, rng)
    t, source, trust, received, diag_sent = t[order], source[order], trust[order], received[order], diag_sent[order]
    src = SourceIndex(source)
    pid = tumours["patient_id"].to_numpy()
    rows = people.rows(pid, "truth/tumours")[t]
    ident, kinds = identifiers_as_sent(people, rows, received, src, params, rng)

    def present(field: str) -> np.ndarray:
        spec = {s: float(p["fields"][s].get(field, 0.0)) for s in p["fields"]}
        return rng.random(n) < src.rates(spec)

    four = rng.random(n) < src.rates(p["icd10_four_char"])
    site = _icd10_as_sent(Coded(tumours["site_icd10"].to_numpy(dtype=object)).take(t), four,
                          p["icd10_subsites"], rng)
    site = _invalid_codes(_field(site, ~pd.isna(site) & present("site_icd10")), "icd10_invalid",
                          "invalid_icd10_codes", src, params, kinds, rng)
    fields = {col: _tumour_field(tumours[col], t, present(col)) for col in _TUMOUR_FIELDS}
    fields["morphology_icdo3"] = _invalid_codes(fields["morphology_icdo3"], "morphology_invalid",
                                                "invalid_morphology_codes", src, params, kinds, rng)
    # Stage as recorded; unknown stage ('U') is sent as no stage.
    stage = tumours["stage_recorded"].astype(object).where(
        ~tumours["stage_recorded"].astype(str).str.upper().isin(["U", "X", "9"]), None)
    stage = _tumour_field(stage, t, present("stage"))
    ethnicity = people.ethnicity[rows]
    ids = record_ids(RECORD_PREFIX["notifications"], n)
    df = pd.DataFrame({
        "record_id": ids,
        "trust_code": trust,
        "source": source,
        "received_date": date_text(received),
        **ident,
        "ethnicity": _field(ethnicity, present("ethnicity")),
        "diagnosis_date": _field(date_text(diag_sent), present("diagnosis_date")),
        "site_icd10": site,
        "morphology_icdo3": fields["morphology_icdo3"],
        "behaviour": fields["behaviour"],
        "stage": stage,
        "grade": fields["grade"],
        "laterality": fields["laterality"],
        "route_to_diagnosis": fields["route_to_diagnosis"],
        "basis_of_diagnosis": fields["basis_of_diagnosis"],
        "performance_status": _int8(people.performance_status[rows], present("performance_status")),
        "comorbidity_score": _int8(people.comorbidity[rows], present("comorbidity_score")),
    })
    truth = _truth_frame("notifications", ids, pid[t], tumours["tumour_id"].to_numpy()[t], None, kinds)
    return df, truth


def _treatment_feed(feed: str, treatments: pd.DataFrame, tumours: pd.DataFrame, people: People,
                    alt_trust: dict[str, str], params: dict[str, Any],
                    rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    tp = params["treatments"]
    n = len(treatments)
    start = to_days(treatments["start_date"])
    if np.isnat(start).any():
        bad = treatments["treatment_id"].to_numpy()[np.isnat(start)][0]
        raise RegistryLabError(f"make_feeds: treatment {bad} has no start_date")
    order = _date_order(start, rng)
    start = start[order]
    treatment_id = treatments["treatment_id"].to_numpy()[order]
    tumour_id = treatments["tumour_id"].to_numpy()[order]
    trow = pd.Index(tumours["tumour_id"].to_numpy()).get_indexer(tumour_id)
    if (trow < 0).any():
        raise RegistryLabError(f"make_feeds: treatment {treatment_id[trow < 0][0]} refers to a tumour not in truth/tumours")
    pid = treatments["patient_id"].to_numpy()[order]
    rows = people.rows(pid, f"truth/treatments ({feed})")
    ident, kinds = identifiers_as_sent(people, rows, start, SourceIndex(np.full(n, feed, dtype=object)),
                                       params, rng)
    second = rng.random(n) < float(tp["second_trust"][feed])
    trust = _trusts_as_sent(_check_trusts(tumours, alt_trust).take(trow), second, alt_trust)
    four = rng.random(n) < float(tp["icd10_four_char"])
    site = _icd10_as_sent(Coded(tumours["site_icd10"].to_numpy(dtype=object)).take(trow), four,
                          params["notifications"]["icd10_subsites"], rng)
    ids = record_ids(RECORD_PREFIX[feed], n)
    start_s = date_text(start)
    base = {"record_id": ids, "trust_code": trust, **ident, "site_icd10": site}

    def required(col: str) -> np.ndarray:
        values = treatments[col].to_numpy(dtype=object)[order]
        missing = pd.isna(values)
        if missing.any():
            raise RegistryLabError(f"make_feeds: {feed} treatment {treatment_id[missing][0]} has no {col}")
        return values

    intent = treatments["intent"].to_numpy(dtype=object)[order]
    if feed == "sact":
        df = pd.DataFrame({
            **base,
            "regimen": required("regimen"),
            "intent": _field(intent, ~pd.isna(intent) & (rng.random(n) >= float(tp["sact_intent_missing"]))),
            "cycles": _int16(treatments["cycles"], order),
            "start_date": start_s,
            "performance_status": _int8(people.performance_status[rows],
                                        rng.random(n) < float(tp["sact_performance_status"])),
        })
    elif feed == "radiotherapy":
        rt_intent = np.where(intent == "neoadjuvant", "curative", intent)
        df = pd.DataFrame({
            **base,
            "rt_region": required("rt_region"),
            "dose_gy": pd.to_numeric(treatments["dose_gy"], errors="coerce").to_numpy(dtype=float)[order],
            "fractions": _int16(treatments["fractions"], order),
            "intent": _field(rt_intent, ~pd.isna(intent) & (rng.random(n) >= float(tp["rt_intent_missing"]))),
            "start_date": start_s,
        })
    else:
        df = pd.DataFrame({**base, "procedure_code": required("procedure_code"), "procedure_date": start_s})
    truth = _truth_frame(feed, ids, pid, tumour_id, treatment_id, kinds)
    return df, truth


def _deaths(patients: pd.DataFrame, people: People, params: dict[str, Any], eof: np.datetime64 | None,
            rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    dp = params["deaths"]
    dead = np.flatnonzero(~np.isnat(people.death))
    dead = dead[_date_order(people.death[dead], rng)]
    n = len(dead)
    death = people.death[dead]
    lag_p = dp["registration_lag_days"]
    prompt = rng.random(n) < float(lag_p["prompt_share"])
    u = rng.random(n)
    lo, hi = int(lag_p["delayed_min"]), int(lag_p["delayed_max"])
    lag = np.where(prompt, 1 + np.floor(u * int(lag_p["prompt_max"])), lo + np.floor(u * (hi - lo + 1)))
    registered = _cap(death + lag.astype(np.int64) * DAY, death, eof)
    ident, kinds = identifiers_as_sent(people, dead, death, SourceIndex(np.full(n, "deaths", dtype=object)),
                                       params, rng)
    if "death_cause_icd10" in patients:
        cause = patients["death_cause_icd10"].to_numpy(dtype=object)[dead]
    else:
        cause = np.full(n, None, dtype=object)
    causes = Coded(cause)
    causes.labels = [c.replace(".", "") for c in causes.labels]   # U07.1 is sent as U071
    four = rng.random(n) < float(dp["icd10_four_char"])
    cause_s = _icd10_as_sent(causes, four, params["notifications"]["icd10_subsites"], rng)
    ids = record_ids(RECORD_PREFIX["deaths"], n)
    df = pd.DataFrame({
        "record_id": ids,
        **ident,
        "death_date": date_text(death),
        "underlying_cause_icd10": cause_s,
        "registration_date": date_text(registered),
    })
    truth = _truth_frame("deaths", ids, people.ids.to_numpy()[dead], None, None, kinds)
    return df, truth


def _registration_optouts(patients: pd.DataFrame, people: People, params: dict[str, Any],
                          rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    opted = np.flatnonzero(patients["registration_opted_out"].fillna(False).to_numpy(dtype=bool))
    date = to_days(patients["registration_optout_date"])[opted]
    if np.isnat(date).any():
        bad = patients["patient_id"].to_numpy()[opted][np.isnat(date)][0]
        raise RegistryLabError(f"make_feeds: patient {bad} opted out of registration but has no registration_optout_date")
    order = _date_order(date, rng)
    opted, date = opted[order], date[order]
    n = len(opted)
    ident, kinds = identifiers_as_sent(people, opted, date,
                                       SourceIndex(np.full(n, "registration_optouts", dtype=object)), params, rng)
    ids = record_ids(RECORD_PREFIX["registration_optouts"], n)
    df = pd.DataFrame({
        "record_id": ids,
        "nhs_number": ident["nhs_number"], "given_name": ident["given_name"],
        "family_name": ident["family_name"], "birth_date": ident["birth_date"],
        "request_date": date_text(date),
    })
    # Only the identifiers this feed carries count as errors in it.
    drop = [KIND_INDEX[k] for k in ("house_move", "sex_miscoded", "sex_unknown", "postcode_missing")]
    kinds[:, drop] = False
    truth = _truth_frame("registration_optouts", ids, people.ids.to_numpy()[opted], None, None, kinds)
    return df, truth


def _ndop(patients: pd.DataFrame, config: dict[str, Any], rng: np.random.Generator) -> pd.DataFrame:
    opted = patients[patients["ndop_opted_out"].fillna(False).to_numpy(dtype=bool)]
    dates = ndop_dates(opted, config, rng)
    df = pd.DataFrame({"nhs_number": opted["nhs_number"].astype(str).to_numpy(dtype=object),
                       "optout_date": date_text(dates)})
    return df.sort_values("nhs_number", kind="stable").reset_index(drop=True)


def make_feeds(reference: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame], config: dict[str, Any],
               rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """All raw feeds and ``truth/record_truth`` from the true patients, tumours and treatments.

    ``reference`` needs ``trusts``; ``truth`` needs ``patients`` (TRUE_PATIENTS columns),
    ``tumours`` (TRUE_TUMOURS) and ``treatments`` (TRUE_TREATMENTS). ``config["feeds"]``
    overrides ``params/epidemiology/feeds.yaml``; ``config["end_of_follow_up"]`` caps dates.
    Returns ``(feeds, record_truth)``; feed columns follow ``synth/tables.py``.

    Example:
        >>> from registry_lib.synth import generate, load_config
        >>> cohort = generate(load_config("params/cohort/tiny.yaml"), quiet=True)
        >>> reference = cohort.reference
        >>> truth = {k: cohort.truth[k] for k in ("patients", "tumours", "treatments")}
        >>> feeds, record_truth = make_feeds(reference, truth, {}, np.random.default_rng(1))
        >>> sorted(feeds) == sorted(FEED_NAMES), len(record_truth) == sum(len(feeds[f]) for f in FEED_NAMES[:-1])
        (True, True)
    """
    for key in ("patients", "tumours", "treatments"):
        if key not in truth:
            raise RegistryLabError(f"make_feeds: truth has no {key!r} table")
    if "trusts" not in reference:
        raise RegistryLabError("make_feeds: reference has no 'trusts' table")
    params = feed_params(config)
    eof = end_of_follow_up(config)
    patients, tumours, treatments = truth["patients"], truth["tumours"], truth["treatments"]
    people = people_from_patients(patients)
    alt_trust = alternative_trusts(reference["trusts"])
    streams = dict(zip(FEED_NAMES, rng.spawn(len(FEED_NAMES)), strict=True))

    feeds: dict[str, pd.DataFrame] = {}
    truths: list[pd.DataFrame] = []
    feeds["notifications"], tr = _notifications(tumours, people, alt_trust, params, eof, streams["notifications"])
    truths.append(tr)
    modality = treatments["modality"].astype(str).to_numpy()
    unknown = ~np.isin(modality, ["sact", "radiotherapy", "surgery"])
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise RegistryLabError(f"make_feeds: treatment {treatments['treatment_id'].iloc[i]} has modality "
                               f"{modality[i]!r}; expected surgery, sact or radiotherapy")
    for feed in ("sact", "radiotherapy", "surgery"):
        subset = treatments[modality == feed].reset_index(drop=True)
        feeds[feed], tr = _treatment_feed(feed, subset, tumours, people, alt_trust, params, streams[feed])
        truths.append(tr)
    feeds["deaths"], tr = _deaths(patients, people, params, eof, streams["deaths"])
    truths.append(tr)
    feeds["registration_optouts"], tr = _registration_optouts(patients, people, params, streams["registration_optouts"])
    truths.append(tr)
    feeds["ndop"] = _ndop(patients, config, streams["ndop"])
    feeds = {name: feeds[name][FEEDS[name].column_names] for name in FEED_NAMES}
    record_truth = pd.concat(truths, ignore_index=True)[RECORD_TRUTH.column_names]
    return feeds, record_truth
