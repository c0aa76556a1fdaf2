"""Benchmark of national scale (issue 17): synth of England over 1, 3 and 11 years; linkage of one
national year on three engines.

Run: ``.venv/bin/python benchmarks/bench_national.py``             (one national year, 2019:
     about 1 million notifications; 10+ minutes and ~8 GB on a free 2-core machine)
     ``--scale 0.1``: a tenth of England's population for the same year (a loaded machine)

Section "engines": the same generated cohort linked and written by ``linkage.run`` on
  * DuckDB (the default backend),
  * Spark ``local[2]`` (``--backend spark``, master from the default configuration),
  * a standalone Spark cluster of one master and two workers on this machine
    (:class:`registry_lib.engines.LocalSparkCluster`, 1 core and ``--worker-memory`` each).
Each run is its own process. Time is wall-clock for ``linkage.run`` (reading the feeds to
writing the registry, no evaluation). Peak memory is the maximum resident set size of each
process, sampled every 0.2 s from /proc: the Python driver, the Spark driver JVM, each executor,
and the cluster's master and worker daemons. The registries of the Spark runs are compared
with the DuckDB one (patients, tumours, record links).

Section "synth" (``--section synth``; ``--synth-years 1 3`` to leave the decade out): ``registry-lab
synth`` of ``england.yaml`` for the years ending in ``--year`` (1 year: 2019; 3: 2017-2019;
11: 2013-2023 whatever ``--year``), each in its own process: wall time, peak resident memory
(sampled every 0.2 s from /proc, the process and its children) and the sizes from cohort.json.
England is generated out of core, chunk by chunk (:mod:`registry_lib.synth.chunks`).

Section "decade" (``--section decade``; ``--synth-years 1 3`` to leave the decade out): for each
span, synth, then ``linkage.run`` with evaluation (in parts when the feeds do not fit
``REGISTRY_LAB_MEMORY``), then the three releases of the pipeline, each its own process: wall
time, peak resident memory, the parts linkage used (read/tables) and F1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("patient", "tumour", "record_links")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("REGISTRY_LAB_KEY", "5f0c9e2b7a4d18e63c2f9b0a7d5e41c86b3a2f0d9e8c7b6a5f4e3d2c1b0a9f8e")  # a throwaway key (a weak one is refused)
    env.update({"CI": "true", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    return env


def _worker(cohort: str, out: str, backend: str, master: str | None, executor_memory: str) -> dict:
    """Link ``cohort`` into ``out`` in this process and return the timings."""
    from registry_lib import linkage
    from registry_lib.engines import configure_spark

    if backend == "spark":
        conf = [f"spark.executor.memory={executor_memory}"]
        if master and master.startswith("spark://"):
            conf += ["spark.executor.cores=1", "spark.cores.max=2"]
        configure_spark(master, conf, Path(out).parent / f".spark-{Path(out).name}")
    t0 = time.perf_counter()
    report = linkage.run(cohort, evaluate=False, write=True, quiet=True, out_dir=out, backend=backend)
    seconds = time.perf_counter() - t0
    if backend == "spark":
        from registry_lib.linkage.model import stop_spark

        stop_spark()
    return {"seconds": seconds, "patients": report["patients"], "tumours": report["tumours"],
            "records": sum(c["input"] for c in report["counts"].values()),
            "timings": {k: round(v, 1) for k, v in report["_timings"].items()}}


# ---------------------------------------------------------------------------------------------
# Memory per process, from /proc
# ---------------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _rss_and_role(pid: int) -> tuple[float, str] | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None
    if "CoarseGrainedExecutorBackend" in cmd:
        role = "executor"
    elif "deploy.master.Master" in cmd:
        role = "master daemon"
    elif "deploy.worker.Worker" in cmd:
        role = "worker daemon"
    elif "java" in cmd.split(" ")[0] or "SparkSubmit" in cmd:
        role = "Spark driver JVM"
    elif "pyspark.daemon" in cmd or "pyspark/worker" in cmd:
        role = "Python worker"
    elif "bench_national" in cmd:
        role = "Python driver"
    else:
        role = "other"
    return rss / 1024 / 1024, role


class Sampler(threading.Thread):
    """Peak resident memory (GB) of every process under ``roots``, by process."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.peaks, self.roles = roots, {}, {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            kids = _children()
            todo, seen = list(self.roots), set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                todo += kids.get(pid, [])
                got = _rss_and_role(pid)
                if got:
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), got[0])
                    self.roles[pid] = got[1] if got[1] != "other" else self.roles.get(pid, "other")
            self._halt.wait(0.2)

    def stop(self) -> dict[str, list[float]]:
        self._halt.set()
        self.join()
        out: dict[str, list[float]] = {}
        for pid, gb in self.peaks.items():
            out.setdefault(self.roles[pid], []).append(round(gb, 2))
        return {k: sorted(v, reverse=True) for k, v in out.items()}


