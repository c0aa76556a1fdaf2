"""Cancer registration opt-outs: remove the person, keep a keyed hash, block later records.

A person who asked not to be registered is found by the person linkage (their request is linked
like any other record) and by NHS number: the keyed hash (HMAC-SHA256 under the project key,
purpose ``registration-optout``) of the request's NHS number is kept, and any record whose
valid NHS number has a kept hash belongs to an opted-out person. The hashes of all valid NHS
numbers found in an opted-out person's records are kept too. Every record of an opted-out
person is left out of every registry table and counted: ``optout_removed`` when it arrived
before the request, ``optout_blocked`` when it arrived on or after it (a later notification,
never registered). Raw NHS numbers of opted-out persons are never written anywhere.

Example:
    >>> import os, pandas as pd
    >>> os.environ.setdefault("REGISTRY_LAB_KEY", "b3c2d83c27d47ab65d3949c308ec55af2728874bd1ebbc3b30649ee8089ebdcf")  # doctest: +ELLIPSIS
    '...'
    >>> recs = pd.DataFrame({"feed": ["registration_optouts", "notifications", "notifications"],
    ...     "record_id": ["O1", "N1", "N2"], "person": [0, 0, 1],
    ...     "nhs_number": ["9434765919", None, "9434765919"],
    ...     "event_date": pd.to_datetime(["2020-06-01", "2019-01-01", "2021-01-01"])})
    >>> result = apply_optouts(recs)
    >>> result.status.tolist(), len(result.hashes)
    (['optout_request', 'optout_removed', 'optout_blocked'], 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from registry_lib.keys import keyed_hash

PURPOSE = "registration-optout"
FEED = "registration_optouts"


@dataclass
class OptoutResult:
    """``status`` of each record (missing when not opted out; ``optout_request``,
    ``optout_removed`` or ``optout_blocked``) and the kept ``hashes`` table.

    Example:
        >>> r = OptoutResult(status=pd.Series([None, "optout_removed"]), hashes=pd.DataFrame({"nhs_hash": []}), persons=1)
        >>> int(r.status.notna().sum()), r.persons
        (1, 1)
    """

    status: pd.Series
    hashes: pd.DataFrame
    persons: int


def apply_optouts(records: pd.DataFrame, person_col: str = "person") -> OptoutResult:
    """Find opted-out persons among linked ``records`` (``feed``, ``record_id``, ``nhs_number``
    valid or missing, ``event_date``, ``person``).

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> recs = pd.DataFrame({"feed": ["notifications", "notifications"], "record_id": ["N1", "N2"],
        ...     "person": [0, 1], "nhs_number": ["9434765919", None],
        ...     "event_date": pd.to_datetime(["2019-01-01", "2021-01-01"])})
        >>> result = apply_optouts(recs)   # nobody opted out
        >>> bool(result.status.isna().all()), len(result.hashes), result.persons
        (True, 0, 0)
    """
    status = pd.Series(pd.NA, index=records.index, dtype="string")
    empty = pd.DataFrame({"nhs_number_hash": pd.Series(dtype="string"), "optout_person": pd.Series(dtype="int64"),
                          "request_date": pd.Series(dtype="datetime64[ns]"),
                          "records_removed": pd.Series(dtype="int64"), "records_blocked": pd.Series(dtype="int64")})
    is_req = (records["feed"] == FEED).to_numpy()
    if not is_req.any():
        return OptoutResult(status, empty, 0)
    nhs = records["nhs_number"].astype("string")
    has_nhs = nhs.notna().to_numpy()
    hashes = pd.Series(pd.NA, index=records.index, dtype="string")
    hashes[has_nhs] = keyed_hash(nhs[has_nhs], purpose=PURPOSE)
    person = records[person_col].to_numpy()
    kept = set(hashes[is_req & has_nhs].dropna())
    opted = set(person[is_req])
    while True:  # a fixed point: persons reached by a kept hash bring in their other NHS numbers
        opted |= set(person[hashes.isin(kept).to_numpy()])
        in_opted = np.isin(person, list(opted))
        new_kept = kept | set(hashes[in_opted].dropna())
        if new_kept == kept:
            break
        kept = new_kept
    in_opted = np.isin(person, list(opted))
    # request date per person: its own request(s), else the request whose hash it carries
    req = records.loc[is_req, [person_col, "event_date"]].assign(_h=hashes[is_req].to_numpy())
    never = pd.Timestamp.min
    req_date = req.assign(d=req["event_date"].fillna(never)).groupby(person_col)["d"].min()
    by_hash = req.dropna(subset=["_h"]).assign(d=lambda x: x["event_date"].fillna(never)).groupby("_h")["d"].min()
    rec_dates = pd.Series(person, index=records.index).map(req_date)
    via_hash = hashes.map(by_hash)
    per_person_hash = pd.DataFrame({"p": person, "d": via_hash}).dropna().groupby("p")["d"].min()
    rec_dates = rec_dates.fillna(pd.Series(person, index=records.index).map(per_person_hash))
    blocked = (records["event_date"].isna() | (records["event_date"] >= rec_dates)).to_numpy()
    status[in_opted] = np.where(blocked[in_opted], "optout_blocked", "optout_removed")
    status[is_req] = "optout_request"
    # the kept hash table: one row per hash, with its person's counts
    h = pd.DataFrame({"h": hashes, "p": person, "s": status}).loc[in_opted]
    counts = h.groupby("p")["s"].agg(removed=lambda s: int((s == "optout_removed").sum()),
                                     blocked=lambda s: int((s == "optout_blocked").sum()))
    table = h.dropna(subset=["h"]).drop_duplicates("h")[["h", "p"]]
    extra = sorted(set(kept) - set(table["h"]))
    if extra:
        table = pd.concat([table, pd.DataFrame({"h": extra, "p": -1})], ignore_index=True)
    first_hash = table.groupby("p")["h"].min().sort_values()
    ordinal = pd.Series(np.arange(1, len(first_hash) + 1), index=first_hash.index)
    out = pd.DataFrame({
        "nhs_number_hash": table["h"].astype("string").to_numpy(),
        "optout_person": table["p"].map(ordinal).astype("int64").to_numpy(),
        "request_date": table["p"].map(req_date).fillna(table["h"].map(by_hash)).replace(never, pd.NaT).to_numpy(),
        "records_removed": table["p"].map(counts["removed"]).fillna(0).astype("int64").to_numpy(),
        "records_blocked": table["p"].map(counts["blocked"]).fillna(0).astype("int64").to_numpy(),
    }).sort_values(["optout_person", "nhs_number_hash"], ignore_index=True)
    return OptoutResult(status, out, int(len(opted)))
