"""Linkage (and optionally releases, aggregate or record level) as a Spark job, for ``spark-submit``.

    spark-submit --master spark://HOST:7077 --conf spark.executor.memory=4g \\
        src/registry_lib/spark_job.py --cohort england [--evaluate] [--threshold P] \\
        [--spark-dir /shared/registry-lab] [--release aggregate_publication --requester TEXT]

or, without ``spark-submit``: ``python -m registry_lib.spark_job --spark-master URL --cohort ...``.
Under ``spark-submit`` the master, executor memory and cores come from the submission (and the
cluster's ``spark-defaults.conf``) unchanged, so the same command runs on Databricks, EMR,
Dataproc or an on-premises cluster. The driver needs this package installed (``pip install .``)
and the project folder (``REGISTRY_LAB_ROOT``) with ``synthetic/<cohort>/feeds`` readable;
``--spark-dir`` must be a folder every executor can read and write.

Example:
    >>> _parser().parse_args(["--cohort", "small"]).cohort
    'small'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from registry_lib.errors import RegistryLabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark_job", description="Registry Lab linkage as a Spark job")
    p.add_argument("--cohort", required=True)
    p.add_argument("--evaluate", action="store_true", help="measure accuracy against truth/")
    p.add_argument("--threshold", type=float, help="match probability for clustering persons")
    p.add_argument("--spark-master", help="only without spark-submit (which sets --master itself)")
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--spark-dir", help="a folder all executors can read and write")
    p.add_argument("--release", action="append", default=[], metavar="POLICY",
                   help="after linkage, release under this policy on Spark (repeatable)")
    p.add_argument("--requester", help="who asked for the release(s)")
    return p


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, link the cohort on Spark, then the requested releases; return an exit code.

    Example (mistakes are refused before any Spark starts):
        >>> run(["--cohort", "england", "--release", "aggregate_publication"])
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: --release needs --requester (who asked for the release)
    """
    import os

    from registry_lib import linkage, release
    from registry_lib.engines import configure_spark
    from registry_lib.paths import require_cohort

    args = _parser().parse_args(argv)
    if args.release and not (args.requester or "").strip():
        raise RegistryLabError("--release needs --requester (who asked for the release)")
    cohort = require_cohort(args.cohort, "feeds")
    workdir = args.spark_dir or os.environ.get("REGISTRY_LAB_SPARK_DIR") or cohort / ".spark"
    configure_spark(args.spark_master, args.spark_conf, workdir)
    report = linkage.run(cohort, threshold=args.threshold, evaluate=args.evaluate, backend="spark")
    summary = {"cohort": args.cohort, "patients": report.get("patients"), "tumours": report.get("tumours")}
    if args.evaluate:
        summary.update({k: report.get(k) for k in ("precision", "recall", "f1")})
    for policy in args.release:
        summary[f"release_{policy}"] = str(release.run(cohort, policy, args.requester, backend="spark"))
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one clear sentence and exit code 2 for a user mistake, as ``registry-lab``.

    Example (a project without the cohort's feeds; the sentence goes to stderr):
        >>> import contextlib, os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     with contextlib.redirect_stderr(sys.stdout):
        ...         main(["--cohort", "england"])
        spark_job: synthetic/england/feeds: not found; make it with `registry-lab synth --config params/cohort/england.yaml`
        2
    """
    try:
        return run(argv)
    except RegistryLabError as exc:
        print(f"spark_job: {exc}", file=sys.stderr)
        return 2
    finally:
        from registry_lib.linkage.model import stop_spark

        stop_spark()


if __name__ == "__main__":
    sys.exit(main())
