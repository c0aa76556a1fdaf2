"""Out-of-core synth: a cohort of more than ``chunk_areas`` areas is generated chunk by chunk.

People never cross areas, so a large cohort (England: 37,000 areas) is split into chunks of
consecutive areas (``chunk_areas`` in the cohort config, default :data:`DEFAULT_CHUNK_AREAS`).
The geography, populations and reference tables are made once (:func:`cohort.setup
<registry_lib.synth.cohort.setup>`); then each chunk draws its incidence, tumours, treatments,
outcomes, identities and feeds from its own random streams (derived from the seed and the chunk
number), its ids (people, tumours, treatments, feed records) continue those of the chunks
before it, its NHS numbers avoid theirs, and its
tables are appended as row groups to the same Parquet files a small cohort writes
(``feeds/notifications.parquet`` ...), so every reader is unchanged. The true effects are pooled
over chunks (:func:`merge_effects`).

The chunks depend only on the config, never on the memory: the same config and seed give
byte-identical files whatever ``REGISTRY_LAB_MEMORY`` is. The memory setting decides whether one
chunk is written while the next is generated (two chunks held) or one at a time, and a chunk that
could not fit is refused with one sentence before anything is drawn.

What is calibrated within a chunk rather than over the whole cohort: the 5-year net survival by
site and stage, the screening and CPES response targets (each chunk hits the national value, so
the whole does too), and twins and same-name look-alikes (pairs within a chunk). A cohort of at
most ``chunk_areas`` areas is one chunk: today's in-memory path, with its own streams.

Example:
    >>> area_chunks(10, 4)
    [(0, 3), (3, 7), (7, 10)]
"""

from __future__ import annotations

import copy
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.io import ParquetAppender, atomic_parts, write_json, write_parquet
from registry_lib.progress import say
from registry_lib.synth import tables as T
from registry_lib.synth.feeds import RECORD_NUMBERS

#: Areas per chunk when the config sets no ``chunk_areas`` (England: 10 chunks).
DEFAULT_CHUNK_AREAS = 4000
#: Peak memory of one chunk per area and diagnosis year, and of the shared part per area: measured
#: on England out of core (3,700-area chunks, two held: 0.54 GB for 1 year, 1.12 GB for 3, 3.05 GB
#: for 11, i.e. ~34 kB per area-year of a chunk and ~8 kB per area), with a margin of a half.
BYTES_PER_AREA_YEAR = 50_000
BYTES_PER_AREA = 12_000
#: Keys of effects.json whose values (numbers, or mappings of numbers) add up over chunks.
ADDITIVE = frozenset({
    "expected_without_effect", "expected_extra_cases", "observed_within_radius", "in_cluster_cases",
    "eligible_first_primaries", "treated_first_primaries", "cohort_size", "observed", "expected",
    "person_years_after_latency", "expected_without_covid", "cumulative_deficit", "covid_deaths",
    "covid_cumulative_missing_diagnoses", "counts", "sampled", "responded"})


def chunk_size(cfg: dict[str, Any]) -> int:
    """Areas per chunk of a resolved config (``chunk_areas``, or the default).

    Example:
        >>> chunk_size({"chunk_areas": 500}), chunk_size({}) == DEFAULT_CHUNK_AREAS
        (500, True)
    """
    return int(cfg.get("chunk_areas") or DEFAULT_CHUNK_AREAS)


