"""The screening and CPES feeds as their senders send them, with identifier errors and truth.

:func:`make_linked_feeds` turns the screening histories (:mod:`~registry_lib.synth.screening`)
and the CPES sample (:mod:`~registry_lib.synth.cpes`) into the feeds ``screening`` and
``cpes``, each person-level record carrying its patient's
identifiers as of its date with the feed's own identifier errors (rates of
``params/epidemiology/feeds.yaml`` ``errors``, keyed ``screening_feed`` and ``cpes`` where
given, else the default), and their ``record_truth`` rows.

Example:
    >>> from registry_lib.synth.feeds_linked import LINKED_FEED_NAMES
    >>> LINKED_FEED_NAMES
    ('screening', 'cpes')
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.synth.feed_dates import date_text
from registry_lib.synth.feed_params import SourceIndex, feed_params
from registry_lib.synth.feeds import _date_order, _truth_frame, record_ids
from registry_lib.synth.feeds_identifiers import identifiers_as_sent, people_from_patients
from registry_lib.synth.screening import TEST_TYPE, ScreeningResult
from registry_lib.synth.tables_linked import LINKED_FEEDS

LINKED_FEED_NAMES = ("screening", "cpes")
#: Error-rate source label of each feed in ``feeds.yaml`` (``screening`` there is the
#: notification source, so the screening programme feed has its own label).
SOURCE = {"screening": "screening_feed", "cpes": "cpes"}
HPV_PRIMARY = np.datetime64("2019-12-01", "D")   # HPV primary screening in England from December 2019


def _days(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float).astype(np.int64).astype("datetime64[D]")


def _optional_dates(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), None, dtype=object)
    ok = ~np.isnan(values)
    if ok.any():
        out[ok] = date_text(_days(values[ok]))
    return out


def _bool(values: np.ndarray) -> pd.arrays.BooleanArray:
    ok = ~np.isnan(values)
    return pd.arrays.BooleanArray(np.where(ok, values, 0).astype(bool), ~ok)


def make_linked_feeds(patients: pd.DataFrame, screening: ScreeningResult, cpes_frame: pd.DataFrame, config: dict[str, Any],
                      rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The two feeds and their ``record_truth`` rows (see the module docstring).

    Example:
        >>> from registry_lib.synth.screening import ScreeningResult
        >>> pts = pd.DataFrame({"patient_id": [1, 2], "nhs_number": ["9434765919", "9000000009"],
        ...     "given_name": ["Ann", "Bob"], "family_name": ["Lee", "Stone"], "family_name_later": [None, None],
        ...     "name_change_date": pd.to_datetime([None, None]), "birth_date": pd.to_datetime(["1950-01-02", "1961-07-08"]),
        ...     "sex": [2, 1], "postcode": ["LS6 2AB", "M1 1AA"], "postcode_later": [None, None],
        ...     "move_date": pd.to_datetime([None, None]), "death_date": pd.to_datetime([None, None])})
        >>> day = lambda s: float(np.datetime64(s, "D").astype(np.int64))
        >>> episodes = pd.DataFrame({"patient_id": [1, 1, 2], "tumour_id": [10, 10, 20], "programme": "breast",
        ...                          "invitation_day": [day("2016-03-01"), day("2019-03-01"), day("2023-01-01")],
        ...                          "attended": [True, False, False], "test_day": [day("2016-03-20"), np.nan, np.nan],
        ...                          "result": ["negative", None, None]})
        >>> screening = ScreeningResult(routes=np.array([]), episodes=episodes, detection=pd.DataFrame())
        >>> cpes = pd.DataFrame({"patient_id": [2], "tumour_id": [20], "survey_year": [2019], "trust_code": ["RB2"],
        ...                      "episode_date": pd.to_datetime(["2019-05-01"]), "ethnicity": ["White"], "site_icd10": ["C18"],
        ...                      "responded": [True], "overall_rating": [9.0], "cns_name": [1.0], "told_sensitively": [1.0],
        ...                      "involved_decisions": [np.nan], "support_after_treatment": [0.0]})
        >>> feeds, truth = make_linked_feeds(pts, screening, cpes, {"end_of_follow_up": "2021-12-31"}, np.random.default_rng(0))
        >>> print(feeds["screening"][["family_name", "programme", "invitation_date", "attended", "test_type", "result"]].to_string())
          family_name programme invitation_date  attended  test_type    result
        0         Lee    breast      2016-03-01      True  mammogram  negative
        1         Lee    breast      2019-03-01     False       None      None
        >>> print(feeds["cpes"][["family_name", "trust_code", "responded", "overall_rating", "involved_decisions"]].to_string())
          family_name trust_code  responded  overall_rating  involved_decisions
        0       Stone        RB2       True               9                <NA>
        >>> print(truth[["feed", "patient_id", "tumour_id"]].to_string())   # the 2023 invitation is after follow-up
                feed  patient_id  tumour_id
        0  screening           1         10
        1  screening           1         10
        2       cpes           2         20
    """
    params = feed_params(config)
    people = people_from_patients(patients)
    eof = np.datetime64(config["end_of_follow_up"], "D")
    s_rng, c_rng = rng.spawn(2)
    feeds: dict[str, pd.DataFrame] = {}
    truths = []

    # screening histories (only invitations the registry could have by the end of follow-up)
    ep = screening.episodes
    ep = ep[_days(ep["invitation_day"].to_numpy()) <= eof].reset_index(drop=True)
    inv = _days(ep["invitation_day"].to_numpy())
    order = _date_order(inv, s_rng)
    ep = ep.iloc[order].reset_index(drop=True)
    inv = inv[order]
    test_day = ep["test_day"].to_numpy(dtype=float)
    test_day = np.where(_days(np.nan_to_num(test_day, nan=0.0)) <= eof, test_day, np.nan)
    n = len(ep)
    rows = people.rows(ep["patient_id"].to_numpy(), "screening episodes")
    ident, kinds = identifiers_as_sent(people, rows, inv, SourceIndex(np.full(n, SOURCE["screening"], dtype=object)),
                                       params, s_rng)
    attended = ~np.isnan(test_day)
    programme = ep["programme"].to_numpy(dtype=object)
    test_type = np.array([TEST_TYPE.get(p, None) for p in ("breast", "bowel", "cervical")], dtype=object)
    code = pd.Categorical(programme, categories=["breast", "bowel", "cervical"]).codes
    ttype = test_type[code].astype(object)
    hpv = (programme == "cervical") & (_days(np.nan_to_num(test_day, nan=0.0)) >= HPV_PRIMARY)
    ttype = np.where(hpv, "HPV", ttype)
    ttype = np.where(attended, ttype, None)
    ids = record_ids("B", n)
    feeds["screening"] = pd.DataFrame({
        "record_id": ids, **ident, "programme": programme, "invitation_date": date_text(inv),
        "attended": attended, "test_type": ttype, "test_date": _optional_dates(test_day),
        "result": np.where(attended, ep["result"].to_numpy(dtype=object), None),
    })
    truths.append(_truth_frame("screening", ids, ep["patient_id"].to_numpy(), ep["tumour_id"].to_numpy(), None, kinds))

    # CPES
    cf = cpes_frame
    dates = cf["episode_date"].to_numpy().astype("datetime64[D]")
    order = _date_order(dates, c_rng)
    cf = cf.iloc[order].reset_index(drop=True)
    dates = dates[order]
    n = len(cf)
    rows = people.rows(cf["patient_id"].to_numpy(), "CPES sample")
    ident, kinds = identifiers_as_sent(people, rows, dates, SourceIndex(np.full(n, SOURCE["cpes"], dtype=object)),
                                       params, c_rng)
    rating = cf["overall_rating"].to_numpy(dtype=float)
    ids = record_ids("P", n)
    feeds["cpes"] = pd.DataFrame({
        "record_id": ids, "trust_code": cf["trust_code"].to_numpy(dtype=object),
        "survey_year": cf["survey_year"].to_numpy().astype(np.int16), **ident,
        "ethnicity": cf["ethnicity"].to_numpy(dtype=object), "site_icd10": cf["site_icd10"].to_numpy(dtype=object),
        "episode_date": date_text(dates), "responded": cf["responded"].to_numpy(dtype=bool),
        "overall_rating": pd.arrays.IntegerArray(np.nan_to_num(rating, nan=0).astype(np.int8), np.isnan(rating)),
        **{item: _bool(cf[item].to_numpy(dtype=float)) for item in ("cns_name", "told_sensitively",
                                                                      "involved_decisions", "support_after_treatment")},
    })
    truths.append(_truth_frame("cpes", ids, cf["patient_id"].to_numpy(), cf["tumour_id"].to_numpy(), None, kinds))
    feeds = {name: feeds[name][LINKED_FEEDS[name].column_names] for name in LINKED_FEED_NAMES}
    return feeds, pd.concat(truths, ignore_index=True)


