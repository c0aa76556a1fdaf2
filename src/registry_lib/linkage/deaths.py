"""Deaths of registered persons and deaths dated before the person's last recorded activity.

Death registrations are linked to persons by the person linkage. When several link to one
person, the earliest registration is used (then the smaller record id); the others are still
counted as linked and reported as ``deaths_conflicting`` when their dates differ.

A death dated before the person's last recorded activity (a diagnosis or a treatment) is
impossible: it is kept, flagged in ``death_flags`` and counted in the link report.

Example:
    >>> import pandas as pd
    >>> d = pd.DataFrame({"patient_id": [1], "death_date": pd.to_datetime(["2020-01-01"])})
    >>> act = pd.DataFrame({"patient_id": [1, 1], "date": pd.to_datetime(["2019-05-01", "2020-03-01"]),
    ...                     "activity": ["diagnosis", "sact"]})
    >>> death_flags(d, act)[["patient_id", "last_activity", "days_before"]].values.tolist()
    [[1, 'sact', 60]]
"""

from __future__ import annotations

import pandas as pd


def choose_deaths(deaths: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One death per person (``patient_id``, ``death_date``, ``death_cause_icd10``) and the
    number of persons with conflicting death dates.

    Example:
        >>> d = pd.DataFrame({"patient_id": [1, 1, 2], "record_id": ["D2", "D1", "D3"],
        ...                   "registration_value": pd.to_datetime(["2020-01-09", "2020-01-08", "2021-05-10"]),
        ...                   "death_value": pd.to_datetime(["2020-01-03", "2020-01-01", "2021-05-05"]),
        ...                   "cause": ["C18", "C18", "I21"]})
        >>> chosen, conflicts = choose_deaths(d)   # the first registered death of each person
        >>> chosen["death_date"].dt.strftime("%Y-%m-%d").tolist(), conflicts
        (['2020-01-01', '2021-05-05'], 1)
    """
    d = deaths.sort_values(["patient_id", "registration_value", "record_id"], kind="stable")
    conflicting = int((d.groupby("patient_id")["death_value"].nunique() > 1).sum())
    first = d.drop_duplicates("patient_id")
    out = pd.DataFrame({"patient_id": first["patient_id"].to_numpy(),
                        "death_date": first["death_value"].to_numpy(),
                        "death_cause_icd10": first["cause"].astype("string").to_numpy()})
    return out, conflicting


def death_flags(deaths: pd.DataFrame, activity: pd.DataFrame) -> pd.DataFrame:
    """Persons whose death date is before their last activity (``patient_id``, ``date``,
    ``activity``): ``patient_id``, ``death_date``, ``last_activity_date``, ``last_activity``,
    ``days_before``.

    Example:
        >>> d = pd.DataFrame({"patient_id": [1], "death_date": pd.to_datetime(["2021-01-01"])})
        >>> act = pd.DataFrame({"patient_id": [1], "date": pd.to_datetime(["2020-03-01"]), "activity": ["diagnosis"]})
        >>> len(death_flags(d, act))   # death after the last activity: nothing to flag
        0
    """
    last = (activity.sort_values(["patient_id", "date", "activity"], ascending=[True, False, True], kind="stable")
            .drop_duplicates("patient_id"))
    m = deaths[["patient_id", "death_date"]].merge(last, on="patient_id")
    m = m[m["date"] > m["death_date"]]
    return pd.DataFrame({
        "patient_id": m["patient_id"].astype("int64").to_numpy(),
        "death_date": m["death_date"].to_numpy(),
        "last_activity_date": m["date"].to_numpy(),
        "last_activity": m["activity"].astype("string").to_numpy(),
        "days_before": (m["date"] - m["death_date"]).dt.days.astype("int64").to_numpy(),
    }).sort_values("patient_id", ignore_index=True)
