"""The ``registry-lab`` command: thin wrappers over the library.

    registry-lab synth --config params/cohort/small.yaml [--seed N] [--scale F] [--years A B] [--out DIR]
    registry-lab link --cohort NAME [--evaluate] [--threshold P] [--backend duckdb|spark]
                      [--spark-master URL] [--spark-conf KEY=VALUE ...] [--spark-dir PATH]
    registry-lab release --cohort NAME --policy POLICY --requester TEXT [--backend duckdb|spark ...]
    registry-lab twin --cohort NAME --policy POLICY [--size N] [--seed S]
    registry-lab run STUDY [--cohort NAME | --config FILE] [--seed N] [-p KEY VALUE ...] [-f params.yaml]
    registry-lab reproduce [--pipeline params/pipeline.yaml] [--cohort NAME | --config FILE] [--seed N] [--force]
    registry-lab keygen [--overwrite]
    registry-lab lab [JUPYTER LAB OPTIONS ...]

User mistakes (unknown study, missing cohort, bad parameter) print one sentence and exit 2,
with no traceback. A failing notebook exits 1 after printing the failing cell and the error.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from registry_lib.errors import RegistryLabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="registry-lab", description="Registry Lab: synthetic England, "
                                "linkage, purpose-bound releases and reproducible registry studies.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="generate a synthetic cohort (feeds, reference, truth)")
    s.add_argument("--config", required=True, help="params/cohort/<name>.yaml")
    s.add_argument("--seed", type=int)
    s.add_argument("--scale", type=float, help="fraction of England's population")
    s.add_argument("--years", type=int, nargs=2, metavar=("START", "END"), help="diagnosis years")
    s.add_argument("--out", help="output folder (default synthetic/<name>)")

    s = sub.add_parser("link", help="build the registry from a cohort's feeds")
    s.add_argument("--cohort", required=True)
    s.add_argument("--evaluate", action="store_true", help="measure accuracy against truth/")
    s.add_argument("--threshold", type=float, help="match probability for clustering persons")
    _spark_arguments(s)

    s = sub.add_parser("release", help="release registry data under a policy")
    s.add_argument("--cohort", required=True)
    s.add_argument("--policy", required=True, help="name of params/release/<policy>.yaml")
    s.add_argument("--requester", required=True, help="who asked for the release")
    _spark_arguments(s)

    s = sub.add_parser("twin", help="fit a synthetic twin to a release; write releases/<policy>_twin")
    s.add_argument("--cohort", required=True)
    s.add_argument("--policy", required=True, help="the record-level release to twin")
    s.add_argument("--size", type=int, help="number of twin patients (default: as in the release)")
    s.add_argument("--seed", type=int, default=1, help="seed of the model and the draw (default 1)")
    s.add_argument("--requester", default="registry-lab twin", help="who asked (audit log)")

    s = sub.add_parser("run", help="run one study with other parameters")
    s.add_argument("study")
    s.add_argument("--cohort", help="name of params/cohort/<name>.yaml")
    s.add_argument("--config", help="a cohort config file at any path (instead of --cohort)")
    s.add_argument("--seed", type=int, help="override the cohort config's seed")
    s.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="override a study parameter (VALUE is read as YAML)")
    s.add_argument("-f", "--params-file", help="a YAML file of parameter overrides")
    s.add_argument("--pipeline")

    s = sub.add_parser("reproduce", help="run the whole pipeline, skipping unchanged steps")
    s.add_argument("--pipeline")
    s.add_argument("--cohort", help="name of params/cohort/<name>.yaml")
    s.add_argument("--config", help="a cohort config file at any path (instead of --cohort)")
    s.add_argument("--seed", type=int, help="override the cohort config's seed")
    s.add_argument("--force", action="store_true", help="re-run every step")

    s = sub.add_parser("keygen", help="create the project key for pseudonyms")
    s.add_argument("--overwrite", action="store_true")

    s = sub.add_parser("lab", help="start JupyterLab on the project kernel (other options go to jupyter lab)",
                       description="Start JupyterLab on the project kernel; every other argument "
                                   "(e.g. --port 8890 --no-browser) is passed to 'jupyter lab'.")
    s.add_argument("jupyter_args", nargs="*", metavar="JUPYTER_LAB_OPTION", help="options for jupyter lab")
    return p


def _spark_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--backend", choices=["duckdb", "spark"], default="duckdb")
    s.add_argument("--spark-master", help="Spark master URL (default: SPARK_MASTER, "
                   "spark-defaults.conf, else local[2])")
    s.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Spark property, e.g. spark.executor.memory=4g (repeatable)")
    s.add_argument("--spark-dir", help="a folder all Spark executors can read and write "
                   "(default: REGISTRY_LAB_SPARK_DIR, else <cohort>/.spark)")


def _configure_spark(args: argparse.Namespace, cohort: Path) -> None:
    if args.backend != "spark":
        if args.spark_master or args.spark_conf or args.spark_dir:
            raise RegistryLabError("--spark-master, --spark-conf and --spark-dir need --backend spark")
        return
    import os

    from registry_lib.engines import configure_spark

    workdir = args.spark_dir or os.environ.get("REGISTRY_LAB_SPARK_DIR") or cohort / ".spark"
    configure_spark(args.spark_master, args.spark_conf, workdir)


def _cohort_path(name: str, stage: str) -> Path:
    from registry_lib.paths import require_cohort

    return require_cohort(name, stage)


LOCKED_COMMANDS = {"synth", "link", "release", "run", "reproduce"}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in LOCKED_COMMANDS:
        from registry_lib.paths import project_root
        from registry_lib.runlock import project_lock

        try:
            root = project_root()
        except RegistryLabError:
            if args.command != "synth":
                raise
            return _run(args)  # synth --out outside any checkout: nothing of a project to protect
        what = " ".join(f"{k}={v}" for k, v in sorted(vars(args).items()) if v not in (None, False, []))
        with project_lock(root, f"registry-lab {what}"[:200]):
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from registry_lib import synth

        out = synth.run(args.config, seed=args.seed, scale=args.scale,
                        years=tuple(args.years) if args.years else None, out=args.out)
        print(f"wrote {out}")
    elif args.command == "link":
        from registry_lib import linkage

        cohort = _cohort_path(args.cohort, "feeds")
        _configure_spark(args, cohort)
        report = linkage.run(cohort, threshold=args.threshold,
                             evaluate=args.evaluate, backend=args.backend)
        if args.evaluate:
            keys = ["precision", "recall", "f1", "false_match_rate", "missed_match_rate",
                    "persons_split", "persons_merged"]
            print(json.dumps({k: report.get(k) for k in keys}, indent=2))
    elif args.command == "release":
        from registry_lib import release

        cohort = _cohort_path(args.cohort, "registry")
        _configure_spark(args, cohort)
        out = release.run(cohort, args.policy, args.requester, backend=args.backend)
        print(f"wrote {out}")
    elif args.command == "twin":
        from registry_lib import twin
        from registry_lib.studies.synthetic_twin import study_estimates

        cohort = _cohort_path(args.cohort, "registry")
        out = twin.run(cohort, args.policy, size=args.size, seed=args.seed, requester=args.requester,
                       estimates=study_estimates)
        print(f"wrote {out} (synthetic data; see twin_report.json)")
    elif args.command == "run":
        from registry_lib.parameters import load_plain
        from registry_lib.pipeline import run_study

        overrides = {k: load_plain(v, f"-p {k}") for k, v in args.param}
        out = run_study(args.study, cohort=args.cohort, overrides=overrides,
                        params_file=args.params_file, pipeline=args.pipeline,
                        config=args.config, seed=args.seed)
        print(f"wrote {out}")
    elif args.command == "reproduce":
        from registry_lib.pipeline import reproduce

        results = reproduce(args.pipeline, cohort=args.cohort, force=args.force, config=args.config,
                            seed=args.seed)
        ran = sum(r.status == "ran" for r in results)
        print(f"pipeline done: {ran} step(s) ran, {len(results) - ran} unchanged; see reports/index.html")
    elif args.command == "keygen":
        from registry_lib.keys import keygen

        print(f"wrote {keygen(overwrite=args.overwrite)} (keep it private; it is git-ignored)")
    elif args.command == "lab":
        from registry_lib.paths import project_root

        root = project_root()
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix",
                        "--name", "registry-lab", "--display-name", "Registry Lab (.venv)"], check=True)
        import os

        extra = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        return subprocess.call([sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={root}", *extra,
                                *args.jupyter_args])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``registry-lab`` console script.

    Example (``argv`` as typed after ``registry-lab``; a user mistake prints one sentence to
    stderr and returns 2):
        >>> import contextlib, os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     with contextlib.redirect_stderr(sys.stdout):
        ...         main(["link", "--cohort", "demo"])
        ...         (Path(root) / "synthetic" / "demo" / "feeds").mkdir(parents=True)
        ...         main(["link", "--cohort", "demo", "--spark-master", "local[2]"])
        ...         main(["release", "--cohort", "demo", "--policy", "research_pseudonymised", "--requester", "me"])
        registry-lab link: synthetic/demo/feeds: not found; make it with `registry-lab synth --config params/cohort/demo.yaml`
        2
        registry-lab link: --spark-master, --spark-conf and --spark-dir need --backend spark
        2
        registry-lab release: synthetic/demo/registry: not found; make it with `registry-lab link --cohort demo`
        2
    """
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"] and argv[1:] not in (["-h"], ["--help"]):
        # everything after 'lab' belongs to jupyter lab, in its order (--port 8890 --no-browser)
        args = argparse.Namespace(command="lab", jupyter_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except RegistryLabError as exc:
        from registry_lib.pipeline.notebooks import NotebookFailed

        print(f"registry-lab {args.command}: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, NotebookFailed) else 2
    except KeyboardInterrupt:
        print("registry-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