def area_chunks(n_areas: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk: ``ceil(n_areas / size)`` runs of consecutive areas, as
    equal as possible (so no chunk is a sliver).

    Example:
        >>> area_chunks(9, 3), area_chunks(2, 5)
        ([(0, 3), (3, 6), (6, 9)], [(0, 2)])
    """
    n = max(1, math.ceil(n_areas / size))
    bounds = [round(i * n_areas / n) for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def chunk_streams(seed: int, index: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """One random stream per stage for chunk ``index``, derived from the seed alone (disjoint
    from the cohort's own streams and from every other chunk's).

    Example:
        >>> a = chunk_streams(7, 0, ("x", "y")); b = chunk_streams(7, 1, ("x", "y"))
        >>> bool(a["x"].random() != b["x"].random()), chunk_streams(7, 0, ("x",))["x"].random() == chunk_streams(7, 0, ("x",))["x"].random()
        (True, True)
    """
    root = np.random.SeedSequence(seed, spawn_key=(1_000_000 + index,))
    return {name: np.random.default_rng(child) for name, child in zip(names, root.spawn(len(names)), strict=True)}


def _sum(values: list[Any]) -> Any:
    """Sum numbers, or mappings of numbers key by key (None counts as nothing)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if isinstance(present[0], dict):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: _sum([v.get(k) for v in present]) for k in keys}
    total = sum(present)
    return total if all(isinstance(v, int) and not isinstance(v, bool) for v in present) else round(total, 4)


def _merge(values: list[Any], key: str, path: str) -> Any:
    if key in ADDITIVE:
        return _sum(values)
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _merge([v[k] for v in values if k in v], k, f"{path}.{k}") for k in keys}
    if all(v == values[0] for v in values):
        return values[0]
    raise RegistryLabError(f"synth chunks: effects.json {path} differs between chunks and has no pooling rule")


def _weighted(values: list[Any], weights: list[int]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None and w > 0]
    total = sum(w for _, w in pairs)
    return float(sum(v * w for v, w in pairs) / total) if total else None


def merge_effects(parts: list[dict[str, Any]], weights: list[dict[str, Any]]) -> dict[str, Any]:
    """The true effects of a chunked cohort: counts and expected values summed over the chunks
    (:data:`ADDITIVE`), constants kept, ratios recomputed from the sums and the CPES means pooled
    with their respondent counts (``weights``, one mapping per chunk).

    Example:
        >>> a = {"seed": 1, "late_effect": {"observed": 2, "expected": 1.0, "observed_to_expected": 2.0}}
        >>> b = {"seed": 1, "late_effect": {"observed": 1, "expected": 2.0, "observed_to_expected": 0.5}}
        >>> merge_effects([a, b], [{}, {}])["late_effect"]
        {'observed': 3, 'expected': 3.0, 'observed_to_expected': 1.0}
    """
    parts = copy.deepcopy(parts)
    pooled: dict[str, Any] = {}
    if all(p.get("cpes") for p in parts):
        cp = [p["cpes"] for p in parts]
        resp = [w.get("cpes_responded", 0) for w in weights]
        pooled["cpes"] = {
            "emergency_rating_effect": _weighted([c["emergency_rating_effect"] for c in cp],
                                                 [w.get("cpes_emergency", 0) for w in weights]) or 0.0,
            "outlier_rating_effect": _weighted([c["outlier_rating_effect"] for c in cp],
                                               [w.get("cpes_outlier", 0) for w in weights]) or 0.0,
            "mean_overall_rating": _weighted([c["mean_overall_rating"] for c in cp], resp),
            "items_yes": {k: _weighted([c["items_yes"][k] for c in cp], resp) for k in cp[0]["items_yes"]},
        }
        for c in cp:   # one per chunk
            for k in pooled["cpes"]:
                c[k] = None
            c["response_rate"] = None
    for p in parts:   # one per chunk
        for name, ratio in (("cluster", "observed_relative_risk"), ("late_effect", "observed_to_expected")):
            if p.get(name):
                p[name][ratio] = None
        if p.get("covid"):
            p["covid"]["sact_starts_vs_same_month_2019"] = None
    out = _merge(parts, "", "effects")
    if out.get("cluster"):
        c = out["cluster"]
        e = c["expected_without_effect"]
        c["observed_relative_risk"] = round(c["observed_within_radius"] / e, 4) if e > 0 else None
    if out.get("late_effect"):
        le = out["late_effect"]
        le["observed_to_expected"] = round(le["observed"] / le["expected"], 4) if le["expected"] > 0 else None
    if out.get("covid"):
        from registry_lib.synth.cohort import sact_ratios

        out["covid"]["sact_starts_vs_same_month_2019"] = sact_ratios(_sum([w["sact_starts"] for w in weights]))
    if "cpes" in pooled:
        out["cpes"].update(pooled["cpes"])
        out["cpes"]["response_rate"] = (out["cpes"]["responded"] / out["cpes"]["sampled"]
                                        if out["cpes"]["sampled"] else None)
    return out


