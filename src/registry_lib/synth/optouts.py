"""Who has opted out: the national data opt-out (NDOP) and cancer registration opt-outs.

NDOP (Tazare et al., BJGP Open 2024): 4.97% of the population at 30 June 2021, women 5.53%,
men 4.41%, ages 40–49 6.04%, local rates from about 1% to over 10%. The probability of a
person is ``overall × (sex rate / mean of the two sex rates) × age relative rate × area
effect``, the area effect lognormal with mean 1. Registration opt-outs (asking the registry not to register you) are rare
(assumed 0.03%) and dated within two years after first diagnosis. All values live in
``params/epidemiology/feeds.yaml`` under ``optouts``.

Example:
    >>> import numpy as np, pandas as pd
    >>> areas = pd.DataFrame({"area_id": ["E1"]})
    >>> pts = pd.DataFrame({"patient_id": [1, 2], "sex": [1, 2], "area_id": "E1",
    ...     "birth_date": pd.to_datetime(["1950-01-02", "1975-03-04"]),
    ...     "first_diagnosis_date": pd.to_datetime(["2019-05-01", "2020-01-01"]),
    ...     "death_date": pd.to_datetime([None, None])})
    >>> out = assign_optouts(pts, areas, {}, np.random.default_rng(0))
    >>> out[["ndop_opted_out", "registration_opted_out"]].dtypes.tolist()
    [dtype('bool'), dtype('bool')]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.synth.feed_dates import DAY, date_in_window, end_of_follow_up, to_days
from registry_lib.synth.feed_params import feed_params


def ndop_probability(sex: np.ndarray, age: np.ndarray, area_effect: np.ndarray,
                     params: dict[str, Any]) -> np.ndarray:
    """Probability of being on the NDOP list from sex (1/2), age at the reference date and area.

    Example:
        >>> p = feed_params({})["optouts"]["ndop"]
        >>> ndop_probability(np.array([2, 1]), np.array([45, 45]), np.ones(2), p).round(4).tolist()
        [0.0672, 0.0536]
    """
    overall = float(params["overall"])
    female, male = float(params["female"]), float(params["male"])
    sex_rate = overall * np.where(sex == 2, female, male) / ((female + male) / 2)
    bands = np.array(sorted(int(k) for k in params["age_relative_rate"]))
    rr = np.array([float(params["age_relative_rate"][k]) for k in sorted(params["age_relative_rate"], key=int)])
    band = np.clip(np.searchsorted(bands, np.maximum(age, 0), side="right") - 1, 0, len(bands) - 1)
    return np.clip(sex_rate * rr[band] * area_effect, 0.0, 1.0)


def area_effects(area_ids: np.ndarray, log_sd: float, rng: np.random.Generator) -> np.ndarray:
    """One lognormal relative rate per area, mean 1 (``exp(N(-sd²/2, sd))``), in ``area_ids`` order.

    Example:
        >>> rr = area_effects(np.arange(20000), 0.3, np.random.default_rng(0))
        >>> round(float(rr.mean()), 2), bool((rr > 0).all())
        (1.0, True)
    """
    return np.exp(rng.normal(-0.5 * log_sd**2, log_sd, size=len(area_ids)))


def assign_optouts(patients: pd.DataFrame, areas: pd.DataFrame, config: dict[str, Any],
                   rng: np.random.Generator) -> pd.DataFrame:
    """Add ``ndop_opted_out``, ``registration_opted_out`` and ``registration_optout_date``.

    ``patients`` needs patient_id, sex (1/2), birth_date, area_id, first_diagnosis_date and
    death_date; ``areas`` needs area_id. Returns a copy, same rows and order.

    Example:
        >>> pts = pd.DataFrame({"patient_id": [1, 2], "sex": [1, 2], "area_id": "E1",
        ...     "birth_date": pd.to_datetime(["1950-01-02", "1975-03-04"]),
        ...     "first_diagnosis_date": pd.to_datetime(["2019-05-01", "2020-01-01"]),
        ...     "death_date": pd.to_datetime([None, None])})
        >>> out = assign_optouts(pts, pd.DataFrame({"area_id": ["E1"]}), {}, np.random.default_rng(0))
        >>> len(out), {"ndop_opted_out", "registration_opted_out", "registration_optout_date"} <= set(out.columns)
        (2, True)
    """
    required = ["patient_id", "sex", "birth_date", "area_id", "first_diagnosis_date", "death_date"]
    missing = [c for c in required if c not in patients.columns]
    if missing:
        raise RegistryLabError(f"assign_optouts: patients lack column(s) {', '.join(missing)}")
    params = feed_params(config)["optouts"]
    nd = params["ndop"]
    n = len(patients)
    area_ids = areas["area_id"].astype(str).to_numpy()
    effect = area_effects(area_ids, float(nd["area_log_sd"]), rng)
    patient_area = patients["area_id"].astype(str).to_numpy()
    where = pd.Index(area_ids).get_indexer(patient_area)
    if (where < 0).any():
        i = int(np.flatnonzero(where < 0)[0])
        raise RegistryLabError(f"assign_optouts: area {patient_area[i]!r} of patient "
                               f"{patients['patient_id'].iloc[i]} is not in reference/areas")
    birth = to_days(patients["birth_date"])
    ref = np.datetime64(nd["reference_date"], "D")
    age = ((ref - birth) / DAY / 365.25).astype(float)
    age = np.where(np.isnan(age), 60.0, age)  # no birth date cannot happen in truth; be safe
    p = ndop_probability(patients["sex"].to_numpy(), np.floor(age), effect[where], nd)
    out = patients.copy()
    out["ndop_opted_out"] = rng.random(n) < p

    reg = params["registration"]
    diag = to_days(patients["first_diagnosis_date"])
    death = to_days(patients["death_date"])
    end = diag + np.int64(reg["max_delay_days"]) * DAY
    end = np.where(np.isnat(death) | (death >= end), end, death)
    eof = end_of_follow_up(config)
    if eof is not None:
        end = np.minimum(end, eof)
    date, ok = date_in_window(diag, end, rng)
    opted = (rng.random(n) < float(reg["rate"])) & ok
    out["registration_opted_out"] = opted
    out["registration_optout_date"] = pd.to_datetime(np.where(opted, date, np.datetime64("NaT")))
    return out


def ndop_dates(patients: pd.DataFrame, config: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """The date each opted-out patient joined the NDOP list (``datetime64[D]``, one per row).

    Before the June 2021 surge (share_before_surge), during it, or after (share_after_surge),
    never after death; people who died before NDOP began carry its start date (their earlier
    type-2 objection was converted).

    Example:
        >>> pts = pd.DataFrame({"birth_date": pd.to_datetime(["1950-01-02", "1975-03-04"]),
        ...     "first_diagnosis_date": pd.to_datetime(["2019-05-01", "2020-01-01"]),
        ...     "death_date": pd.to_datetime(["2020-02-01", None])})
        >>> d = ndop_dates(pts, {"end_of_follow_up": "2022-06-30"}, np.random.default_rng(0))
        >>> d.dtype, bool(d[0] <= np.datetime64("2020-02-01"))   # never after death
        (dtype('<M8[D]'), True)
    """
    nd = feed_params(config)["optouts"]["ndop"]
    n = len(patients)
    start = np.datetime64(nd["start_date"], "D")
    s0 = np.datetime64(nd["surge_start"], "D")
    s1 = np.datetime64(nd["surge_end"], "D")
    eof = end_of_follow_up(config)
    extract = eof if eof is not None and eof > s1 else s1 + np.int64(365) * DAY
    u = rng.random(n)
    before = float(nd["share_before_surge"])
    after = float(nd["share_after_surge"])
    lo = np.where(u < before, start, np.where(u < 1 - after, s0, s1 + DAY))
    hi = np.where(u < before, s0 - DAY, np.where(u < 1 - after, s1, extract))
    death = to_days(patients["death_date"])
    hi = np.where(~np.isnat(death) & (death < hi), death, hi)
    lo = np.where(lo > hi, np.where(start <= hi, start, hi), lo)
    span = ((hi - lo) / DAY).astype(np.int64)
    dates = lo + np.floor(rng.random(n) * (span + 1)).astype(np.int64) * DAY
    return np.where(np.isnat(death) | (death >= start), dates, start)
