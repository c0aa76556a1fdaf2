"""Attacks on every input from outside (issue 18): parameters, names, feeds, keys, concurrency.

Invariants checked on every attempt: no traceback reaches the user (a mistake is one sentence,
exit 2); every record ends linked, merged or quarantined with a reason (counts reconcile);
nothing is written outside the project; no code runs from a parameter; no NDOP person and no
unchecked patient reaches a research release.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY, make_project_copy
from fixtures.toy import write_toy_cohort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_lib import cli, linkage
from registry_lib.errors import ConfigError, RegistryLabError
from registry_lib.io import atomic_parts, read_parquet
from registry_lib.keys import key_fingerprint
from registry_lib.linkage.build import read_feeds
from registry_lib.linkage.validate import FATAL, FEED_CONTRACT, PERSON_FEEDS, validate_feeds
from registry_lib.parameters import load_plain
from registry_lib.paths import cohort_dir, validate_name
from registry_lib.pipeline.runner import Pipeline, load_spec
from registry_lib.runlock import project_lock

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
# validating feeds costs about a second even on the toy cohort (pandas overhead): a bounded
# sample here, every feed x corruption x seed in benchmarks/bench_hardening.py
FEEDS_BUDGET = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
OTHER_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff1"


# ---- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A throw-away project with a linked toy cohort (``synthetic/toy``)."""
    root = make_project_copy(tmp_path_factory.mktemp("hardening"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGISTRY_LAB_KEY", TEST_KEY)
        mp.setenv("REGISTRY_LAB_ROOT", str(root))
        path = write_toy_cohort(root / "synthetic" / "toy", n_persons=60, seed=5)
        (path / "cohort.json").write_text(json.dumps({"config": {"end_of_follow_up": "2024-06-30"}}))
        linkage.run(path, quiet=True)
    return root


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_ROOT", str(project))
    monkeypatch.chdir(project)
    return project


def user(capsys, *argv: str) -> tuple[int, str]:
    """Run the command in-process as a user would; a traceback fails the test by propagating."""
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


def one_sentence(err: str) -> bool:
    text = err.strip()
    return "Traceback" not in text and len(text.splitlines()) == 1 and text.startswith("registry-lab ")


_FEEDS: dict[str, dict[str, pd.DataFrame]] = {}


def toy_feeds(project: Path) -> dict[str, pd.DataFrame]:
    if str(project) not in _FEEDS:
        _FEEDS[str(project)] = read_feeds(project / "synthetic" / "toy")[0]
    return {k: v.copy() for k, v in _FEEDS[str(project)].items()}


def files_outside(root: Path, before: set[str]) -> set[str]:
    """Paths that appeared in root's parent (outside the project) since ``before``."""
    return {p.name for p in root.parent.iterdir()} - before


# ---- 1. parameters are data, never code ---------------------------------------------------------
PROBES_PARAMS = [
    (["-p", "source", "!!binary " + base64.b64encode(b"__import__('os').system('touch PWNED')").decode()], "!!binary"),
    (["-p", "sites", "!!set {C67: null}"], "!!set"),
    (["-p", "source", "!!python/object/apply:os.system ['touch PWNED']"], "python/object"),
    (["-p", "max_pop_fraction", "abc"], "max_pop_fraction"),
    (["-p", "max_pop_fraction", "5"], "max_pop_fraction"),
    (["-p", "n_sim", "1e9"], "n_sim"),
    (["-p", "level", ".nan"], "level"),
    (["-p", "sites", "[C67, 3]"], "sites"),
    (["-p", "no_such", "1"], "no_such"),
    (["-p", "trend_score", "'; import os #"], "trend_score"),
]


@pytest.mark.parametrize(("args", "named"), PROBES_PARAMS, ids=[p[1] for p in PROBES_PARAMS])
def test_bad_parameter_is_one_sentence_before_any_step(in_project, capsys, args, named):
    code, err = user(capsys, "run", "cluster_investigation", "--cohort", "small", *args)
    assert code == 2 and one_sentence(err) and named in err, err
    assert not (in_project / "PWNED").exists()
    assert not (in_project / "synthetic" / "small").exists(), "no step ran"


def test_unquoted_date_for_a_month_is_refused_naming_it(in_project, capsys):
    code, err = user(capsys, "run", "covid_impact", "--cohort", "small", "-p", "ratio_month", "2020-04-01")
    assert code == 2 and one_sentence(err) and "ratio_month" in err and "YYYY-MM" in err


def test_params_file_is_plain_data_too(in_project, capsys, tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("source: !!binary aGVsbG8=\n")
    code, err = user(capsys, "run", "cluster_investigation", "--cohort", "small", "-f", str(bad))
    assert code == 2 and one_sentence(err) and "!!binary" in err
    bad.write_text("- not\n- a mapping\n")
    code, err = user(capsys, "run", "cluster_investigation", "--cohort", "small", "-f", str(bad))
    assert code == 2 and one_sentence(err) and "mapping" in err


def _injected_source(value) -> str:
    from papermill.translators import papermill_translators

    from registry_lib.pipeline.notebooks import _use_safe_literals

    _use_safe_literals()
    return papermill_translators.find_translator("python3", "python").codify({"p": value})


def _only_literal_assignments(source: str) -> bool:
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return False
        ast.literal_eval(node.value)
    return True


plain = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=30),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=12)


@FAST
@given(value=plain)
def test_any_plain_value_reaches_the_notebook_as_a_literal_and_nothing_else(value):
    source = _injected_source(value)
    assert _only_literal_assignments(source), source
    namespace: dict = {}
    exec(compile(source, "<params>", "exec"), {"__builtins__": {}}, namespace)  # literals only: no builtins needed
    assert namespace["p"] == value


@FEEDS_BUDGET
@given(text=st.text(max_size=40))
def test_fuzzed_parameter_text_is_accepted_checked_or_refused_in_one_sentence(in_project, text):
    spec = load_spec(None, in_project)
    pipe = Pipeline(spec, in_project, cohort="toy")
    step = spec.step("cluster_investigation")
    for name in ("source", "max_pop_fraction", "sites", "years", "trend_score"):
        try:
            params = pipe.study_parameters(step, {name: load_plain(text, f"-p {name}")})
        except ConfigError as exc:
            assert "\n" not in str(exc) and name in str(exc)
            continue
        assert _only_literal_assignments(_injected_source(params[name]))


# ---- 2. names are names --------------------------------------------------------------------------
@FAST
@given(name=st.text(max_size=20) | st.sampled_from([".", "..", "../x", "a/b", "-x", "_x", "x\x00", "small"]))
def test_any_name_is_valid_and_inside_or_refused(name):
    try:
        validate_name(name, "cohort")
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    root = Path("/tmp/registry-lab-names")
    assert cohort_dir(name, root).parent == (root / "synthetic").resolve()


@pytest.mark.parametrize("args", [
    ["reproduce", "--cohort", "../../../../outside/x"],
    ["reproduce", "--cohort", "."],
    ["link", "--cohort", "../toy"],
    ["release", "--cohort", "toy", "--policy", "../../x", "--requester", "me"],
    ["run", "cluster_investigation", "--cohort", ".."],
], ids=["reproduce-up", "reproduce-dot", "link-up", "policy-up", "run-dotdot"])
def test_path_like_names_are_refused_before_writing(in_project, capsys, args):
    before = {p.name for p in in_project.parent.iterdir()}
    code, err = user(capsys, *args)
    assert code == 2 and one_sentence(err), err
    assert files_outside(in_project, before) == set()


@pytest.mark.parametrize("text", ['name: "."\n', 'name: ".."\n', 'name: "../up"\n'])
def test_cohort_config_names_are_refused(in_project, capsys, tmp_path, text):
    cfg = in_project / "params" / "cohort" / "evil.yaml"
    cfg.write_text("extends: small\n" + text)
    try:
        code, err = user(capsys, "synth", "--config", str(cfg))
    finally:
        cfg.unlink()
    assert code == 2 and one_sentence(err) and "name" in err
    assert (in_project / "synthetic" / "toy" / "registry").is_dir()


def test_extends_never_inherits_the_name(tmp_path):
    from registry_lib.synth import load_config

    cfg = tmp_path / "mine.yaml"
    cfg.write_text("extends: small\n")
    shutil.copy(Path(__file__).resolve().parents[1] / "params" / "cohort" / "small.yaml", tmp_path / "small.yaml")
    assert load_config(cfg)["name"] == "mine"


def test_pipeline_step_names_cannot_leave_reports(in_project, capsys, tmp_path):
    bad = tmp_path / "pipe.yaml"
    bad.write_text("cohort: toy\nsteps:\n  - name: ../../escape\n    kind: notebook\n"
                   "    notebook: notebooks/00_cohort_overview.ipynb\n")
    code, err = user(capsys, "reproduce", "--pipeline", str(bad))
    assert code == 2 and one_sentence(err) and "step name" in err


def test_synth_replaces_only_its_own_parts(tmp_path):
    cohort = tmp_path / "c"
    (cohort / "registry").mkdir(parents=True)
    (cohort / "releases").mkdir()
    (cohort / "releases" / "audit.jsonl").write_text('{"release": 1}\n')
    (cohort / "feeds").mkdir()
    (cohort / "feeds" / "old.parquet").write_text("old")
    with atomic_parts(cohort, ("reference", "truth", "feeds", "cohort.json")) as tmp:
        (tmp / "feeds").mkdir()
        (tmp / "feeds" / "new.parquet").write_text("new")
        (tmp / "cohort.json").write_text("{}")
    assert sorted(p.name for p in (cohort / "feeds").iterdir()) == ["new.parquet"]
    assert (cohort / "releases" / "audit.jsonl").read_text() == '{"release": 1}\n'
    assert (cohort / "registry").is_dir() and not list(tmp_path.glob(".c.tmp-*"))


# ---- 3. the feed contract ------------------------------------------------------------------------
CORRUPTIONS = ["drop_required", "text_in_number", "future_date", "impossible_date", "not_a_date",
               "duplicate_ids", "null_id", "empty", "shuffle", "int_ids", "before_1900", "truncate"]


def corrupt(feeds: dict[str, pd.DataFrame], feed: str, kind: str, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    out = {k: v.copy() for k, v in feeds.items()}
    df = out[feed]
    n = len(df)
    rows = rng.choice(n, size=max(1, n // 10), replace=False) if n else np.array([], dtype=int)
    dates = [c for c, k in FEED_CONTRACT[feed].items() if k == "date"]
    if kind == "drop_required":
        col = list(FEED_CONTRACT[feed])[int(rng.integers(len(FEED_CONTRACT[feed])))]
        out[feed] = df.drop(columns=[col])
    elif kind == "text_in_number" and "dose_gy" in df.columns:
        df["dose_gy"] = df["dose_gy"].astype(object)
        df.loc[rows, "dose_gy"] = "lots"
    elif kind in ("future_date", "impossible_date", "not_a_date", "before_1900") and dates:
        col = dates[int(rng.integers(len(dates)))]
        value = {"future_date": "2099-01-01", "impossible_date": "2021-02-30",
                 "not_a_date": "not a date", "before_1900": "1850-01-01"}[kind]
        df[col] = df[col].astype(object)
        df.loc[rows, col] = value
    elif kind == "duplicate_ids" and n > 1:
        df.loc[rows, "record_id"] = df["record_id"].iloc[0]
    elif kind == "null_id":
        df["record_id"] = df["record_id"].astype(object)
        df.loc[rows, "record_id"] = None
    elif kind == "empty":
        out[feed] = df.iloc[0:0]
    elif kind == "shuffle":
        col = [c for c in df.columns if c != "record_id"][int(rng.integers(len(df.columns) - 1))]
        df[col] = rng.permutation(df[col].to_numpy())
    elif kind == "int_ids":
        df["record_id"] = np.arange(n)
    elif kind == "truncate":
        out[feed] = df.iloc[: n // 2]
    return out


@FEEDS_BUDGET
@given(feed=st.sampled_from(PERSON_FEEDS), kind=st.sampled_from(CORRUPTIONS), seed=st.integers(0, 2**31))
def test_corrupted_feeds_are_refused_in_one_sentence_or_every_record_is_accounted_for(project, feed, kind, seed):
    feeds = toy_feeds(project)
    if feed not in feeds:
        return
    bad = corrupt(feeds, feed, kind, np.random.default_rng(seed))
    as_of = pd.Timestamp("2024-06-30")
    try:
        v = validate_feeds(bad, as_of=as_of)
    except RegistryLabError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"feeds/{feed}.parquet"), str(exc)
        assert kind == "drop_required"
        return
    assert len(v.records) == sum(len(bad[f]) for f in PERSON_FEEDS if f in bad), "every record is accounted for"
    reasons = set(v.records["reason"].dropna())
    assert reasons <= set(FATAL), reasons - set(FATAL)
    assert v.records["record_id"].notna().all()
    recs = v.records.assign(row=v.records.groupby("feed").cumcount())
    mine = recs[recs["feed"] == feed].reset_index(drop=True)
    if kind in ("future_date", "not_a_date", "before_1900", "impossible_date"):
        # a system date (receipt, registration, death) that is impossible is never used silently
        for col in {"notifications": ["received_date"], "deaths": ["death_date", "registration_date"]}.get(feed, []):
            parsed = pd.to_datetime(bad[feed][col], format="%Y-%m-%d", errors="coerce").reset_index(drop=True)
            broken = (parsed.isna() | (parsed > as_of) | (parsed < pd.Timestamp("1900-01-01"))).to_numpy()
            assert mine.loc[broken, "reason"].notna().all(), (col, kind)
    if kind == "duplicate_ids":
        assert not mine.loc[mine["reason"].isna(), "record_id"].duplicated().any()


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "not_parquet", "directory_of_junk"])
def test_unreadable_feed_files_are_one_sentence(project, tmp_path, damage):
    cohort = tmp_path / "toy"
    shutil.copytree(project / "synthetic" / "toy", cohort, ignore=shutil.ignore_patterns("registry", "releases"))
    target = cohort / "feeds" / "sact.parquet"
    data = target.read_bytes()
    if damage == "zero_bytes":
        target.write_bytes(b"")
    elif damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "not_parquet":
        target.write_text("record_id,start_date\nS1,2020-01-01\n")
    else:
        target.unlink()
        target.mkdir()
        (target / "x").write_text("junk")
    with pytest.raises(RegistryLabError) as info:
        linkage.run(cohort, quiet=True, write=False)
    assert "sact.parquet" in str(info.value) and "\n" not in str(info.value)


def test_missing_reference_is_an_error(project, tmp_path):
    cohort = tmp_path / "toy"
    shutil.copytree(project / "synthetic" / "toy", cohort, ignore=shutil.ignore_patterns("registry", "releases", "reference"))
    with pytest.raises(RegistryLabError, match="reference"):
        linkage.run(cohort, quiet=True, write=False)


def test_future_and_bad_records_are_quarantined_and_the_extract_date_does_not_move(project, tmp_path):
    cohort = tmp_path / "toy"
    shutil.copytree(project / "synthetic" / "toy", cohort, ignore=shutil.ignore_patterns("registry", "releases"))
    feeds = toy_feeds(project)
    notes = feeds["notifications"].copy()
    notes.loc[0, "received_date"] = "2099-01-01"
    notes.loc[1, "received_date"] = "not a date"
    notes.loc[2, "record_id"] = notes.loc[3, "record_id"]
    notes.to_parquet(cohort / "feeds" / "notifications.parquet", index=False)
    if "sact" in feeds and len(feeds["sact"]):
        sact = feeds["sact"].copy()
        sact["start_date"] = "2090-01-01"
        sact.to_parquet(cohort / "feeds" / "sact.parquet", index=False)
    report = linkage.run(cohort, quiet=True)
    assert report["extract_date"] == "2024-06-30" and report["extract_date_source"] == "cohort.json end_of_follow_up"
    assert report["reconciles"]
    q = read_parquet(cohort / "registry" / "quarantine.parquet")
    reasons = dict(zip(q["record_id"], q["reason"], strict=False))
    assert reasons[notes.loc[0, "record_id"]] == "DATE_AFTER_EXTRACT"
    assert reasons[notes.loc[1, "record_id"]] == "INVALID_DATE"
    assert "DUPLICATE_RECORD_ID" in set(q["reason"])
    if "sact" in feeds and len(feeds["sact"]):
        assert report["counts"]["sact"]["linked"] == 0, "no SACT record dated 2090 is linked"


# ---- 4. opt-outs and keys ------------------------------------------------------------------------
def test_no_ndop_or_unchecked_patient_reaches_the_research_release(in_project, capsys):
    code, err = user(capsys, "release", "--cohort", "toy", "--policy", "research_pseudonymised", "--requester", "test")
    assert code == 0, err
    registry = read_parquet(in_project / "synthetic" / "toy" / "registry" / "patient.parquet")
    info = json.loads((in_project / "synthetic" / "toy" / "releases" / "research_pseudonymised" / "release.json").read_text())
    ndop = info["national_data_opt_out"]
    assert ndop["patients_without_valid_nhs_number"] == int(registry["nhs_number"].isna().sum())
    assert ndop["unchecked_patients"] == "excluded" and ndop["ndop_entries_with_invalid_nhs_number"] is not None
    expected = int((registry["ndop_opted_out"] | registry["nhs_number"].isna()).sum())
    assert info["opt_out_removals"]["patient"] == expected
    assert info["row_counts"]["patient"] == len(registry) - expected
    assert "keyed hash" in info["fields"]["patient"]["pseudo_id"]


def test_a_release_under_another_key_is_refused(in_project, capsys, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_KEY", OTHER_KEY)
    code, err = user(capsys, "release", "--cohort", "toy", "--policy", "research_pseudonymised", "--requester", "test")
    assert code == 2 and one_sentence(err) and "another project key" in err
    report = json.loads((in_project / "synthetic" / "toy" / "registry" / "link_report.json").read_text())
    assert report["key_fingerprint"] == key_fingerprint(bytes.fromhex(TEST_KEY))
    assert TEST_KEY not in json.dumps(report)


@pytest.mark.parametrize("setting", ["00" * 32, "ab" * 32, "0123" * 16, "zz" * 32, "folder", "binary", "empty"])
def test_weak_or_bad_keys_are_one_sentence(in_project, capsys, monkeypatch, tmp_path, setting):
    monkeypatch.delenv("REGISTRY_LAB_KEY", raising=False)
    if setting in ("folder", "binary", "empty"):
        path = tmp_path / "key"
        if setting == "folder":
            path.mkdir()
        else:
            path.write_bytes(os.urandom(64) if setting == "binary" else b"")
        monkeypatch.setenv("REGISTRY_LAB_KEY_FILE", str(path))
    else:
        monkeypatch.setenv("REGISTRY_LAB_KEY", setting)
    code, err = user(capsys, "release", "--cohort", "toy", "--policy", "research_pseudonymised", "--requester", "t")
    assert code == 2 and one_sentence(err), err


def test_the_step_cache_depends_on_the_key(in_project, monkeypatch):
    spec = load_spec(None, in_project)
    step = spec.step("linkage_quality")
    first = Pipeline(spec, in_project, cohort="toy").step_key(step)
    monkeypatch.setenv("REGISTRY_LAB_KEY", OTHER_KEY)
    assert Pipeline(spec, in_project, cohort="toy").step_key(step) != first


# ---- 5. one run at a time ------------------------------------------------------------------------
def test_a_second_run_refuses_naming_the_first_and_leftovers_go(in_project, capsys, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_LOCK_WAIT", "0")
    leftover = in_project / "synthetic" / ".toy.tmp-999999999"
    leftover.mkdir()
    with project_lock(in_project, "registry-lab reproduce (first)"):
        assert not leftover.exists(), "leftovers of killed runs are removed at the next start"
        # another process would be refused: simulate one by forgetting that this process holds it
        from registry_lib import runlock

        held = dict(runlock._held)
        runlock._held.clear()
        try:
            code, err = user(capsys, "link", "--cohort", "toy")
        finally:
            runlock._held.update(held)
    assert code == 2 and one_sentence(err) and f"pid {os.getpid()}" in err and "reproduce (first)" in err


def test_a_second_run_waits_when_asked_then_proceeds(tmp_path, monkeypatch, capsys):
    import subprocess
    import sys
    import time

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from registry_lib.runlock import project_lock\n"
        "with project_lock(Path(sys.argv[1]), 'first'):\n"
        "    print('held', flush=True); time.sleep(2)\n"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("REGISTRY_LAB_LOCK_WAIT", "0")
        with pytest.raises(RegistryLabError, match="first"), project_lock(tmp_path, "second"):
            pass
        monkeypatch.setenv("REGISTRY_LAB_LOCK_WAIT", "60")
        started = time.monotonic()
        with project_lock(tmp_path, "second"):
            waited = time.monotonic() - started
        assert 0.3 < waited < 60
        assert "waiting for another registry-lab process" in capsys.readouterr().err
    finally:
        holder.wait(timeout=60)
    monkeypatch.setenv("REGISTRY_LAB_LOCK_WAIT", "soon")
    with pytest.raises(RegistryLabError, match="REGISTRY_LAB_LOCK_WAIT"), project_lock(tmp_path, "third"):
        pass