def memory_plan(n_areas: int, size: int, n_years: int, budget: int) -> int:
    """How many chunks may be held at once (2: write one while generating the next; 1: one at a
    time) within ``budget`` bytes; a budget too small for one chunk is refused in one sentence.

    Example:
        >>> memory_plan(37_000, 4000, 11, 12 * 2**30), memory_plan(37_000, 4000, 11, 3 * 2**30)
        (2, 1)
        >>> memory_plan(37_000, 4000, 11, 2**30)
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: synth needs about 2.5 GB for a chunk of 4,000 areas x 11 years, more than REGISTRY_LAB_MEMORY (1.0 GB): raise REGISTRY_LAB_MEMORY or lower chunk_areas in the cohort config
    """
    base = BYTES_PER_AREA * n_areas
    chunk = BYTES_PER_AREA_YEAR * min(size, n_areas) * n_years
    if base + chunk > budget:
        raise RegistryLabError(f"synth needs about {(base + chunk) / 2**30:.1f} GB for a chunk of {min(size, n_areas):,} "
                               f"areas x {n_years} years, more than REGISTRY_LAB_MEMORY ({budget / 2**30:.1f} GB): "
                               "raise REGISTRY_LAB_MEMORY or lower chunk_areas in the cohort config")
    return 2 if base + 2 * chunk <= budget else 1


def _outlier_trust(ctx: Any) -> str:
    """The CPES outlier trust of a chunked cohort: the trust nearest to most residents in the last
    year (a small cohort takes the trust with most sampled patients, which only the whole knows)."""
    first = ctx.geo.area_trust_choices[:, 0]
    residents = ctx.pop[-1].reshape(len(first), -1).sum(axis=1)
    per_trust = np.bincount(first, weights=residents, minlength=len(ctx.geo.trusts))
    codes = ctx.geo.trusts["trust_code"].to_numpy()
    best = per_trust == per_trust.max()
    return str(sorted(codes[best])[0])


