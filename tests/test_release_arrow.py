"""Releases built with Arrow: the same hashes, row order, opt-outs and risk figures as the pandas
reference implementations they replaced (issue 17: the decade's releases)."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fixtures.registry import example_registry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_lib.keys import hex_digests, keyed_digests, keyed_hash, keyed_hash_arrow
from registry_lib.release.policy import load_policy
from registry_lib.release.records import (
    ArrowFrames,
    _hash_ranks,
    apply_opt_outs,
    apply_opt_outs_arrow,
    build_record_release,
)
from registry_lib.release.risk import _codes, _sizes
from registry_lib.release.run import _columns_used

KEY = bytes.fromhex("3a6bf2b23cb79401d3683a0ac4956397f426effd72f435012c41c2a4a612a227")


def reference_hash(value: str | None, purpose: str, key: bytes = KEY) -> str | None:
    """HMAC-SHA256 of ``value`` under the purpose key, with the standard library's hmac."""
    if value is None:
        return None
    derived = hmac.new(key, purpose.encode(), hashlib.sha256).digest()
    return hmac.new(derived, value.encode(), hashlib.sha256).hexdigest()


def test_keyed_hash_known_values():
    values = ["9434765919", "", "registry:12", "é∂ü", None, "9434765919"]
    expected = [reference_hash(v, "pseudonym") for v in values]
    assert keyed_hash_arrow(pa.array(values), purpose="pseudonym", key=KEY).to_pylist() == expected
    out = keyed_hash(pd.Series(values), purpose="pseudonym", key=KEY)
    assert out.dtype == "string"
    assert [None if pd.isna(v) else v for v in out] == expected
    # integers are hashed as their decimal text, as registry ids always were ('123')
    ids = keyed_hash_arrow(pa.array([123, None, 7], pa.int64()), purpose="direct_care/tumour_id", key=KEY)
    assert ids.to_pylist() == [reference_hash("123", "direct_care/tumour_id"), None,
                               reference_hash("7", "direct_care/tumour_id")]
    assert keyed_hash_arrow(pa.array([], pa.string()), purpose="p", key=KEY).to_pylist() == []


def test_digests_and_hex():
    digests = keyed_digests(pa.array(["a", "b"]), purpose="p", key=KEY)
    assert len(digests) == 64
    assert digests[:32].hex() == reference_hash("a", "p") and digests[32:].hex() == reference_hash("b", "p")
    assert hex_digests(bytes(range(32)) + bytes([255] * 32)).to_pylist() == [bytes(range(32)).hex(), "f" * 64]
    assert hex_digests(b"").to_pylist() == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=30), st.text(max_size=8))
def test_keyed_hash_arrow_is_hmac_sha256(values, purpose):
    got = keyed_hash_arrow(pa.array(values, pa.string()), purpose=purpose, key=KEY).to_pylist()
    assert got == [reference_hash(v, purpose) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=8, max_size=8), st.binary(min_size=24, max_size=24)),
                max_size=40, unique=True),
       st.booleans())
def test_hash_ranks_follow_the_hex_order(parts, shared_prefix):
    # digests sharing their first 8 bytes (when asked) exercise the full 256-bit comparison
    digests = [(parts[0][0] if shared_prefix and parts else a) + b for a, b in parts]
    digests = list(dict.fromkeys(digests))
    raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32)
    ranks = _hash_ranks(raw)
    by_hex = sorted(range(len(digests)), key=lambda i: digests[i].hex())
    assert ranks.tolist() == [by_hex.index(i) for i in range(len(digests))]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(5, 60), st.integers(0, 10_000), st.sampled_from([0.0, 0.3, 1.0]),
       st.sampled_from(["exclude", "include"]), st.booleans())
def test_arrow_opt_outs_match_pandas(n, seed, share, unchecked, applies):
    reg, _ = example_registry(n_patients=n, seed=seed, ndop_share=share)
    kept, removed = apply_opt_outs(reg, applies, unchecked)
    kept_a, removed_a = apply_opt_outs_arrow({t: pa.Table.from_pandas(df, preserve_index=False)
                                              for t, df in reg.items()}, applies, unchecked)
    assert removed_a == removed
    for t in reg:
        assert kept_a[t].to_pandas()["patient_id"].tolist() == kept[t]["patient_id"].tolist()


