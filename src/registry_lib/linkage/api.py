"""The generic API: deduplicate one table or link two, on data that is not ours.

Tell it which of your columns plays which identifier role (all optional): ``nhs_number`` (any
stable person identifier), ``given_name``, ``family_name``, ``birth_date``, ``sex``,
``postcode``, ``address``. The Fellegi–Sunter model (:mod:`registry_lib.linkage.model`) is
EM-trained on your data, term-frequency adjusted, and scored on the pairs the blocking rules
generate. Pairs carry your index labels in ``id_l`` and ``id_r``.

The default threshold is ``match_probability >= 0.5`` (a pair is more likely a match than not).

Example:
    >>> import pandas as pd
    >>> people = pd.DataFrame({
    ...     "first": ["Robert", "Bob", "Mary", "Robert", "Jane", "Ann"],
    ...     "last": ["Smith", "Smith", "Jones", "Brown", "Smith", "Lee"],
    ...     "dob": ["1950-02-01", "1950-02-01", "1961-04-23", "1972-12-30", "1950-02-01", "1980-05-05"],
    ...     "sex": ["1", "1", "2", "1", "2", "2"],
    ... }, index=list("abcdef"))
    >>> result = dedupe(people, columns={"given_name": "first", "family_name": "last",
    ...                                  "birth_date": "dob", "sex": "sex"})
    >>> bool(result.clusters["a"] == result.clusters["b"]), bool(result.clusters["a"] == result.clusters["e"])
    (True, False)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError, RegistryLabWarning
from registry_lib.linkage import formats as fmt
from registry_lib.linkage import model as mdl
from registry_lib.linkage.clustering import connected_clusters

DEFAULT_THRESHOLD = 0.5
LOG = logging.getLogger("registry_lib.linkage")
#: Candidate pairs scoring below this are not kept at all.
MIN_PROBABILITY = 0.001


@dataclass
class DedupeResult:
    """What :func:`dedupe` returns.

    Attributes:
        pairs: matched pairs (``match_probability >= threshold``): ``id_l``, ``id_r`` (input
            index labels), ``match_probability``, ``match_weight``.
        candidates: every scored candidate pair (probability ≥ 0.001), same columns, for
            choosing another threshold.
        clusters: a Series indexed like the input: the cluster id of each row (rows in the same
            cluster are the same person); ids are 0, 1, … in order of first appearance.
        threshold: the threshold used.
        model: Splink's settings JSON with the trained m and u probabilities.
        notes: what format detection found in each mapped column (``"birth_date ('dob'):
            parsed 4,997/5,000 values as YYYYMMDD"``), then any warning: a column mostly
            missing after parsing, a comparison training could not estimate.

    Example (a result kept from a run: clusters at a stricter threshold need no re-scoring):
        >>> candidates = pd.DataFrame({"id_l": ["r1", "r3"], "id_r": ["r2", "r4"],
        ...                            "match_probability": [0.9999, 0.97], "match_weight": [13.3, 5.0]})
        >>> result = DedupeResult(pairs=candidates, candidates=candidates, threshold=0.5, model={},
        ...                       clusters=pd.Series([0, 0, 1, 1], index=["r1", "r2", "r3", "r4"]))
        >>> result.cluster_at(0.99).to_dict()
        {'r1': 0, 'r2': 0, 'r3': 1, 'r4': 2}
    """

    pairs: pd.DataFrame
    candidates: pd.DataFrame
    clusters: pd.Series
    threshold: float
    model: dict[str, Any] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def cluster_at(self, threshold: float) -> pd.Series:
        """Cluster ids at another threshold (from the stored candidates, no re-scoring)."""
        return _clusters(self.clusters.index, self.candidates, threshold)


def _check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise RegistryLabError(f"threshold {threshold!r}: must be a match probability between 0 and 1")
    return float(threshold)


def _check_index(df: pd.DataFrame, where: str) -> None:
    if not df.index.is_unique:
        dup = df.index[df.index.duplicated()][0]
        raise RegistryLabError(f"{where}: index label {dup!r} occurs more than once; pairs are reported by index label")


def _clusters(index: pd.Index, candidates: pd.DataFrame, threshold: float) -> pd.Series:
    pos = pd.Series(np.arange(len(index)), index=index)
    keep = candidates[candidates["match_probability"] >= threshold]
    labels = connected_clusters(len(index), pos[keep["id_l"]].to_numpy(), pos[keep["id_r"]].to_numpy())
    return pd.Series(labels, index=index, name="cluster_id")


def dedupe(df: pd.DataFrame, columns: Mapping[str, str], *, threshold: float = DEFAULT_THRESHOLD,
           backend: str = "duckdb", plain: bool = False, seed: int = 1) -> DedupeResult:
    """Find the rows of ``df`` that are the same person and cluster them.

    Args:
        df: one row per record; index labels identify records in the result.
        columns: ``{role: column}``, e.g. ``{"family_name": "surname", "birth_date": "dob"}``.
        threshold: link pairs with ``match_probability >= threshold`` (default 0.5).
        backend: ``"duckdb"`` (default) or ``"spark"`` (pyspark local mode; needs Java).
        plain: use Splink's out-of-the-box comparisons instead of ours.
        seed: seed of the random sampling that estimates u probabilities.

    Returns:
        A :class:`DedupeResult` with ``pairs``, ``candidates``, ``clusters``, ``model``.

    Example (dates of birth in two formats, and a day–month swap):
        >>> df = pd.DataFrame({"surname": ["Lee", "Lee", "Khan", "Khan"],
        ...                    "dob": ["1950-01-02", "02/01/1950", "1960-05-06", "1960-06-05"]},
        ...                   index=["r1", "r2", "r3", "r4"])
        >>> res = dedupe(df, columns={"family_name": "surname", "birth_date": "dob"})
        >>> print(res.pairs.to_string())
          id_l id_r  match_probability  match_weight
        0   r1   r2           0.999919     13.583553
        1   r3   r4           0.999463     10.861087
        >>> res.clusters.to_dict()
        {'r1': 0, 'r2': 0, 'r3': 1, 'r4': 1}
        >>> res.notes[1]
        "birth_date ('dob'): parsed 4/4 values as 3 as YYYY-MM-DD and 1 as DD/MM/YYYY"
    """
    threshold = _check_threshold(threshold)
    _check_index(df, "dedupe input")
    frame, found = mdl.prepare_report(df, columns)
    notes = _report_formats(found, "dedupe")
    frame = _drop_empty([frame], [found], "dedupe")[0]
    scored = mdl.score(frame, link_type="dedupe_only", backend=backend, plain=plain,
                       min_probability=MIN_PROBABILITY, seed=seed, generic=True)
    notes += _report_training(scored.notes, frame, "dedupe")
    labels = df.index.to_numpy()
    cand = pd.DataFrame({
        "id_l": labels[scored.pairs["unique_id_l"].to_numpy()],
        "id_r": labels[scored.pairs["unique_id_r"].to_numpy()],
        "match_probability": scored.pairs["match_probability"].to_numpy(),
        "match_weight": scored.pairs["match_weight"].to_numpy(),
    })
    clusters = _clusters(df.index, cand, threshold)
    pairs = cand[cand["match_probability"] >= threshold].reset_index(drop=True)
    if len(pairs) == 0 and len(df) > 1:
        notes += _explain_empty([frame], threshold, cand, "dedupe")
    return DedupeResult(pairs=pairs, candidates=cand, clusters=clusters, threshold=threshold,
                        model=scored.model, notes=notes)


def _warn(message: str) -> None:
    LOG.warning(message)
    warnings.warn(message, RegistryLabWarning, stacklevel=3)


def _report_formats(found: list[fmt.Detected], where: str) -> list[str]:
    """Log what format detection found; warn (one sentence) on a mostly missing column."""
    notes = []
    for det in found:
        LOG.info("%s: %s", where, det.note)
        notes.append(det.note)
        if det.problem:
            msg = f"{where}: {det.problem}"
            _warn(msg)
            notes.append(msg)
    return notes


#: Matching-frame columns that belong to each role (dropped together when a role has no value).
_ROLE_COLUMNS = {"nhs_number": ["nhs_number"], "given_name": ["given_name", "given_formals", "given_block"],
                 "family_name": ["family_name"], "birth_date": ["birth_date", "dob_swap"], "sex": ["sex"],
                 "postcode": ["postcode", "postcode_outward"], "address": ["address"]}


def _drop_empty(frames: list[pd.DataFrame], found: list[list[fmt.Detected]], where: str) -> list[pd.DataFrame]:
    """Leave out a role with no usable value in some table (already warned about); raise when none is left."""
    empty = sorted({d.role for f in found for d in f if d.parsed == 0})
    if not empty:
        return frames
    out = [f.drop(columns=[c for r in empty for c in _ROLE_COLUMNS[r] if c in f.columns]) for f in frames]
    if not mdl.roles_of(out[0]):
        raise RegistryLabError(f"{where}: no mapped column has a usable value ({', '.join(empty)} parsed to nothing); "
                               "see the warnings above for example values")
    LOG.warning("%s: left out %s (no usable value)", where, ", ".join(empty))
    return out


def _report_training(train_notes: list[str], frame: pd.DataFrame, where: str) -> list[str]:
    """Warn on every comparison training could not estimate, with two example values."""
    out = []
    for note in train_notes:
        msg = f"{where}: {note}"
        role = next((r for r in mdl.ROLES if f"'{r}'" in note), None)
        if role is not None and "not estimated" in note:
            vals = frame[role].dropna().drop_duplicates().head(2).tolist() if role in frame.columns else []
            msg += f"; example values {' and '.join(repr(v) for v in vals) or 'none (all missing)'}"
            _warn(msg)
        else:  # e.g. too few records to train: the priors are used, which is expected on tiny data
            LOG.info(msg)
        out.append(msg)
    return out


def _explain_empty(frames: list[pd.DataFrame], threshold: float, cand: pd.DataFrame, where: str) -> list[str]:
    """Why no pair reached the threshold, as one warned sentence."""
    best = float(cand["match_probability"].max()) if len(cand) else None
    shared = 0
    if "nhs_number" in frames[0].columns:
        if len(frames) == 2:
            shared = int(frames[0]["nhs_number"].dropna().isin(set(frames[1]["nhs_number"].dropna())).sum())
        else:
            shared = int(frames[0]["nhs_number"].dropna().duplicated().sum())
    why = (f"no candidate pair scored above {MIN_PROBABILITY}" if best is None
           else f"the best candidate pair scored {best:.3g}")
    msg = f"{where}: 0 pairs at threshold {threshold}: {why}"
    if shared:
        msg += (f", although {shared:,} records share an exact nhs_number value; the other identifiers "
                "disagree or were not understood (see the notes on each column)")
    _warn(msg)
    return [msg]


def link(left: pd.DataFrame, right: pd.DataFrame, columns: Mapping[str, str], *,
         threshold: float = DEFAULT_THRESHOLD, backend: str = "duckdb", plain: bool = False,
         seed: int = 1, right_columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Pairs of a ``left`` and a ``right`` record that are the same person.

    ``columns`` maps roles to column names (in both frames, unless ``right_columns`` gives the
    right frame's own names). Returns ``id_l`` (left index label), ``id_r`` (right index label),
    ``match_probability`` and ``match_weight`` for pairs with ``match_probability >=
    threshold``, sorted by ``id_l`` then descending probability. A left record can match several
    right records; keep the best with ``pairs.drop_duplicates("id_r")`` if each right record
    is one person. What format detection found in each column, and any warning, is in
    ``pairs.attrs["notes"]`` (and logged on ``registry_lib.linkage``).

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"name": ["Ann Lee", "Bob Stone"], "dob": ["1950-01-02", "1960-03-04"]})
        >>> b = pd.DataFrame({"name": ["Bob Stone"], "dob": ["1960-03-04"]}, index=["x"])
        >>> a[["given", "family"]] = a["name"].str.split(" ", expand=True)
        >>> b[["given", "family"]] = b["name"].str.split(" ", expand=True)
        >>> link(a, b, {"given_name": "given", "family_name": "family", "birth_date": "dob"})[["id_l", "id_r"]].values.tolist()
        [[1, 'x']]
    """
    threshold = _check_threshold(threshold)
    _check_index(left, "link left input")
    _check_index(right, "link right input")
    right_columns = dict(right_columns) if right_columns is not None else dict(columns)
    if set(right_columns) != set(columns):
        raise RegistryLabError("link: `columns` and `right_columns` must name the same roles")
    fl, found_l = mdl.prepare_report(left, columns)
    fr, found_r = mdl.prepare_report(right, right_columns)
    notes = _report_formats(found_l, "link left") + _report_formats(found_r, "link right")
    fl, fr = _drop_empty([fl, fr], [found_l, found_r], "link")
    scored = mdl.score([fl, fr], link_type="link_only", backend=backend, plain=plain,
                       min_probability=MIN_PROBABILITY, seed=seed, generic=True)
    notes += _report_training(scored.notes, fl, "link")
    p = scored.pairs
    flip = p["source_dataset_l"].astype(str) != "left_input"
    uid_left = np.where(flip, p["unique_id_r"], p["unique_id_l"])
    uid_right = np.where(flip, p["unique_id_l"], p["unique_id_r"])
    out = pd.DataFrame({
        "id_l": left.index.to_numpy()[uid_left],
        "id_r": right.index.to_numpy()[uid_right],
        "match_probability": p["match_probability"].to_numpy(),
        "match_weight": p["match_weight"].to_numpy(),
        "_l": uid_left, "_r": uid_right,
    })
    cand = out
    out = out[out["match_probability"] >= threshold]
    if len(out) == 0 and len(left) and len(right):
        notes += _explain_empty([fl, fr], threshold, cand, "link")
    out = out.sort_values(["_l", "match_probability", "_r"], ascending=[True, False, True])
    out = out.drop(columns=["_l", "_r"]).reset_index(drop=True)
    out.attrs["notes"] = notes
    return out