def _sampled(cmd: list[str], label: str, extra_roots: list[int] | None = None) -> tuple[dict, float, dict]:
    """Run a worker process, sampling its memory: (its last JSON line, wall seconds, peaks by process)."""
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, env=_env(), cwd=ROOT, text=True)
        sampler = Sampler([proc.pid, *(extra_roots or [])])
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - t0
        peaks = sampler.stop()
        so.seek(0)
        se.seek(0)
        if proc.returncode:
            raise SystemExit(f"{label} failed:\n{se.read()[-3000:]}")
        return json.loads(so.read().strip().splitlines()[-1]), wall, peaks


def _measure(label: str, cohort: Path, out: Path, backend: str, master: str | None,
             executor_memory: str, extra_roots: list[int]) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(cohort), str(out), backend, master or "",
           executor_memory]
    result, wall, peaks = _sampled(cmd, label, extra_roots)
    result.update({"label": label, "process_seconds": wall, "peaks_gb": peaks})
    return result


def synth_years(span: int, last: int) -> tuple[int, int]:
    """The diagnosis years of a synth run of ``span`` years: the decade is 2013-2023, others end in ``last``.

    Example:
        >>> synth_years(1, 2019), synth_years(3, 2019), synth_years(11, 2019)
        ((2019, 2019), (2017, 2019), (2013, 2023))
    """
    return (2013, 2023) if span == 11 else (last - span + 1, last)


def _measure_synth(span: int, last: int, out: Path) -> dict:
    """``registry-lab synth`` of england.yaml over ``span`` years in its own process."""
    y0, y1 = synth_years(span, last)
    cmd = [sys.executable, "-m", "registry_lib.cli", "synth", "--config", "params/cohort/england.yaml",
           "--years", str(y0), str(y1), "--out", str(out)]
    env = {**_env(), "REGISTRY_LAB_ROOT": str(ROOT)}
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, env=env, cwd=ROOT, text=True)
        sampler = Sampler([proc.pid])
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - t0
        peaks = sampler.stop()
        se.seek(0)
        if proc.returncode:
            raise SystemExit(f"synth of {y0}-{y1} failed:\n{se.read()[-3000:]}")
    sizes = json.loads((out / "cohort.json").read_text())["sizes"]
    return {"years": f"{y0}-{y1}", "span": span, "seconds": wall,
            "peak_gb": max((g for gbs in peaks.values() for g in gbs), default=0.0), **sizes}


def synth_section(spans: list[int], last: int, tmp: Path) -> None:
    """Time and peak memory of synth at each span of years, as a table."""
    print(f"\nsynth of england.yaml (each run its own process)\n"
          f"{'years':>6} {'diagnoses':>10} {'patients':>10} {'tumours':>10} {'feed records':>13} {'seconds':>8} "
          f"{'peak GB':>8}", flush=True)
    for span in spans:   # one process per span
        r = _measure_synth(span, last, tmp / f"england-{span}")
        print(f"{r['span']:>6} {r['years']:>10} {r['patients']:>10,} {r['tumours']:>10,} {r['feed_records']:>13,} "
              f"{r['seconds']:>8.1f} {r['peak_gb']:>8.2f}", flush=True)
        shutil.rmtree(tmp / f"england-{span}", ignore_errors=True)