def _groupby_sizes(frame: pd.DataFrame) -> np.ndarray:
    """Class sizes as the risk report computed them before (pandas groupby over factorized codes)."""
    if frame.shape[1] == 0:
        return np.full(len(frame), len(frame), dtype=np.int64)
    codes = pd.DataFrame({c: pd.factorize(frame[c], use_na_sentinel=True)[0] for c in frame.columns})
    return codes.groupby(list(codes.columns), sort=False)[codes.columns[0]].transform("size").to_numpy()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, 1, 2]), st.sampled_from([None, "C18", "C50", "C61"]),
                          st.integers(0, 3)), max_size=60),
       st.integers(0, 3))
def test_class_sizes_match_the_groupby(rows, drop):
    frame = pd.DataFrame(rows, columns=["sex", "site", "band"], dtype=object)
    frame = frame.drop(columns=frame.columns[:drop])   # 3, 2, 1 or 0 quasi-identifiers
    assert _sizes(_codes(frame), len(frame)).tolist() == _groupby_sizes(frame).tolist()


def test_class_sizes_exact():
    frame = pd.DataFrame({"sex": [1, 1, 2, None, None], "site": ["C18", "C18", "C18", None, None]})
    assert _sizes(_codes(frame), 5).tolist() == [2, 2, 1, 2, 2]
    assert _sizes({}, 3).tolist() == [3, 3, 3]


@pytest.mark.parametrize("policy", ["research_pseudonymised", "direct_care"])
def test_pandas_and_arrow_registries_give_the_same_release(policy):
    reg, ref = example_registry(n_patients=120, seed=3)
    pol = load_policy(policy)
    from_pandas = build_record_release(reg, pol, areas=ref["areas"], key=KEY)
    from_arrow = build_record_release({t: pa.Table.from_pandas(df, preserve_index=False) for t, df in reg.items()},
                                      pol, areas=pa.Table.from_pandas(ref["areas"], preserve_index=False), key=KEY)
    for table in pol.tables:
        assert from_arrow.tables.arrow(table).equals(from_pandas.tables.arrow(table))
    # rows sorted by the patient key, then the other keyed columns (missing last)
    tumour = from_pandas.tables["tumour"]
    key_col = pol.patient_key
    assert tumour[key_col].tolist() == sorted(tumour[key_col].tolist())
    patient_ids = reg["patient"].set_index("patient_id")
    first = tumour[key_col].iloc[0]
    if policy == "direct_care":
        assert first in {reference_hash(str(i), "direct_care/patient_id") for i in patient_ids.index}


def test_arrow_frames():
    frames = ArrowFrames({"a": pa.table({"x": [1, 2, 3]}), "b": pa.table({"y": ["p"]})})
    assert list(frames) == ["a", "b"] and len(frames) == 2 and "a" in frames and "z" not in frames
    assert frames.rows("a") == 3 and frames.arrow("b").num_rows == 1
    assert frames["a"]["x"].tolist() == [1, 2, 3]
    frames.update({"a": pd.DataFrame({"x": [9]})})
    assert frames.arrow("a") is None and frames.rows("a") == 1 and frames["a"]["x"].tolist() == [9]
    del frames["b"]
    assert list(frames) == ["a"]


def test_columns_used():
    used = _columns_used(load_policy("direct_care"))
    assert used["patient"] == {"patient_id", "nhs_number", "given_name", "family_name", "birth_date", "sex",
                               "postcode", "area_id", "death_date", "ndop_opted_out"}
    assert used["treatment"] == {"treatment_id", "patient_id", "tumour_id", "modality", "start_date", "intent",
                                 "regimen", "rt_region", "dose_gy", "fractions", "procedure_code"}
    agg = _columns_used(load_policy("aggregate_publication"))
    assert agg["tumour"] == {"patient_id", "diagnosis_date", "age_at_diagnosis", "site_icd10", "stage", "area_id"}
