"""The release's linked tables as synthesiser records: screening histories and the CPES survey.

A release may hold two tables linked to its patients besides tumours and treatments (issue 14):
``screening`` (one row per invitation of a screening programme) and ``cpes`` (the Cancer
Patient Experience Survey: one row per sampled patient and survey year, the episode's tumour,
the response and the answers). The twin draws them with the same CART machinery, linked to its
own patients and tumours, by turning them into records here:

- **screening**: a programme's history hangs on an *anchor*, the patient's first tumour of the
  programme's sites (learned from the data: the three-character sites whose patients mostly
  have that programme's records, e.g. C50 for breast screening). Each anchor has a number of
  invitations (possibly none); the invitations are ordered back from the diagnosis, each as an
  interval (``lag``: diagnosis to the latest invitation, then from one invitation back to the
  one before), with ``attended`` and, for attended ones, the days to the test, the test type
  and the result. Dates are intervals, so every invitation precedes its anchor's diagnosis as
  in the data, and a history never belongs to a patient the programme does not screen (a sex
  the original never has records for);
- **cpes**: the survey samples patients by an episode, a treatment started in the survey's
  months (learned: the months and years of the original's episodes); the *candidates* are each
  patient's first such treatment in a year. Whether a candidate was sampled (a patient who
  died before the questionnaires were mailed was not) is drawn given the candidate's days to
  death, then the response given the patient, and the answers of respondents only; the
  episode's trust and site are those of its tumour (diagnosing trust, site), as in the data.

Example:
    >>> tum = pd.DataFrame({"_p": [0, 0, 1, 2, 3], "site_icd10": ["C50", "C18", "C509", "C61", "C50"],
    ...                     "diag_day": [100.0, 50.0, 300.0, 10.0, 20.0]})
    >>> scr = pd.DataFrame({"_p": [0, 1, 1], "programme": ["breast"] * 3})
    >>> programme_sites(tum, scr)
    {'breast': ('C50',)}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["anchors", "cpes_candidates", "invitation_days", "programme_sites", "screening_records"]


def programme_sites(tum: pd.DataFrame, scr: pd.DataFrame, *, min_share: float = 0.1,
                    min_patients: int = 5) -> dict[str, tuple[str, ...]]:
    """The three-character sites of each programme: where its records concentrate.

    A site belongs to a programme when at least ``min_share`` of its patients (and at least
    ``min_patients``, fewer with the example's tiny data) have that programme's records; a
    site whose patients have them only because of another tumour falls far below.

    ``tum`` needs ``_p`` (patient code) and ``site_icd10``; ``scr`` ``_p`` and ``programme``.

    Example:
        >>> tum = pd.DataFrame({"_p": range(6), "site_icd10": ["C50", "C50", "C18", "C20", "C34", "C34"]})
        >>> scr = pd.DataFrame({"_p": [0, 2, 3, 4], "programme": ["breast", "bowel", "bowel", "bowel"]})
        >>> programme_sites(tum, scr, min_share=0.5, min_patients=1)     # C34: 1 of 2 patients
        {'bowel': ('C18', 'C20', 'C34'), 'breast': ('C50',)}
    """
    site3 = tum["site_icd10"].astype(str).str[:3]
    patients = tum.groupby(site3)["_p"].nunique()
    out = {}
    for prog in sorted(scr["programme"].dropna().astype(str).unique()):
        with_records = tum["_p"].isin(scr.loc[scr["programme"].astype(str) == prog, "_p"]).to_numpy()
        have = tum[with_records].groupby(site3[with_records])["_p"].nunique().reindex(patients.index, fill_value=0)
        share = have / patients
        need = min(min_patients, max(1, int(have.max()) if len(have) else 1))
        out[prog] = tuple(sorted(share.index[(share >= min_share) & (have >= need)]))
    return out


def anchors(tum: pd.DataFrame, sites: tuple[str, ...], patient: str = "_p") -> pd.DataFrame:
    """Each patient's first tumour of ``sites`` (the tumour a programme's history hangs on).

    Example:
        >>> tum = pd.DataFrame({"_p": [0, 0, 1, 2], "site_icd10": ["C50", "C504", "C18", "C50"],
        ...                     "diag_day": [300.0, 100.0, 50.0, 20.0], "rank": [2, 1, 1, 1]})
        >>> anchors(tum, ("C50",))[["_p", "diag_day"]].to_dict("list")
        {'_p': [0, 2], 'diag_day': [100.0, 20.0]}
    """
    hit = tum["site_icd10"].astype(str).str[:3].isin(list(sites)).to_numpy()
    a = tum[hit].sort_values([patient, "diag_day", "rank"], kind="stable")
    return a.drop_duplicates(patient).reset_index(drop=True)


def screening_records(scr: pd.DataFrame, anchor: pd.DataFrame) -> pd.DataFrame:
    """A programme's invitations as records: rank back from diagnosis and intervals.

    ``scr`` needs ``_p``, ``inv_day``, ``test_day``; ``anchor`` ``_p`` and ``diag_day``. Adds
    ``k`` (0 = the latest invitation), ``lag`` (days from this invitation to the next later
    one, or to the diagnosis for ``k = 0``) and ``wait`` (invitation to test, missing if not
    tested); invitations of patients with no anchor are left out.

    Example:
        >>> scr = pd.DataFrame({"_p": [0, 0, 0, 5], "inv_day": [-1000.0, 80.0, -2100.0, 0.0],
        ...                     "test_day": [-990.0, 95.0, None, 1.0]})
        >>> r = screening_records(scr, pd.DataFrame({"_p": [0], "diag_day": [100.0]}))
        >>> r[["k", "lag", "wait"]].to_dict("list")
        {'k': [0, 1, 2], 'lag': [20.0, 1080.0, 1100.0], 'wait': [15.0, 10.0, nan]}
    """
    diag = anchor.set_index("_p")["diag_day"]
    r = scr[scr["_p"].isin(diag.index)].copy()
    r["anchor_day"] = r["_p"].map(diag)
    r = r.sort_values(["_p", "inv_day"], ascending=[True, False], kind="stable").reset_index(drop=True)
    r["k"] = r.groupby("_p").cumcount()
    later = r.groupby("_p")["inv_day"].shift(1)
    r["lag"] = np.where(r["k"] == 0, r["anchor_day"] - r["inv_day"], later - r["inv_day"])
    r["wait"] = r["test_day"] - r["inv_day"]
    return r


def invitation_days(anchor_day: np.ndarray, group: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Invitation days from drawn intervals: the diagnosis minus the running sum of ``lag``.

    ``group`` identifies the anchor of each record; records of an anchor are consecutive and in
    rank order (``k = 0, 1, ...``).

    Example:
        >>> invitation_days(np.array([100.0, 100.0, 50.0]), np.array([0, 0, 1]), np.array([20.0, 1080.0, 5.0])).tolist()
        [80.0, -1000.0, 45.0]
    """
    return anchor_day - pd.Series(lag).groupby(group).cumsum().to_numpy()