RELEASES = ("research_pseudonymised", "direct_care", "aggregate_publication")


def _step_worker(step: str, cohort: str) -> dict:
    """Link (with evaluation) or release ``cohort`` in this process and return the figures."""
    t0 = time.perf_counter()
    if step == "link":
        from registry_lib import linkage

        r = linkage.run(cohort, evaluate=True, quiet=True)
        return {"seconds": time.perf_counter() - t0, "f1": r["f1"], "patients": r["patients"],
                "tumours": r["tumours"], "parts": r["_parts"], "timings": r["_timings"]}
    from registry_lib.release import run as release

    times = {}
    for policy in RELEASES:
        t = time.perf_counter()
        release(cohort, policy, "bench_national")
        times[policy] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - t0, "by_policy": times}


def _measure_step(step: str, cohort: Path) -> dict:
    result, wall, peaks = _sampled([sys.executable, __file__, "--step-worker", step, str(cohort)], f"{step} of {cohort}")
    result.update({"process_seconds": wall, "peak_gb": max((g for gbs in peaks.values() for g in gbs), default=0.0)})
    return result


def decade_section(spans: list[int], last: int, tmp: Path) -> None:
    """Synth, linkage with evaluation and the three releases of England at each span of years,
    each step its own process (time, peak resident memory), with issue 17's targets for 11 years."""
    print(f"\nEngland end to end (each step its own process; targets for 11 years: synth <= 180 s and 6 GB, "
          f"link with evaluation <= 1200 s and 12 GB with F1 >= 0.995, releases <= 120 s)\n"
          f"{'years':>6} {'feed records':>13} {'synth s':>8} {'GB':>5} {'link s':>8} {'GB':>5} {'parts':>6} "
          f"{'F1':>8} {'release s':>10} {'GB':>5}  releases (s)", flush=True)
    for span in spans:
        cohort = tmp / f"england-{span}"
        sy = _measure_synth(span, last, cohort)
        lk = _measure_step("link", cohort)
        rel = _measure_step("release", cohort)
        parts = f"{lk['parts']['read']}/{lk['parts']['tables']}"
        by = ", ".join(f"{k} {v:.0f}" for k, v in rel["by_policy"].items())
        print(f"{span:>6} {sy['feed_records']:>13,} {sy['seconds']:>8.1f} {sy['peak_gb']:>5.2f} {lk['seconds']:>8.1f} "
              f"{lk['peak_gb']:>5.2f} {parts:>6} {lk['f1']:>8.5f} {rel['seconds']:>10.1f} {rel['peak_gb']:>5.2f}  {by}",
              flush=True)
        print("        link seconds by step: " + ", ".join(f"{k} {v:.0f}" for k, v in lk["timings"].items()), flush=True)
        shutil.rmtree(cohort, ignore_errors=True)


