"""Hardening sweep (issue 18): every outside input tried as a careless or hostile user would.

    .venv/bin/python benchmarks/bench_hardening.py [--persons 120] [--seeds 3]

Builds a throw-away project with a toy cohort, then tries bad CLI inputs, corrupted feeds
(every person feed x every corruption x ``--seeds`` seeds), key inputs, and path and injection
attempts, and checks the research release for leaks. Each attempt is classified as a clear error
(exit 2, one sentence, no traceback), quarantined (the run goes on, bad records quarantined with
a reason, counts reconcile), accepted (a valid input), a traceback, a silent wrong result (bad
input accepted with nothing said) or a leak (an NDOP or unchecked patient, or the key, in an
output). Prints a Markdown table with the targets.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEY = "9abfe9ea9da03dfed9ff1d0976926475fa1eaf18df7f79039889311a25108c38"
OTHER_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff1"
CORRUPTIONS = ("drop_required", "text_in_number", "future_date", "impossible_date", "not_a_date",
               "duplicate_ids", "null_id", "empty", "shuffle", "int_ids", "before_1900", "truncate")


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, int]] = {}
        self.examples: list[str] = []

    def add(self, group: str, outcome: str, what: str) -> None:
        row = self.rows.setdefault(group, {})
        row[outcome] = row.get(outcome, 0) + 1
        if outcome in ("traceback", "silent wrong result", "leak"):
            self.examples.append(f"{group}: {outcome}: {what}")


def cli(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, str]:
    """(outcome, stderr) of one command run in-process."""
    from registry_lib import cli as cli_mod

    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update({k: v for k, v in (env or {}).items() if v is not None})
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_mod.main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
        return ("clear error" if code == 2 else "traceback"), err.getvalue()
    except BaseException:  # noqa: BLE001 - a traceback is what we count
        return "traceback", traceback.format_exc()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = err.getvalue().strip()
    if code == 0:
        return "accepted", text
    if code == 2 and "Traceback" not in text and len(text.splitlines()) <= 2:
        return "clear error", text
    return "traceback", text


def cli_probes(root: Path, tmp: Path) -> list[tuple[str, list[str], dict[str, str] | None]]:
    binary = base64.b64encode(b"__import__('os').system('touch PWNED')").decode()
    run = ["run", "cluster_investigation", "--cohort", "toy"]
    covid = ["run", "covid_impact", "--cohort", "toy"]
    bad_file = tmp / "bad_params.yaml"
    bad_file.write_text(f"source: !!binary {binary}\n")
    list_file = tmp / "list_params.yaml"
    list_file.write_text("- a\n- b\n")
    probes: list[tuple[str, list[str], dict[str, str] | None]] = []
    for args in (["-p", "source", f"!!binary {binary}"], ["-p", "sites", "!!set {C67: null}"],
                 ["-p", "source", "!!python/object/apply:os.system ['touch PWNED']"],
                 ["-p", "max_pop_fraction", "abc"], ["-p", "max_pop_fraction", "5"], ["-p", "max_pop_fraction", "-1"],
                 ["-p", "n_sim", "1e9"], ["-p", "n_sim", "ten"], ["-p", "level", ".nan"], ["-p", "level", ".inf"],
                 ["-p", "sites", "[C67, 3]"], ["-p", "sites", "{a: 1}"], ["-p", "years", "[2013]"],
                 ["-p", "years", "2013-2023"], ["-p", "sex", "[3]"], ["-p", "trend_score", "'; import os #"],
                 ["-p", "bands_km", "[0, -5]"], ["-p", "seed", "true"], ["-p", "no_such", "1"],
                 ["-p", "cohort", "x"], ["-p", "output_dir", "/tmp/x"], ["-p", "alpha", "[unclosed"],
                 ["-f", str(bad_file)], ["-f", str(list_file)], ["-f", str(tmp / "missing.yaml")]):
        probes.append(("CLI parameters", run + args, None))
    for args in (["-p", "ratio_month", "2020-04-01"], ["-p", "ratio_month", "April"],
                 ["-p", "covid_death_window", "[2020-03-01, 2021-02-30]"], ["-p", "baseline", "['2015-01']"],
                 ["-p", "family", "gaussian"]):
        probes.append(("CLI parameters", covid + args, None))
    for argv in (["run", "no_such_study"], ["run", "synth"], ["reproduce", "--cohort", "no_such"],
                 ["link", "--cohort", "no_such"], ["release", "--cohort", "toy", "--policy", "no_such", "--requester", "x"],
                 ["release", "--cohort", "toy", "--policy", "research_pseudonymised", "--requester", " "],
                 ["link", "--cohort", "toy", "--threshold", "2"], ["synth", "--config", "params/cohort/none.yaml"],
                 ["synth", "--config", "params/cohort/small.yaml", "--years", "2020", "2010"],
                 ["synth", "--config", "params/cohort/small.yaml", "--scale", "-1"],
                 ["reproduce", "--pipeline", str(tmp / "none.yaml")], ["keygen"]):
        probes.append(("CLI other", argv, None))
    for name in ("../../../../outside/x", ".", "..", "a/b", "-x", "x y", "../toy"):
        probes.append(("paths and names", ["reproduce", "--cohort", name], None))
    probes.append(("paths and names", ["release", "--cohort", "toy", "--policy", "../../x", "--requester", "me"], None))
    probes.append(("paths and names", ["release", "--cohort", "toy", "--policy", "/etc/passwd", "--requester", "me"], None))
    for name, text in (("dot", 'extends: small\nname: "."\n'), ("dotdot", 'extends: small\nname: ".."\n'),
                       ("up", 'extends: small\nname: "../up"\n'), ("ext", "extends: ../../../etc/x\n")):
        cfg = root / "params" / "cohort" / f"evil_{name}.yaml"
        cfg.write_text(text)
        probes.append(("paths and names", ["synth", "--config", str(cfg)], None))
    step = tmp / "evil_pipeline.yaml"
    step.write_text("cohort: toy\nsteps:\n  - name: ../../escape\n    kind: notebook\n"
                    "    notebook: notebooks/00_cohort_overview.ipynb\n")
    probes.append(("paths and names", ["reproduce", "--pipeline", str(step)], None))
    release = ["release", "--cohort", "toy", "--policy", "research_pseudonymised", "--requester", "bench"]
    key_dir = tmp / "keydir"
    key_dir.mkdir(exist_ok=True)
    key_bin = tmp / "key.bin"
    key_bin.write_bytes(bytes(range(256)) * 4)
    key_empty = tmp / "key.empty"
    key_empty.write_text("")
    for key in ("00" * 32, "ff" * 32, "ab" * 32, "0123" * 16, "01234567" * 8, "zz" * 32, "abc", ""):
        probes.append(("keys", release, {"REGISTRY_LAB_KEY": key, "REGISTRY_LAB_KEY_FILE": None}))
    for path in (key_dir, key_bin, key_empty, tmp / "no_such_key"):
        probes.append(("keys", release, {"REGISTRY_LAB_KEY": None, "REGISTRY_LAB_KEY_FILE": str(path)}))
    probes.append(("keys", release, {"REGISTRY_LAB_KEY": OTHER_KEY}))
    return probes


def corrupt(feeds: dict[str, pd.DataFrame], feed: str, kind: str, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    from registry_lib.linkage.validate import FEED_CONTRACT

    out = {k: v.copy() for k, v in feeds.items()}
    df = out[feed]
    n = len(df)
    rows = rng.choice(n, size=max(1, n // 10), replace=False)
    dates = [c for c, k in FEED_CONTRACT[feed].items() if k == "date"]
    col = dates[int(rng.integers(len(dates)))]
    if kind == "drop_required":
        out[feed] = df.drop(columns=[list(FEED_CONTRACT[feed])[int(rng.integers(len(FEED_CONTRACT[feed])))]])
    elif kind == "text_in_number":
        num = "dose_gy" if "dose_gy" in df.columns else "cycles" if "cycles" in df.columns else None
        if num is None:
            return {}
        df[num] = df[num].astype(object)
        df.loc[rows, num] = "lots"
    elif kind in ("future_date", "impossible_date", "not_a_date", "before_1900"):
        df[col] = df[col].astype(object)
        df.loc[rows, col] = {"future_date": "2099-01-01", "impossible_date": "2021-02-30",
                             "not_a_date": "not a date", "before_1900": "1850-01-01"}[kind]
    elif kind == "duplicate_ids":
        df.loc[rows, "record_id"] = df["record_id"].iloc[0]
    elif kind == "null_id":
        df["record_id"] = df["record_id"].astype(object)
        df.loc[rows, "record_id"] = None
    elif kind == "empty":
        out[feed] = df.iloc[0:0]
    elif kind == "shuffle":
        other = [c for c in df.columns if c != "record_id"]
        c = other[int(rng.integers(len(other)))]
        df[c] = rng.permutation(df[c].to_numpy())
    elif kind == "int_ids":
        df["record_id"] = np.arange(n)
    elif kind == "truncate":
        out[feed] = df.iloc[: n // 2]
    return out


def feed_outcome(bad: dict[str, pd.DataFrame], feed: str, kind: str) -> str:
    from registry_lib.errors import RegistryLabError
    from registry_lib.linkage.validate import FATAL, PERSON_FEEDS, validate_feeds

    as_of = pd.Timestamp("2024-06-30")
    try:
        v = validate_feeds(bad, as_of=as_of)
    except RegistryLabError as exc:
        return "clear error" if "\n" not in str(exc) and str(exc).startswith(f"feeds/{feed}") else "traceback"
    except Exception:  # noqa: BLE001
        return "traceback"
    if len(v.records) != sum(len(bad[f]) for f in PERSON_FEEDS if f in bad):
        return "silent wrong result"
    if not set(v.records["reason"].dropna()) <= set(FATAL):
        return "silent wrong result"
    mine = v.records[v.records["feed"] == feed].reset_index(drop=True)
    checks = {"notifications": ["received_date"], "deaths": ["death_date", "registration_date"],
              "sact": ["start_date"], "radiotherapy": ["start_date"], "surgery": ["procedure_date"]}.get(feed, [])
    if kind in ("future_date", "not_a_date", "before_1900", "impossible_date"):
        for c in checks:
            parsed = pd.to_datetime(bad[feed][c], format="%Y-%m-%d", errors="coerce").reset_index(drop=True)
            broken = (parsed.isna() | (parsed > as_of) | (parsed < pd.Timestamp("1900-01-01"))).to_numpy()
            if not mine.loc[broken, "reason"].notna().all():
                return "silent wrong result"
    if kind == "duplicate_ids" and mine.loc[mine["reason"].isna(), "record_id"].duplicated().any():
        return "silent wrong result"
    if kind == "text_in_number" and not (mine["reason"] == "INVALID_NUMBER").any():
        return "silent wrong result"
    quarantined = int(mine["reason"].notna().sum())
    return "quarantined" if quarantined and kind not in ("shuffle", "truncate", "int_ids") else "accepted"


def leaks(root: Path) -> list[str]:
    from registry_lib.io import read_parquet

    cohort = root / "synthetic" / "toy"
    registry = read_parquet(cohort / "registry" / "patient.parquet")
    info = json.loads((cohort / "releases" / "research_pseudonymised" / "release.json").read_text())
    out = []
    should_go = int((registry["ndop_opted_out"] | registry["nhs_number"].isna()).sum())
    if info["opt_out_removals"]["patient"] != should_go:
        out.append("NDOP or unchecked patients in the research release")
    for path in list(cohort.rglob("*.json")) + list(cohort.rglob("*.jsonl")):
        if KEY in path.read_text():
            out.append(f"the key in {path.name}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=120)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    os.environ.update({"REGISTRY_LAB_KEY": KEY, "CI": "true", "OPENBLAS_NUM_THREADS": "1"})
    from registry_lib import linkage
    from registry_lib.linkage.build import read_feeds
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the hand-made toy cohort
    from fixtures.toy import write_toy_cohort

    from registry_lib.linkage.validate import PERSON_FEEDS

    tally = Tally()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = tmp / "project"
        root.mkdir()
        shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
        for folder in ("params", "notebooks"):
            shutil.copytree(ROOT / folder, root / folder)
        os.environ["REGISTRY_LAB_ROOT"] = str(root)
        os.chdir(root)
        cohort = write_toy_cohort(root / "synthetic" / "toy", n_persons=args.persons, seed=11)
        (cohort / "cohort.json").write_text(json.dumps({"config": {"end_of_follow_up": "2024-06-30"}}))
        linkage.run(cohort, quiet=True)
        outcome, err = cli(["release", "--cohort", "toy", "--policy", "research_pseudonymised", "--requester", "bench"])
        assert outcome == "accepted", err
        probes = cli_probes(root, tmp)
        before = {p.name for p in tmp.iterdir()}
        for group, argv, env in probes:
            outcome, text = cli(argv, env)
            if outcome == "accepted" and argv[0] != "keygen":
                outcome = "silent wrong result"
            tally.add(group, outcome, " ".join(argv) + f" -> {text[-300:]}")
        if (root / "PWNED").exists() or {p.name for p in tmp.iterdir()} - before:
            tally.add("paths and names", "leak", "a file appeared outside the project or code ran")
        feeds, _ = read_feeds(cohort)
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            for feed in PERSON_FEEDS:
                if feed not in feeds or not len(feeds[feed]):
                    continue
                for kind in CORRUPTIONS:
                    bad = corrupt(feeds, feed, kind, rng)
                    if bad:
                        tally.add("corrupted feeds", feed_outcome(bad, feed, kind), f"{feed} {kind} seed {seed}")
        for damage in ("zero bytes", "truncated", "not Parquet"):
            copy = tmp / f"damaged_{damage.replace(' ', '_')}"
            shutil.copytree(cohort, copy, ignore=shutil.ignore_patterns("registry", "releases"))
            target = copy / "feeds" / "notifications.parquet"
            data = target.read_bytes()
            target.write_bytes(b"" if damage == "zero bytes" else data[: len(data) // 2] if damage == "truncated"
                               else b"record_id\nN1\n")
            try:
                linkage.run(copy, quiet=True, write=False)
                tally.add("corrupted feeds", "silent wrong result", damage)
            except Exception as exc:  # noqa: BLE001
                from registry_lib.errors import RegistryLabError
                ok = isinstance(exc, RegistryLabError) and "\n" not in str(exc)
                tally.add("corrupted feeds", "clear error" if ok else "traceback", damage)
        for leak in leaks(root):
            tally.add("release", "leak", leak)
        tally.add("release", "accepted", "research release checked for NDOP, unchecked patients and the key")

    cols = ["clear error", "quarantined", "accepted", "traceback", "silent wrong result", "leak"]
    print("| inputs | tried | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    total = {c: 0 for c in cols}
    for group, row in tally.rows.items():
        n = sum(row.values())
        print(f"| {group} | {n} | " + " | ".join(str(row.get(c, 0)) for c in cols) + " |")
        for c in cols:
            total[c] += row.get(c, 0)
    print(f"| **all** | {sum(total.values())} | " + " | ".join(str(total[c]) for c in cols) + " |")
    print("| target | | | | | 0 | 0 | 0 |")
    for line in tally.examples[:20]:
        print("-", line, file=sys.stderr)


if __name__ == "__main__":
    main()