def cpes_candidates(trt: pd.DataFrame, months: list[int], years: tuple[int, int], patient: str = "_p",
                    tumour: str = "_t") -> pd.DataFrame:
    """Each patient's first treatment of a year started in the survey's months (its episode).

    ``trt`` needs ``patient``, ``tumour``, ``diag_day`` and ``day`` (from diagnosis); adds
    ``episode_day``, ``survey_year`` and ``month``.

    Example:
        >>> trt = pd.DataFrame({"_p": [0, 0, 0, 1], "_t": [5, 5, 5, 6], "diag_day": [17600.0] * 4,
        ...                     "day": [10.0, 30.0, 200.0, 500.0]})      # 2018-03-08 + days
        >>> c = cpes_candidates(trt, [4, 5, 6], (2015, 2023))
        >>> c[["_p", "episode_day", "survey_year", "month"]].to_dict("list")
        {'_p': [0], 'episode_day': [17630.0], 'survey_year': [2018], 'month': [4]}
    """
    day = (trt["diag_day"] + trt["day"]).to_numpy(float)
    date = (np.floor(day).astype("int64")).astype("datetime64[D]")
    month = date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    year = date.astype("datetime64[Y]").astype(np.int64) + 1970
    c = trt.assign(episode_day=np.floor(day), survey_year=year, month=month)
    c = c[np.isin(month, months) & (year >= years[0]) & (year <= years[1])]
    c = c.sort_values([patient, "survey_year", "episode_day", tumour], kind="stable")
    return c.drop_duplicates([patient, "survey_year"]).reset_index(drop=True)