def detection_truth(screening: ScreeningResult) -> pd.DataFrame:
    """``truth/screening_detection`` from :class:`~registry_lib.synth.screening.ScreeningResult`.

    Example:
        >>> from registry_lib.synth.screening import ScreeningResult
        >>> det = pd.DataFrame({"tumour_id": [20, 10], "programme": "breast", "detection": ["never_screened", "interval"],
        ...                     "screen_day": [np.nan, 17532.0], "years_since_screen": [np.nan, 1.4]})
        >>> print(detection_truth(ScreeningResult(routes=np.array([]), episodes=pd.DataFrame(), detection=det)).to_string())
           tumour_id programme       detection screen_date  years_since_screen
        0         10    breast        interval  2018-01-01                 1.4
        1         20    breast  never_screened         NaT                 NaN
    """
    d = screening.detection
    day = d["screen_day"].to_numpy(dtype=float)
    screen = pd.Series(pd.NaT, index=d.index, dtype="datetime64[s]")
    ok = ~np.isnan(day)
    screen[ok] = _days(day[ok]).astype("datetime64[s]")
    return pd.DataFrame({"tumour_id": d["tumour_id"].to_numpy().astype(np.int64),
                         "programme": d["programme"].to_numpy(dtype=object),
                         "detection": d["detection"].to_numpy(dtype=object),
                         "screen_date": screen.dt.date.to_numpy(),
                         "years_since_screen": d["years_since_screen"].to_numpy(dtype=float)}
                        ).sort_values("tumour_id", kind="stable").reset_index(drop=True)