def write_chunked(ctx: Any, target: Path, *, budget: int | None = None) -> dict[str, Any]:
    """Generate the cohort of ``ctx`` (:func:`registry_lib.synth.cohort.setup`) chunk by chunk
    into ``target``, atomically, as :func:`registry_lib.synth.cohort.write` would write the whole;
    returns the sizes.

    Example:
        >>> import tempfile
        >>> from registry_lib.synth import cohort as C
        >>> cfg = C.load_config("params/cohort/tiny.yaml", years=(2019, 2019))
        >>> cfg["chunk_areas"] = 4
        >>> with tempfile.TemporaryDirectory() as d:
        ...     sizes = write_chunked(C.setup(cfg, C._Timer(quiet=True)), Path(d) / "t", budget=2**30)
        ...     pats = pd.read_parquet(Path(d) / "t" / "truth" / "patients.parquet")
        >>> sizes["chunks"] > 1, pats["patient_id"].tolist() == list(range(1, len(pats) + 1)), pats["nhs_number"].is_unique
        (True, True, True)
    """
    from registry_lib import __version__
    from registry_lib.config import params_hash
    from registry_lib.engines import memory_limit
    from registry_lib.synth import cohort as C
    from registry_lib.synth.params import epidemiology_params

    cfg = ctx.cfg
    eff = cfg["effects"]
    if eff.get("cpes") is not None and eff["cpes"].get("outlier_trust") is None:
        cfg = ctx.cfg = copy.deepcopy(cfg)
        cfg["effects"]["cpes"]["outlier_trust"] = _outlier_trust(ctx)
    n_areas = len(ctx.geo.areas)
    size = chunk_size(cfg)
    chunks = area_chunks(n_areas, size)
    held = memory_plan(n_areas, size, len(ctx.years), memory_limit() if budget is None else budget)
    say(f"synth: {cfg['name']}: {n_areas:,} areas in {len(chunks)} chunks of about {size:,}, "
        f"{'writing one chunk while generating the next' if held == 2 else 'one chunk at a time'}")
    effects, weights, sizes = [], [], []
    offsets = {"patient_id": 0, "tumour_id": 0, "treatment_id": 0}
    record_numbers: dict[str, int] = {}
    used = np.zeros(0, dtype=np.int64)
    stage_seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with atomic_parts(target, C.SYNTH_PARTS) as tmp:
        out = ParquetAppender(tmp)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[None] | None = pool.submit(_write_reference, tmp, ctx.reference)   # while chunk 1 is drawn
            try:
                for k, (a, b) in enumerate(chunks):   # one per chunk (a loop over chunks, not people)
                    part = C.Part(np.arange(a, b), offsets["patient_id"], offsets["tumour_id"],
                                  offsets["treatment_id"], used)
                    timer = C._Timer(quiet=True)   # one line per chunk instead
                    token = RECORD_NUMBERS.set(record_numbers)   # record ids continue across chunks
                    try:
                        one = C.generate_part(ctx, chunk_streams(cfg["seed"], k, C.STREAMS), timer, part)
                    finally:
                        RECORD_NUMBERS.reset(token)
                    for col, table in (("patient_id", "patients"), ("tumour_id", "tumours"),
                                       ("treatment_id", "treatments")):
                        ids = one.truth[table][col]
                        offsets[col] = int(ids.max()) if len(ids) else offsets[col]
                    used = np.union1d(used, one.truth["patients"]["nhs_number"].to_numpy().astype(np.int64))
                    effects.append(one.effects)
                    weights.append(one.summary["weights"])
                    sizes.append(one.summary["sizes"])
                    for stage, sec in timer.times.items():   # one per stage
                        stage_seconds[stage] = stage_seconds.get(stage, 0.0) + sec
                    t_wait = time.perf_counter()
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(_append_part, out, one)
                    if held == 1:
                        pending.result()
                    stage_seconds["write wait"] = stage_seconds.get("write wait", 0.0) + time.perf_counter() - t_wait
                    del one
                    say(f"synth: chunk {k + 1}/{len(chunks)} (areas {a:,}-{b - 1:,}): {sizes[-1]['patients']:,} "
                        f"patients, {sizes[-1]['feed_records']:,} feed records; {time.perf_counter() - t0:6.1f} s")
                t_wait = time.perf_counter()
                if pending is not None:
                    pending.result()
                stage_seconds["write wait"] = stage_seconds.get("write wait", 0.0) + time.perf_counter() - t_wait
            finally:   # never close a file the writer thread is still appending to
                if pending is not None:
                    wait([pending])
                out.close()
        total = {k: sum(s[k] for s in sizes) for k in sizes[0] if k != "areas"}
        total = {"areas": n_areas, **total, "chunks": len(chunks),
                 "stage_seconds": {k: round(v, 1) for k, v in stage_seconds.items()}}
        write_json(merge_effects(effects, weights), tmp / "truth" / "effects.json")
        write_json({"config": cfg, "seed": cfg["seed"], "registry_lab_version": __version__,
                    "epidemiology_params_sha256": params_hash(epidemiology_params()),
                    "sizes": {k: v for k, v in total.items() if k not in ("chunks", "stage_seconds")}},
                   tmp / "cohort.json")
    return total


def _write_reference(tmp: Path, reference: dict[str, pd.DataFrame]) -> None:
    for name, schema in T.REFERENCE.items():   # one per table, written once
        write_parquet(reference[name], tmp / "reference" / f"{name}.parquet", schema)


def _append_part(out: ParquetAppender, one: Any) -> None:
    for stage, group, schemas in (("truth", one.truth, T.TRUTH), ("feeds", one.feeds, T.FEEDS)):
        for name, schema in schemas.items():   # one per table
            out.append(f"{stage}/{name}.parquet", group[name], schema)
