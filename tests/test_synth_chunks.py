"""Out-of-core synth (issue 17): a cohort written chunk by chunk is whole, consistent and
deterministic, whatever the memory setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from registry_lib.errors import RegistryLabError
from registry_lib.synth import cohort as C
from registry_lib.synth import tables as T
from registry_lib.synth.chunks import area_chunks, merge_effects, write_chunked


def _chunked(out: Path, budget: int, chunk_areas: int = 40) -> dict:
    cfg = C.load_config("params/cohort/small.yaml", years=(2019, 2020))
    cfg["chunk_areas"] = chunk_areas
    return write_chunked(C.setup(cfg, C._Timer(quiet=True)), out, budget=budget)


@pytest.fixture(scope="module")
def chunked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chunks") / "two-held"
    sizes = _chunked(out, budget=8 * 2**30)
    assert sizes["chunks"] == 4
    return out


def test_ids_continue_across_chunks_and_feeds_match_their_truth(chunked: Path) -> None:
    truth = {n: pd.read_parquet(chunked / "truth" / f"{n}.parquet") for n in T.TRUTH}
    for name, col in (("patients", "patient_id"), ("tumours", "tumour_id"), ("treatments", "treatment_id")):
        assert truth[name][col].tolist() == list(range(1, len(truth[name]) + 1))
    assert truth["patients"]["nhs_number"].is_unique
    assert truth["tumours"]["patient_id"].isin(truth["patients"]["patient_id"]).all()
    rt = truth["record_truth"]
    assert not rt.duplicated(["feed", "record_id"]).any()
    for name in T.FEEDS:
        feed = pd.read_parquet(chunked / "feeds" / f"{name}.parquet")
        if "record_id" in feed:
            assert feed["record_id"].is_unique
            assert set(feed["record_id"]) == set(rt.loc[rt["feed"] == name, "record_id"])
    sizes = json.loads((chunked / "cohort.json").read_text())["sizes"]
    assert sizes["patients"] == len(truth["patients"]) and sizes["areas"] == 148


def test_effects_are_pooled_over_chunks(chunked: Path) -> None:
    eff = json.loads((chunked / "truth" / "effects.json").read_text())
    c = eff["cluster"]
    assert c["observed_relative_risk"] == round(c["observed_within_radius"] / c["expected_without_effect"], 4)
    assert eff["cpes"]["outlier_trust"] is not None and 0 < eff["cpes"]["response_rate"] < 1


def test_same_files_whatever_the_memory(chunked: Path, tmp_path: Path) -> None:
    _chunked(tmp_path / "one-held", budget=10 * 2**20)   # room for one chunk at a time only
    for stage in ("reference", "truth", "feeds"):
        for f in sorted((chunked / stage).iterdir()):
            assert f.read_bytes() == (tmp_path / "one-held" / stage / f.name).read_bytes(), f.name
    assert (chunked / "cohort.json").read_bytes() == (tmp_path / "one-held" / "cohort.json").read_bytes()


def test_a_memory_too_small_for_a_chunk_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(RegistryLabError, match="raise REGISTRY_LAB_MEMORY or lower chunk_areas"):
        _chunked(tmp_path / "c", budget=2**20)
    assert not (tmp_path / "c").exists()


def test_bad_chunk_areas_is_one_clear_sentence() -> None:
    with pytest.raises(RegistryLabError, match="chunk_areas = 0 is outside"):
        C.resolve_config({"name": "x", "seed": 1, "scale": 0.001, "years": [2019, 2019], "chunk_areas": 0})


def test_chunks_cover_every_area_once() -> None:
    for n, size in ((37_000, 4000), (148, 40), (5, 10)):
        spans = area_chunks(n, size)
        covered = np.concatenate([np.arange(a, b) for a, b in spans])
        assert covered.tolist() == list(range(n)) and max(b - a for a, b in spans) <= size


def test_merge_effects_refuses_an_unpoolable_difference() -> None:
    with pytest.raises(RegistryLabError, match="no pooling rule"):
        merge_effects([{"x": {"mean": 1.0}}, {"x": {"mean": 2.0}}], [{}, {}])
