"""The Fellegi–Sunter model: comparisons, blocking rules, EM training and scoring with Splink.

Identifier *roles* (all optional): ``nhs_number`` (any stable person identifier),
``given_name``, ``family_name``, ``birth_date``, ``sex``, ``postcode``, ``address``.
:func:`prepare` turns a user frame into the standardised matching frame; :func:`score` trains a
Splink model on it (u by random sampling, m and the match prior by EM) and returns the scored
candidate pairs.

Comparisons (levels from most to least specific, each also has a null level):

============  ===========================================================================
nhs_number    exact · one edit or transposition (Damerau–Levenshtein ≤ 1) · else
given_name    exact (term-frequency adjusted) · nickname (share a formal name, e.g. Bob and
              Robert) · Jaro–Winkler ≥ 0.92 · ≥ 0.80 · else
family_name   exact (term-frequency adjusted) · Jaro–Winkler ≥ 0.92 · ≥ 0.80 · else
birth_date    exact · day and month swapped · one character different · same year and month
              · same year · else
sex           exact · else
postcode      exact (term-frequency adjusted) · same outward code (district) · else
address       exact (term-frequency adjusted) · Jaro–Winkler ≥ 0.90 · else
============  ===========================================================================

``plain=True`` uses Splink's out-of-the-box comparisons instead (NameComparison,
DateOfBirthComparison, PostcodeComparison, ExactMatch): the bench compares the two.

Example:
    >>> import pandas as pd
    >>> people = pd.DataFrame({"first": ["Robert", "Bob"], "last": ["Smith", "Smith"]})
    >>> prepare(people, {"given_name": "first", "family_name": "last"})[["given_name", "given_block"]].values.tolist()
    [['robert', 'robert'], ['bob', 'robert']]
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from registry_lib import engines
from registry_lib.errors import RegistryLabError
from registry_lib.linkage import formats as fmt
from registry_lib.linkage import standardise as std

ROLES = ("nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode", "address")
BACKENDS = engines.BACKENDS

#: Prior m probabilities (share of true matches in each non-null level, most specific first).
#: Starting values only: EM re-estimates them from the data. Assumptions, informed by the
#: identifier error rates in params/epidemiology/feeds.yaml.
M_PRIORS: dict[str, list[float]] = {
    "nhs_number": [0.97, 0.005, 0.002],
    "given_name": [0.905, 0.04, 0.035, 0.015, 0.005],
    "family_name": [0.93, 0.03, 0.01, 0.03],
    "birth_date": [0.990, 0.003, 0.003, 0.001, 0.001, 0.002],
    "sex": [0.995, 0.005],
    "postcode": [0.85, 0.07, 0.08],
    "address": [0.80, 0.10, 0.10],
}
#: Prior u probabilities (share of non-matching pairs in each level). Used as they are when the
#: data are too small to estimate u by random sampling. Assumptions for a general population.
U_PRIORS: dict[str, list[float]] = {
    "nhs_number": [1e-7, 1e-5, 0.99998990],
    "given_name": [0.01, 0.002, 0.003, 0.03, 0.955],
    "family_name": [0.002, 0.002, 0.02, 0.976],
    "birth_date": [5e-5, 1e-6, 5e-4, 1e-3, 0.012, 0.986449],
    "sex": [0.5, 0.5],
    "postcode": [1e-4, 0.005, 0.9949],
    "address": [1e-4, 1e-3, 0.9989],
}
#: Nickname level: equal keys (first formal name), or one name's key among the other's formal
#: names (see registry_lib.linkage.standardise.nickname_sets). Plain string functions, so it
#: runs on DuckDB and Spark alike and far faster than array intersection.
NICKNAME_SQL = ("given_block_l = given_block_r "
                "OR instr(given_formals_r, concat('|', given_block_l, '|')) > 0 "
                "OR instr(given_formals_l, concat('|', given_block_r, '|')) > 0")
#: Below this many records the model keeps its priors: EM and u sampling need data.
MIN_TRAIN_ROWS = 200


# ---------------------------------------------------------------------------------------------
# Preparing input
# ---------------------------------------------------------------------------------------------
def check_columns(df: pd.DataFrame, columns: Mapping[str, str], where: str = "input") -> dict[str, str]:
    """Validate a ``{role: column}`` mapping against a frame; return it as a plain dict.

    Example:
        >>> people = pd.DataFrame({"surname": ["Lee"], "dob": ["1950-01-02"]})
        >>> check_columns(people, {"family_name": "surname", "birth_date": "dob"})
        {'family_name': 'surname', 'birth_date': 'dob'}
        >>> check_columns(people, {"surname": "surname"})
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: input: unknown role(s) surname; roles are nhs_number, given_name, family_name, birth_date, sex, postcode, address
        >>> check_columns(people, {"birth_date": "date_of_birth"}, where="dedupe input")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: dedupe input: column(s) date_of_birth named in `columns` are not in the frame
    """
    columns = dict(columns)
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise RegistryLabError(f"{where}: unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    missing = sorted(c for c in columns.values() if c not in df.columns)
    if missing:
        raise RegistryLabError(f"{where}: column(s) {', '.join(missing)} named in `columns` are not in the frame")
    if not columns:
        raise RegistryLabError(f"{where}: `columns` must name at least one role, e.g. {{'family_name': 'surname'}}")
    return columns


def prepare(df: pd.DataFrame, columns: Mapping[str, str], *, nhs_check_digit: bool = False) -> pd.DataFrame:
    """Standardise the role columns of ``df`` into the matching frame (same row order).

    ``nhs_check_digit=True`` treats NHS numbers failing the modulus-11 check as missing (the
    registry does; the generic API accepts any identifier). Formats are detected per column
    (:mod:`registry_lib.linkage.formats`); :func:`prepare_report` also returns what was found.

    Example (a bad check digit becomes missing; a month-first date in a day-first column keeps
    its impossible shape and still meets its true date on the day–month swap key):
        >>> people = pd.DataFrame({"nhs": ["943 476 5919", "9434765918"], "dob": ["23/04/1961", "04/23/1961"]})
        >>> print(prepare(people, {"nhs_number": "nhs", "birth_date": "dob"}, nhs_check_digit=True).to_string())
           unique_id  nhs_number  birth_date  dob_swap
        0          0  9434765919  1961-04-23  19610423
        1          1        <NA>  1961-23-04  19610423
    """
    return prepare_report(df, columns, nhs_check_digit=nhs_check_digit)[0]


def prepare_report(df: pd.DataFrame, columns: Mapping[str, str], *,
                   nhs_check_digit: bool = False) -> tuple[pd.DataFrame, list[fmt.Detected]]:
    """:func:`prepare`, plus what format detection found in each mapped column.

    Example:
        >>> frame, found = prepare_report(pd.DataFrame({"dob": ["19151111", "19600101"]}), {"birth_date": "dob"})
        >>> frame["birth_date"].tolist(), found[0].note
        (['1915-11-11', '1960-01-01'], "birth_date ('dob'): parsed 2/2 values as YYYYMMDD")
    """
    columns = check_columns(df, columns)
    n = len(df)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["unique_id"] = np.arange(n, dtype=np.int64)
    found: list[fmt.Detected] = []
    if "nhs_number" in columns:
        nhs, det = fmt.identifiers(df[columns["nhs_number"]], column=columns["nhs_number"])
        if nhs_check_digit:
            from registry_lib.nhs_number import is_valid_nhs_number

            nhs = nhs.where(is_valid_nhs_number(nhs))
        out["nhs_number"] = nhs
        found.append(det)
    if "given_name" in columns:
        given = std.clean_name(df[columns["given_name"]]).reset_index(drop=True)
        sets, key = std.nickname_sets(given)
        out["given_name"] = given
        out["given_formals"] = sets
        out["given_block"] = key
        found.append(fmt.names(given, df[columns["given_name"]], role="given_name", column=columns["given_name"]))
    if "family_name" in columns:
        family = std.clean_name(df[columns["family_name"]]).reset_index(drop=True)
        out["family_name"] = family
        found.append(fmt.names(family, df[columns["family_name"]], role="family_name",
                               column=columns["family_name"]))
    if "birth_date" in columns:
        dob, det = fmt.birth_dates(df[columns["birth_date"]], column=columns["birth_date"])
        out["birth_date"] = dob
        out["dob_swap"] = std.dob_swap_key(dob)
        found.append(det)
    if "sex" in columns:
        sex, det = fmt.sex(df[columns["sex"]], column=columns["sex"])
        out["sex"] = sex
        found.append(det)
    if "postcode" in columns:
        pc, part, det = fmt.postcodes(df[columns["postcode"]], column=columns["postcode"])
        out["postcode"] = pc
        out["postcode_outward"] = part
        found.append(det)
    if "address" in columns:
        raw = df[columns["address"]].reset_index(drop=True)
        addr = (fmt._as_text(raw).str.lower()
                .str.replace(r"[^a-z0-9 ]", "", regex=True).str.replace(r"\s+", " ", regex=True)
                .str.strip())
        addr = addr.where(addr.str.len() > 0).astype(std.TEXT)
        out["address"] = addr
        found.append(fmt.names(addr, raw, role="address", column=columns["address"]))
    return out, found


def roles_of(frame: pd.DataFrame) -> list[str]:
    """The roles present in a prepared matching frame.

    Example:
        >>> frame = prepare(pd.DataFrame({"pc": ["LS6 2AB"], "first": ["Ann"]}), {"postcode": "pc", "given_name": "first"})
        >>> list(frame.columns), roles_of(frame)
        (['unique_id', 'given_name', 'given_formals', 'given_block', 'postcode', 'postcode_outward'], ['given_name', 'postcode'])
    """
    return [r for r in ROLES if r in frame.columns]


# ---------------------------------------------------------------------------------------------
# Comparisons and blocking rules
# ---------------------------------------------------------------------------------------------
def build_comparisons(roles: Sequence[str], *, plain: bool = False, tf: bool = True,
                      generic: bool = False) -> list[Any]:
    """Splink comparisons for the roles present (see the module table).

    ``generic=True`` (the :func:`~registry_lib.linkage.dedupe` / :func:`~registry_lib.linkage.link`
    API on data that is not ours) adds what other people's data need: a *names swapped* level
    (given and family name exchanged, both comparisons), a *one character different* postcode
    level (a typo in any country's postcode) and lets EM estimate how often the identifier
    disagrees within a person (the registry fixes it at a small prior: NHS numbers rarely do).

    Example:
        >>> family, dob = build_comparisons(["family_name", "birth_date"])
        >>> [level.label_for_charts for level in family.get_comparison("duckdb").comparison_levels]
        ['family_name is NULL', 'exact', 'Jaro-Winkler distance of family_name >= 0.92', 'Jaro-Winkler distance of family_name >= 0.8', 'All other comparisons']
        >>> given = build_comparisons(["given_name", "family_name", "birth_date"], generic=True)[0]
        >>> [level.label_for_charts for level in given.get_comparison("duckdb").comparison_levels][1:4]
        ['exact', 'names swapped', 'nickname']
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    if plain:
        return _plain_comparisons(roles)

    # (only with another identifier: EM blocked on a name would deactivate both name comparisons)
    swap = (generic and "given_name" in roles and "family_name" in roles
            and bool(set(roles) & {"nhs_number", "birth_date", "postcode"}))
    swap_sql = "given_name_l = family_name_r AND family_name_l = given_name_r"
    m_priors = dict(M_PRIORS)
    u_priors = dict(U_PRIORS)
    if swap:
        m_priors["given_name"] = [0.9, 0.01, 0.04, 0.03, 0.015, 0.005]
        u_priors["given_name"] = [0.01, 1e-5, 0.002, 0.003, 0.03, 0.95499]
        m_priors["family_name"] = [0.92, 0.01, 0.03, 0.01, 0.03]
        u_priors["family_name"] = [0.002, 0.01, 0.002, 0.02, 0.966]
    if generic and "postcode" in roles:
        m_priors["postcode"] = [0.85, 0.07, 0.03, 0.05]
        u_priors["postcode"] = [1e-4, 0.005, 0.001, 0.9939]

    def levels(name: str, items: list[Any]) -> Any:
        null, *rest = items
        for lvl, m, u in zip(rest, m_priors[name], u_priors[name], strict=True):
            lvl.configure(m_probability=m, u_probability=u)
        return cl.CustomComparison(comparison_levels=[null, *rest], output_column_name=name,
                                   comparison_description=name)

    def exact(col: str, label: str, tf_col: bool = True) -> Any:
        lvl = cll.ExactMatchLevel(col).configure(label_for_charts=label)
        if tf and tf_col:
            lvl.configure(tf_adjustment_column=col, tf_minimum_u_value=0.001)
        return lvl

    out = []
    if "nhs_number" in roles:
        out.append(levels("nhs_number", [
            cll.NullLevel("nhs_number"), exact("nhs_number", "exact", tf_col=False),
            cll.DamerauLevenshteinLevel("nhs_number", 1).configure(label_for_charts="one edit or transposition"),
            # never 0: a wrong but valid number on one record must not veto an otherwise clear match
            cll.ElseLevel().configure(fix_m_probability=not generic)]))
    if "given_name" in roles:
        out.append(levels("given_name", [
            cll.NullLevel("given_name"), exact("given_name", "exact"),
            *([cll.CustomLevel(swap_sql, label_for_charts="names swapped")] if swap else []),
            cll.CustomLevel(NICKNAME_SQL, label_for_charts="nickname"),
            cll.JaroWinklerLevel("given_name", 0.92), cll.JaroWinklerLevel("given_name", 0.80),
            cll.ElseLevel()]))
    if "family_name" in roles:
        out.append(levels("family_name", [
            cll.NullLevel("family_name"), exact("family_name", "exact"),
            # the swap is one event: its evidence counts once, on given_name (Bayes factor 1 here)
            *([cll.CustomLevel(swap_sql, label_for_charts="names swapped (counted on given_name)")
               .configure(fix_m_probability=True, fix_u_probability=True)] if swap else []),
            cll.JaroWinklerLevel("family_name", 0.92), cll.JaroWinklerLevel("family_name", 0.80),
            cll.ElseLevel()]))
    if "birth_date" in roles:
        swap = ("substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4) AND "
                "substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2) AND "
                "substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)")
        out.append(levels("birth_date", [
            cll.NullLevel("birth_date"), exact("birth_date", "exact", tf_col=False),
            cll.CustomLevel(swap, label_for_charts="day and month swapped"),
            cll.DamerauLevenshteinLevel("birth_date", 1).configure(label_for_charts="one character different"),
            cll.CustomLevel("substr(birth_date_l, 1, 7) = substr(birth_date_r, 1, 7)",
                            label_for_charts="same year and month"),
            cll.CustomLevel("substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4)",
                            label_for_charts="same year"),
            cll.ElseLevel()]))
    if "sex" in roles:
        out.append(levels("sex", [cll.NullLevel("sex"), exact("sex", "exact", tf_col=False), cll.ElseLevel()]))
    if "postcode" in roles:
        out.append(levels("postcode", [
            cll.NullLevel("postcode"), exact("postcode", "exact"),
            cll.ExactMatchLevel("postcode_outward").configure(label_for_charts="same outward code"),
            *([cll.DamerauLevenshteinLevel("postcode", 1).configure(label_for_charts="one character different")]
              if generic else []),
            cll.ElseLevel()]))
    if "address" in roles:
        out.append(levels("address", [
            cll.NullLevel("address"), exact("address", "exact"),
            cll.JaroWinklerLevel("address", 0.90), cll.ElseLevel()]))
    return out


def _plain_comparisons(roles: Sequence[str]) -> list[Any]:
    import splink.comparison_library as cl

    out = []
    if "nhs_number" in roles:
        out.append(cl.ExactMatch("nhs_number"))
    if "given_name" in roles:
        out.append(cl.NameComparison("given_name"))
    if "family_name" in roles:
        out.append(cl.NameComparison("family_name"))
    if "birth_date" in roles:
        out.append(cl.DateOfBirthComparison("birth_date", input_is_string=True))
    if "sex" in roles:
        out.append(cl.ExactMatch("sex"))
    if "postcode" in roles:
        out.append(cl.PostcodeComparison("postcode"))
    if "address" in roles:
        out.append(cl.JaroWinklerAtThresholds("address"))
    return out


def prediction_rules(roles: Sequence[str], *, exclude_same_group: bool = False, generic: bool = False) -> list[str]:
    """Blocking rules that generate candidate pairs: each is an equality on a selective key,
    so comparisons grow about linearly with the data. ``exclude_same_group`` drops pairs already
    linked by the deterministic pass (column ``det_group``).

    Example:
        >>> prediction_rules(["family_name", "birth_date"])
        ['l.birth_date = r.birth_date AND l.family_name = r.family_name', 'l.dob_swap = r.dob_swap AND l.family_name = r.family_name']
        >>> prediction_rules(["nhs_number"], exclude_same_group=True)
        ['(l.nhs_number = r.nhs_number) AND l.det_group <> r.det_group']
    """
    r = set(roles)
    has_given, has_family = "given_name" in r, "family_name" in r
    has_dob, has_pc = "birth_date" in r, "postcode" in r
    rules: list[str] = []
    if "nhs_number" in r:
        rules.append("l.nhs_number = r.nhs_number")
    if has_dob and has_family:
        rules.append("l.birth_date = r.birth_date AND l.family_name = r.family_name")
    if has_dob and has_given:
        rules.append("l.birth_date = r.birth_date AND l.given_block = r.given_block")
    if has_dob and has_pc:
        rules.append("l.birth_date = r.birth_date AND l.postcode_outward = r.postcode_outward")
    if has_dob and has_family:
        rules.append("l.dob_swap = r.dob_swap AND l.family_name = r.family_name")
    if has_dob and has_given:
        rules.append("l.dob_swap = r.dob_swap AND l.given_block = r.given_block")
    if has_given and has_family and has_pc:
        rules.append("l.given_block = r.given_block AND l.family_name = r.family_name "
                     "AND l.postcode_outward = r.postcode_outward")
    if has_given and has_family and not has_dob:
        rules.append("l.given_block = r.given_block AND l.family_name = r.family_name")
    if generic and has_family and has_pc:
        rules.append("l.family_name = r.family_name AND l.postcode = r.postcode")
    if generic and has_given and has_family and (has_dob or has_pc or "nhs_number" in r):
        rules.append("l.given_name = r.family_name AND l.family_name = r.given_name")
    if "address" in r:
        rules.append("l.address = r.address")
    if has_dob and not (has_given or has_family or has_pc):
        rules.append("l.birth_date = r.birth_date")
    if not rules:
        for role, col in (("family_name", "family_name"), ("given_name", "given_block"),
                          ("postcode", "postcode"), ("sex", "sex")):
            if role in r:
                rules.append(f"l.{col} = r.{col}")
                break
    if exclude_same_group:
        rules = [f"({rule}) AND l.det_group <> r.det_group" for rule in rules]
    return rules


def training_rules(roles: Sequence[str], *, generic: bool = True) -> list[str]:
    """Blocking rules for EM sessions: each is selective enough that most of its pairs are
    matches (EM is unreliable when non-matches dominate), and together they leave every
    comparison estimated at least once.

    ``generic=False`` (the registry, where NHS numbers are mostly present): the second session
    also requires the same given name, so look-alike people (twins share birth date, family name
    and address but not a given name) cannot teach EM that a different given name is common
    within a person; given names are then estimated on pairs sharing an NHS number only.

    Example:
        >>> training_rules(["given_name", "family_name", "birth_date"])
        ['l.birth_date = r.birth_date AND l.family_name = r.family_name', 'l.given_block = r.given_block AND l.family_name = r.family_name']
        >>> training_rules(["nhs_number", "given_name", "birth_date", "postcode"], generic=False)
        ['l.nhs_number = r.nhs_number', 'l.birth_date = r.birth_date AND l.postcode_outward = r.postcode_outward AND l.given_block = r.given_block']
    """
    r = set(roles)
    has_given, has_family, has_pc = "given_name" in r, "family_name" in r, "postcode" in r
    rules: list[str] = []
    if "nhs_number" in r:
        rules.append("l.nhs_number = r.nhs_number")
    if "birth_date" in r:
        if not generic and "nhs_number" in r and has_pc and has_given:
            rules.append("l.birth_date = r.birth_date AND l.postcode_outward = r.postcode_outward "
                         "AND l.given_block = r.given_block")
        elif has_pc:
            rules.append("l.birth_date = r.birth_date AND l.postcode_outward = r.postcode_outward")
        elif has_family:
            rules.append("l.birth_date = r.birth_date AND l.family_name = r.family_name")
        elif has_given:
            rules.append("l.birth_date = r.birth_date AND l.given_block = r.given_block")
        else:
            rules.append("l.birth_date = r.birth_date")
    if "nhs_number" not in r and "birth_date" in r and (has_given or has_family):
        names = " AND ".join(c for c, ok in (("l.given_block = r.given_block", has_given),
                                              ("l.family_name = r.family_name", has_family)) if ok)
        rules.append(names + (" AND l.postcode_outward = r.postcode_outward" if has_pc else ""))
    if not rules and has_family:
        rules.append("l.family_name = r.family_name")
    return rules


def deterministic_rules(roles: Sequence[str]) -> list[str]:
    """Near-certain rules for estimating the prior probability that two records match.

    Example:
        >>> deterministic_rules(["nhs_number", "birth_date", "sex"])
        ['l.nhs_number = r.nhs_number AND l.birth_date = r.birth_date']
        >>> deterministic_rules(["family_name", "sex"])  # nothing near-certain: the default prior is kept
        []
    """
    r = set(roles)
    if "nhs_number" in r and "birth_date" in r:
        return ["l.nhs_number = r.nhs_number AND l.birth_date = r.birth_date"]
    if {"given_name", "family_name", "birth_date"} <= r:
        return ["l.given_name = r.given_name AND l.family_name = r.family_name AND l.birth_date = r.birth_date"]
    if "nhs_number" in r:
        return ["l.nhs_number = r.nhs_number"]
    if {"given_name", "family_name", "postcode"} <= r:
        return ["l.given_name = r.given_name AND l.family_name = r.family_name AND l.postcode = r.postcode"]
    return []


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------
def java_available() -> bool:
    """True when a ``java`` executable is on the PATH (needed by the Spark backend).

    Example:
        >>> import os, tempfile
        >>> saved = os.environ["PATH"]
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     os.environ["PATH"] = empty  # a PATH without java
        ...     without = java_available()
        >>> os.environ["PATH"] = saved
        >>> without, java_available() == (shutil.which("java") is not None)
        (False, True)
    """
    return shutil.which("java") is not None


_SPARK: dict[str, Any] = {}


def spark_session() -> Any:
    """The Spark session with Splink's similarity UDF jar (created once).

    The cluster comes from standard Spark configuration (``--spark-master``, ``SPARK_MASTER``,
    ``spark-defaults.conf``, ``--spark-conf``; see :mod:`registry_lib.engines`), else
    ``local[2]``; checkpoints go to the shared Spark folder (:func:`engines.spark_workdir`).

    Example (on a machine without Java, the Spark backend says so before starting anything):
        >>> import os, tempfile
        >>> saved = os.environ["PATH"]
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     os.environ["PATH"] = empty
        ...     try:
        ...         spark_session()
        ...     except RegistryLabError as exc:
        ...         print(exc)
        ...     finally:
        ...         os.environ["PATH"] = saved
        backend 'spark': Java is not installed (no `java` on the PATH); use backend='duckdb' or install a Java 17 runtime
    """
    if "session" in _SPARK:
        return _SPARK["session"]
    if not java_available():
        raise RegistryLabError("backend 'spark': Java is not installed (no `java` on the PATH); "
                               "use backend='duckdb' or install a Java 17 runtime")
    from splink.backends.spark import similarity_jar_location

    workdir = engines.spark_workdir()
    spark = engines.spark_session(jars=[similarity_jar_location()],
                                  checkpoint_dir=f"{workdir.rstrip('/')}/checkpoints")
    _SPARK["session"] = spark
    _SPARK["workdir"] = workdir
    return spark


def stop_spark() -> None:
    """Stop the Spark session this process started (a new one is made on next use).

    Example (a stand-in session, so that no Spark starts):
        >>> class Session:
        ...     def stop(self):
        ...         print("stopped")
        >>> _SPARK.update(session=Session(), workdir="/tmp/spark")
        >>> stop_spark()
        stopped
        >>> sorted(_SPARK), stop_spark()  # forgotten: a second call has nothing to stop
        ([], None)
    """
    spark = _SPARK.pop("session", None)
    _SPARK.pop("workdir", None)
    if spark is not None:
        spark.stop()


def _spark_partitions(spark: Any) -> int:
    """Partitions for repartitioning: the cluster's default parallelism (2 on local[2])."""
    try:
        return max(2, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - a session without the property
        return 2


def _to_spark(frame: pd.DataFrame, name: str) -> Any:
    """``frame`` written as Parquet to the shared Spark folder and read back by the executors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    spark = spark_session()
    folder = f"{_SPARK['workdir'].rstrip('/')}/input"
    if "://" in folder:  # an object store or HDFS path: let Spark write it from the driver
        path = f"{folder}/{name}"
        spark.createDataFrame(frame).write.mode("overwrite").parquet(path)
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = f"{folder}/{name}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return spark.read.parquet(path)


def spark_call_folder(prefix: str, what: str) -> Path:
    """A new, empty subfolder ``<prefix>_<n>`` of the shared Spark folder for one call's exchange
    files (Spark caches file listings by path, so every call gets its own name).

    ``what`` names the work in the one sentence that refuses a URL (``s3a://``, ``hdfs://``):
    the driver reads and writes these files on a file system path.

    Example (a stand-in for the folder a Spark session sets):
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _SPARK.update(workdir=d, calls=0)
        ...     print(spark_call_folder("cubes", "release cubes").name)
        ...     _SPARK.update(workdir="s3a://bucket/rl")
        ...     try:
        ...         spark_call_folder("cubes", "release cubes")
        ...     except RegistryLabError as e:
        ...         print(e)
        cubes_1
        --spark-dir s3a://bucket/rl: release cubes on Spark need a shared file system path (NFS, a mounted volume), not a URL
        >>> _ = [_SPARK.pop(k) for k in ("workdir", "calls")]
    """
    workdir = str(_SPARK["workdir"])
    if "://" in workdir:
        raise RegistryLabError(f"--spark-dir {workdir}: {what} on Spark need a shared file system path "
                               "(NFS, a mounted volume), not a URL")
    _SPARK["calls"] = _SPARK.get("calls", 0) + 1
    folder = Path(workdir) / f"{prefix}_{_SPARK['calls']}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _spark_tag() -> str:
    """A new name for one scoring call's exchange files (Spark caches file listings by path)."""
    _SPARK["calls"] = _SPARK.get("calls", 0) + 1
    return f"call{_SPARK['calls']}"


def _from_spark(result: Any, tag: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Scored pairs (``columns`` of them, default all) written as Parquet by the executors to the
    shared folder, read by the driver."""
    import pyarrow.dataset as ds

    folder = f"{_SPARK['workdir'].rstrip('/')}/output/pairs_{tag}"
    sdf = result.as_spark_dataframe()
    if columns is not None:
        sdf = sdf.select(*columns)
    if "://" in folder:
        sdf.write.mode("overwrite").parquet(folder)
        return spark_session().read.parquet(folder).toPandas()
    sdf.write.mode("overwrite").parquet(folder)
    out = ds.dataset(folder, format="parquet").to_table().to_pandas()
    # This call's exchange files are no longer needed (each call has its own names).
    shutil.rmtree(folder, ignore_errors=True)
    for stale in Path(_SPARK["workdir"], "input").glob(f"*_{tag}.parquet"):
        stale.unlink(missing_ok=True)
    return out


def db_api(backend: str) -> Any:
    """A Splink database API for ``backend`` (``duckdb`` or ``spark``).

    Example:
        >>> db_api("duckdb").sql_dialect.sql_dialect_str
        'duckdb'
        >>> db_api("postgres")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: backend 'postgres': choose one of duckdb, spark
    """
    engines.check_backend(backend)
    if backend == "duckdb":
        from splink import DuckDBAPI

        # what pandas already holds counts against the budget: DuckDB gets the rest, and spills
        return DuckDBAPI(connection=engines.duckdb_connect(limit=engines.remaining_memory()))
    from splink import SparkAPI

    spark = spark_session()
    return SparkAPI(spark_session=spark, num_partitions_on_repartition=_spark_partitions(spark),
                    break_lineage_method="persist")


@contextlib.contextmanager
def quiet_splink() -> Iterator[None]:
    """Silence Splink's INFO chatter (training iterations) for the duration.

    Example:
        >>> splink_log = logging.getLogger("splink")
        >>> splink_log.setLevel(logging.INFO)
        >>> with quiet_splink():
        ...     logging.getLevelName(splink_log.level)
        'ERROR'
        >>> logging.getLevelName(splink_log.level)
        'INFO'
        >>> splink_log.setLevel(logging.NOTSET)
    """
    logger = logging.getLogger("splink")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


# ---------------------------------------------------------------------------------------------
# Training and scoring
# ---------------------------------------------------------------------------------------------
@dataclass
class Scored:
    """Scored candidate pairs and the trained model.

    ``pairs`` has ``unique_id_l``, ``unique_id_r`` (and ``source_dataset_l/_r`` when linking
    two tables), ``match_weight``, ``match_probability`` and, when asked for, the comparison
    level of each identifier (``gamma_<role>``). ``model`` is Splink's settings JSON with the
    trained m and u probabilities; ``notes`` lists training steps that could not run.

    Example (linking two tables: each pair says which table each side comes from):
        >>> cols = {"family_name": "last", "birth_date": "dob"}
        >>> left = prepare(pd.DataFrame({"last": ["Smith", "Jones"], "dob": ["1950-02-01", "1961-04-23"]}), cols)
        >>> right = prepare(pd.DataFrame({"last": ["Khan", "Jones"], "dob": ["1972-12-30", "1961-04-23"]}), cols)
        >>> scored = score([left, right], link_type="link_only")
        >>> print(scored.pairs.to_string())
          source_dataset_l  unique_id_l source_dataset_r  unique_id_r  match_weight  match_probability
        0       left_input            1      right_input            1     13.583553           0.999919
        >>> scored.model["link_type"], scored.notes
        ('link_only', ['4 records: fewer than 200, so the prior m and u probabilities are used without training'])
    """

    pairs: pd.DataFrame
    model: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def score(tables: pd.DataFrame | list[pd.DataFrame], *, link_type: str = "dedupe_only",
          backend: str = "duckdb", plain: bool = False, min_probability: float = 0.01,
          rules: list[str] | None = None, keep_gammas: bool = False, seed: int = 1,
          max_u_pairs: float = 1e6, generic: bool = False) -> Scored:
    """Train a Fellegi–Sunter model on prepared frame(s) and score the candidate pairs.

    Steps: prior match probability from near-deterministic rules; u probabilities by random
    sampling (seeded); m probabilities by EM over the training blocking rules; prediction over
    ``rules`` (default :func:`prediction_rules`), keeping pairs with probability ≥
    ``min_probability``. Training steps that cannot run on the data (e.g. a tiny frame) keep
    the prior values and are listed in ``Scored.notes``.

    Example (three records: too few to train, so the prior m and u probabilities score them):
        >>> people = pd.DataFrame({"last": ["Smith", "Smith", "Jones"], "dob": ["1950-02-01", "1950-02-01", "1961-04-23"]})
        >>> frame = prepare(people, {"family_name": "last", "birth_date": "dob"})
        >>> print(score(frame, keep_gammas=True).pairs.to_string())
           unique_id_l  unique_id_r  match_weight  match_probability  gamma_family_name  gamma_birth_date
        0            0            1     13.753478           0.999928                  3                 5
    """
    from splink import SettingsCreator

    frames = tables if isinstance(tables, list) else [tables]
    roles = roles_of(frames[0])
    total = sum(len(f) for f in frames)
    comparisons = build_comparisons(roles, plain=plain, generic=generic)
    rules = rules if rules is not None else prediction_rules(roles, generic=generic)
    settings = SettingsCreator(
        link_type=link_type, comparisons=comparisons,
        blocking_rules_to_generate_predictions=rules,
        retain_matching_columns=keep_gammas, retain_intermediate_calculation_columns=keep_gammas,
        probability_two_random_records_match=max(1.0 / max(total, 2), 1e-7),
        em_convergence=0.001, max_iterations=25,
    )
    notes: list[str] = []
    with quiet_splink():
        trained: SettingsCreator | dict[str, Any] = settings
        if total >= MIN_TRAIN_ROWS:
            try:
                trained = _with_u_from_sample(frames, settings, link_type=link_type, backend=backend,
                                              max_pairs=max_u_pairs, seed=seed)
            except Exception as exc:  # noqa: BLE001 - Splink raises plain Exceptions for tiny data
                notes.append(f"u probabilities kept at their priors ({_short(exc)})")
        tag = _spark_tag() if backend == "spark" else ""
        linker = _linker(frames, trained, backend, tag)
        if total < MIN_TRAIN_ROWS:
            notes.append(f"{total} records: fewer than {MIN_TRAIN_ROWS}, so the prior m and u "
                         "probabilities are used without training")
        det = deterministic_rules(roles) if total >= MIN_TRAIN_ROWS else []
        if det:
            try:
                linker.training.estimate_probability_two_random_records_match(det, recall=0.9)
            except Exception as exc:  # noqa: BLE001 - Splink raises plain Exceptions for tiny data
                notes.append(f"prior match probability kept at its default ({_short(exc)})")
        for rule in (training_rules(roles, generic=generic) if total >= MIN_TRAIN_ROWS else []):
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    rule, estimate_without_term_frequencies=True)
            except Exception as exc:  # noqa: BLE001
                notes.append(f"EM on {rule!r} skipped ({_short(exc)})")
        if total >= MIN_TRAIN_ROWS:
            notes += _unestimated(linker)
        result = linker.inference.predict(threshold_match_probability=min_probability)
        # Only the columns kept (ids, weights, gammas) leave the engine: the matching columns
        # retained for the gammas would be millions of Python strings on both sides of each pair.
        kept = _kept_columns([c.unquote().name for c in result.columns], keep_gammas)
        pairs = (_from_spark(result, tag, kept) if backend == "spark"
                 else result.as_duckdbpyrelation().select(*kept).to_arrow_table().to_pandas())
        model = linker.misc.save_model_to_json()
        with contextlib.suppress(Exception):
            result.drop_table_from_database_and_remove_from_cache()
    pairs = _tidy_pairs(pairs, keep_gammas)
    return Scored(pairs=pairs, model=model, notes=notes)


def _linker(frames: list[pd.DataFrame], settings: Any, backend: str, tag: str) -> Any:
    """A Splink linker over ``frames`` (two frames: a link between them) on ``backend``."""
    from splink import Linker

    inputs: list[Any] = frames
    if backend == "spark":
        inputs = [_to_spark(f, f"frame{i}_{tag}") for i, f in enumerate(frames)]
    return Linker(inputs if len(inputs) > 1 else inputs[0], settings, db_api=db_api(backend),
                  set_up_basic_logging=False,
                  **({"input_table_aliases": ["left_input", "right_input"]} if len(frames) > 1 else {}))


def u_sample(frames: list[pd.DataFrame], *, link_type: str, max_pairs: float, seed: int) -> list[pd.DataFrame]:
    """The records u probabilities are estimated from: drawn from ``seed``, the same on every engine.

    Splink draws its u sample in engine-specific SQL (a Bernoulli sample on DuckDB,
    ``ORDER BY rand(seed)`` on Spark), so the same seed gave different u probabilities on the two
    engines and, at national scale, a few different links. The sample is drawn here instead, with
    Splink's size: records whose pairs number about ``max_pairs`` (every record when there are
    fewer), the same share of each frame when two frames are linked; rows keep their order.

    Example (2,000 records; about 1,000 pairs need 45 of them):
        >>> frame = pd.DataFrame({"unique_id": np.arange(2000)})
        >>> sample = u_sample([frame], link_type="dedupe_only", max_pairs=1000, seed=1)[0]
        >>> len(sample), sample["unique_id"].is_monotonic_increasing
        (45, True)
        >>> sample.equals(u_sample([frame], link_type="dedupe_only", max_pairs=1000, seed=1)[0])
        True
        >>> len(u_sample([frame.head(30)], link_type="dedupe_only", max_pairs=1000, seed=1)[0])
        30
    """
    sizes = [len(f) for f in frames]
    if link_type == "link_only" and len(frames) == 2:
        share = (max_pairs / max(sizes[0] * sizes[1], 1)) ** 0.5
    else:  # Splink's rows for n pairs: r(r - 1)/2 = n
        share = 0.5 * ((8 * max_pairs + 1) ** 0.5 + 1) / max(sum(sizes), 1)
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        k = min(len(f), int(round(min(share, 1.0) * len(f))))
        rows = np.sort(rng.choice(len(f), size=k, replace=False)) if k < len(f) else np.arange(len(f))
        out.append(f.iloc[rows].reset_index(drop=True))
    return out


def _with_u_from_sample(frames: list[pd.DataFrame], settings: Any, *, link_type: str, backend: str,
                        max_pairs: float, seed: int) -> dict[str, Any]:
    """``settings`` with u probabilities counted over every pair of :func:`u_sample` (on ``backend``)."""
    sample = u_sample(frames, link_type=link_type, max_pairs=max_pairs, seed=seed)
    n = sum(len(f) for f in sample)
    trainer = _linker(sample, settings, backend, _spark_tag() if backend == "spark" else "")
    # More pairs allowed than the sample has: Splink takes all of them, with no sampling of its
    # own, so no seed (with one, Splink sorts its input first, which Spark 3.5 fails to plan here).
    trainer.training.estimate_u_using_random_sampling(max_pairs=float(n) * n + 1)
    return trainer.misc.save_model_to_json()


def _unestimated(linker: Any) -> list[str]:
    """Comparisons none of whose levels training could estimate (Splink: 'level not observed')."""
    from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT

    out = []
    for comp in linker._settings_obj.comparisons:
        levels = [cl for cl in comp.comparison_levels if not cl.is_null_level]
        if not levels:
            continue
        m_bad = all(getattr(cl, "_m_probability", None) == LEVEL_NOT_OBSERVED_TEXT or cl._fix_m_probability
                    for cl in levels)
        u_bad = all(getattr(cl, "_u_probability", None) == LEVEL_NOT_OBSERVED_TEXT for cl in levels)
        if m_bad or u_bad:
            which = " and ".join(w for w, bad in (("m", m_bad), ("u", u_bad)) if bad)
            out.append(f"comparison '{comp.output_column_name}': {which} probabilities not estimated "
                       "(no training pair had a value on both sides), so its priors are used")
    return out


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _kept_columns(columns: list[str], keep_gammas: bool) -> list[str]:
    """The columns of Splink's predictions that the scored pairs keep, in their order.

    Example:
        >>> _kept_columns(["match_weight", "match_probability", "unique_id_l", "unique_id_r",
        ...                "sex_l", "sex_r", "gamma_sex", "bf_sex"], keep_gammas=True)
        ['unique_id_l', 'unique_id_r', 'match_weight', 'match_probability', 'gamma_sex']
    """
    keep = [c for c in ("source_dataset_l", "unique_id_l", "source_dataset_r", "unique_id_r") if c in columns]
    keep += ["match_weight", "match_probability"]
    if keep_gammas:
        keep += [c for c in columns if c.startswith("gamma_")]
    return keep


def _tidy_pairs(pairs: pd.DataFrame, keep_gammas: bool) -> pd.DataFrame:
    out = pairs[_kept_columns(list(pairs.columns), keep_gammas)].copy()
    out["unique_id_l"] = out["unique_id_l"].astype(np.int64)
    out["unique_id_r"] = out["unique_id_r"].astype(np.int64)
    # Rounded so that floating-point summation order (threads) cannot change the bytes written.
    out["match_weight"] = out["match_weight"].astype(float).round(6)
    out["match_probability"] = out["match_probability"].astype(float).round(9)
    for c in out.columns:
        if c.startswith("gamma_"):
            out[c] = out[c].astype(np.int8)
    sort = [c for c in ("source_dataset_l", "unique_id_l", "source_dataset_r", "unique_id_r") if c in out.columns]
    return out.sort_values(sort, ignore_index=True)