def _same_registry(a: Path, b: Path) -> str:
    """"yes" when the registries in ``a`` and ``b`` are equal (patients, tumours, record links); else
    how far apart: the pairwise F1 of ``b``'s patients against ``a``'s over the records both put in
    a patient, and the records only one of them puts in a patient."""
    import numpy as np
    import pandas as pd

    if all(pd.read_parquet(a / f"{n}.parquet").equals(pd.read_parquet(b / f"{n}.parquet")) for n in TABLES):
        return "yes"
    cols = ["feed", "record_id", "patient_id"]
    both = pd.read_parquet(a / "record_links.parquet", columns=cols).merge(
        pd.read_parquet(b / "record_links.parquet", columns=cols), on=["feed", "record_id"])
    one_only = int((both["patient_id_x"].isna() != both["patient_id_y"].isna()).sum())
    both = both.dropna()

    def together(counts: pd.Series) -> int:  # pairs of records in one patient
        n = counts.to_numpy(np.int64)
        return int((n * (n - 1) // 2).sum())

    na, nb = together(both.groupby("patient_id_x").size()), together(both.groupby("patient_id_y").size())
    agree = together(both.groupby(["patient_id_x", "patient_id_y"]).size())
    return f"NO: pairwise F1 {2 * agree / max(na + nb, 1):.6f} ({na - agree:,} / {nb - agree:,} pairs only in one; {one_only:,} records in a patient in one only)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--year", type=int, default=2019, help="the national year to link")
    ap.add_argument("--scale", type=float, help="fraction of England (default: the england config, 1.0)")
    ap.add_argument("--worker-memory", default="2g", help="memory of each standalone worker")
    ap.add_argument("--executor-memory", default="1536m")
    ap.add_argument("--cohort", help="an already generated cohort folder (skips generation)")
    ap.add_argument("--section", choices=("engines", "synth", "decade"), default="engines")
    ap.add_argument("--synth-years", type=int, nargs="+", default=[1, 3, 11], help="spans of years for synth")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--step-worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step_worker:
        print(json.dumps(_step_worker(*args.step_worker), default=float))
        return
    if args.worker:
        cohort, out, backend, master, mem = args.worker
        print(json.dumps(_worker(cohort, out, backend, master or None, mem), default=float))
        return
    os.environ.update(_env())
    from registry_lib.engines import LocalSparkCluster, memory_limit

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"REGISTRY_LAB_MEMORY = {memory_limit() / 2**30:.1f} GB")
    if args.section in ("synth", "decade"):
        with tempfile.TemporaryDirectory(prefix="bench-national-", dir=ROOT / "synthetic") as d:
            (synth_section if args.section == "synth" else decade_section)(args.synth_years, args.year, Path(d))
        return
    with tempfile.TemporaryDirectory(prefix="bench-national-") as d:
        tmp = Path(d)
        if args.cohort:
            cohort = Path(args.cohort)
        else:
            from registry_lib import synth

            print(f"generating england {args.year} at scale {args.scale or 1.0} ...", flush=True)
            cohort = Path(synth.run(ROOT / "params" / "cohort" / "england.yaml", scale=args.scale,
                                    years=(args.year, args.year), out=tmp / "england"))
        import pyarrow.parquet as pq

        n_notes = pq.read_metadata(cohort / "feeds" / "notifications.parquet").num_rows
        rows = [_measure("DuckDB", cohort, tmp / "duckdb", "duckdb", None, args.executor_memory, []),
                _measure("Spark local[2]", cohort, tmp / "local", "spark", "local[2]",
                         args.executor_memory, [])]
        with LocalSparkCluster(workers=2, cores=1, memory=args.worker_memory,
                               workdir=tmp / "cluster") as cluster:
            rows.append(_measure("Spark standalone, 2 workers", cohort, tmp / "cluster-out", "spark",
                                 cluster.url, args.executor_memory, cluster.pids))
        same = {r["label"]: _same_registry(tmp / "duckdb", tmp / o)
                for r, o in zip(rows[1:], ("local", "cluster-out"), strict=True)}
    print(f"\nLinkage of {n_notes:,} notifications ({rows[0]['records']:,} feed records; "
          f"{rows[0]['patients']:,} patients, {rows[0]['tumours']:,} tumours)\n")
    print(f"{'engine':<30} {'link s':>8} {'process s':>10}  peak memory per process (GB)   same as DuckDB")
    for r in rows:
        peaks = "; ".join(f"{role} {', '.join(f'{g:.2f}' for g in gbs)}"
                          for role, gbs in sorted(r["peaks_gb"].items()))
        print(f"{r['label']:<30} {r['seconds']:>8.1f} {r['process_seconds']:>10.1f}  {peaks}   "
              f"{'-' if r['label'] == 'DuckDB' else same[r['label']]}")
    steps = list(rows[0]["timings"])
    print(f"\nseconds by step of linkage.run\n{'engine':<30} " + " ".join(f"{s:>9}" for s in steps))
    for r in rows:
        print(f"{r['label']:<30} " + " ".join(f"{r['timings'].get(s, 0):>9.1f}" for s in steps))


if __name__ == "__main__":
    main()
