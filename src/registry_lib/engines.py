"""The engines behind the pipeline: DuckDB connections with a memory limit, and Spark settings.

One memory setting bounds every engine the project starts: ``REGISTRY_LAB_MEMORY``, either a
size (``8GB``, ``512MB``, ``2g``) or a share of the machine's memory (``50%``, the default).
:func:`duckdb_connect` applies it as DuckDB's ``memory_limit`` with a ``temp_directory`` to spill
to (``REGISTRY_LAB_TMP``, default the system temporary folder); :func:`spark_settings` uses it as
the default Spark driver memory.

Spark is configured the standard Spark way. The master comes from, in order: ``--spark-master``
(:func:`configure_spark`), the ``SPARK_MASTER`` environment variable, ``spark.master`` in
``$SPARK_CONF_DIR/spark-defaults.conf``, else ``local[2]``. Any other Spark property
(``spark.executor.memory``, ``spark.executor.cores``, ...) comes from ``--spark-conf KEY=VALUE``,
then ``spark-defaults.conf``, then the project's defaults below. Under ``spark-submit`` the
submitted configuration wins: nothing here overrides it.

Example:
    >>> parse_memory("2GB", total=16 * 2**30)
    2147483648
    >>> parse_memory("25%", total=16 * 2**30)
    4294967296
    >>> spark_settings(master="spark://h:7077", conf=["spark.executor.memory=1g"], env={},
    ...                total=8 * 2**30)["spark.executor.memory"]
    '1g'
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from registry_lib.errors import RegistryLabError

MEMORY_ENV = "REGISTRY_LAB_MEMORY"
TMP_ENV = "REGISTRY_LAB_TMP"
DEFAULT_MEMORY = "50%"
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
#: Spark properties the project sets unless the user's configuration says otherwise.
SPARK_DEFAULTS: dict[str, str] = {
    "spark.app.name": "registry-lab",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
}
_CLI_SPARK: dict[str, Any] = {"master": None, "conf": {}, "workdir": None}


#: The engines the pipeline runs on (``backend=`` / ``--backend``).
BACKENDS = ("duckdb", "spark")


def check_backend(backend: str) -> None:
    """Refuse an engine the pipeline does not run on, in one sentence.

    Example:
        >>> check_backend("spark")
        >>> check_backend("postgres")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: backend 'postgres': choose one of duckdb, spark
    """
    if backend not in BACKENDS:
        raise RegistryLabError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def machine_memory() -> int:
    """Total physical memory of this machine in bytes.

    Example (the base of a share such as ``REGISTRY_LAB_MEMORY=50%``):
        >>> total = machine_memory()
        >>> total == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), parse_memory("50%") == total // 2
        (True, True)
    """
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def parse_memory(value: str, *, total: int | None = None, name: str = MEMORY_ENV) -> int:
    """Bytes meant by a memory setting: a size (``8GB``, ``512m``) or a share (``40%``).

    Example:
        >>> parse_memory("512m")
        536870912
    """
    text = str(value).strip().lower().replace(" ", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(%|[a-z]*)", text)
    if not m or (m.group(2) != "%" and m.group(2) not in _UNITS):
        raise RegistryLabError(f"{name}={value!r}: give a size such as 8GB or 512MB, or a share "
                               "of the machine's memory such as 50%")
    number, unit = float(m.group(1)), m.group(2)
    if unit == "%":
        if not 0 < number <= 100:
            raise RegistryLabError(f"{name}={value!r}: a share of memory must be above 0% and at most 100%")
        return int((total or machine_memory()) * number / 100)
    size = int(number * _UNITS[unit])
    if size < 64 * 2**20:
        raise RegistryLabError(f"{name}={value!r}: at least 64MB is needed")
    return size


def memory_limit(env: Mapping[str, str] | None = None, total: int | None = None) -> int:
    """The project's memory budget in bytes, from ``REGISTRY_LAB_MEMORY`` (default 50%).

    Example:
        >>> memory_limit({"REGISTRY_LAB_MEMORY": "3GB"})
        3221225472
    """
    env = os.environ if env is None else env
    return parse_memory(env.get(MEMORY_ENV) or DEFAULT_MEMORY, total=total)


def _mb(n: int) -> int:
    return max(64, n // 2**20)


def release_memory() -> None:
    """Hand memory that pandas and Arrow have freed back to the system.

    Between the parts of a long run (linkage in parts, issue 17) the allocators otherwise keep
    the high-water mark of every part, so the process grows as if the parts were held at once.
    Runs the garbage collector, releases Arrow's unused pool memory and, on Linux with glibc,
    trims the C heap (``malloc_trim``).

    Example:
        >>> release_memory()   # safe to call at any time; returns nothing
    """
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)


def spill_directory(env: Mapping[str, str] | None = None) -> Path:
    """Where engines spill to disk: ``REGISTRY_LAB_TMP`` or the system temporary folder.

    Example:
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     spill = spill_directory({"REGISTRY_LAB_TMP": tmp})
        ...     spill.relative_to(tmp).as_posix(), spill.is_dir()
        ('registry-lab-spill', True)
    """
    env = os.environ if env is None else env
    base = Path(env.get(TMP_ENV) or tempfile.gettempdir()) / "registry-lab-spill"
    base.mkdir(parents=True, exist_ok=True)
    return base


def process_memory() -> int:
    """Resident memory of this process in bytes (0 where /proc is not available).

    Example:
        >>> process_memory() > 0
        True
    """
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return 0


#: Share of what is left of the budget that a DuckDB connection may use: DuckDB's limit bounds
#: its buffer manager, and its other allocations and the results it hands to pandas come on top.
DUCKDB_SHARE = 0.7


def remaining_memory(floor: int = 2**30) -> int:
    """:data:`DUCKDB_SHARE` of what is left of ``REGISTRY_LAB_MEMORY`` after this process's
    resident memory (at least ``floor``): the limit for a DuckDB connection opened while pandas
    holds large tables, so that the two together stay within the budget.

    Example:
        >>> 2**30 <= remaining_memory() <= max(memory_limit(), 2**30)
        True
    """
    return max(floor, int((memory_limit() - process_memory()) * DUCKDB_SHARE))


def duckdb_connect(database: str = ":memory:", *, limit: int | None = None, **kwargs: Any) -> Any:
    """A DuckDB connection bounded by ``REGISTRY_LAB_MEMORY`` (or ``limit`` bytes), spilling to
    :func:`spill_directory`.

    Every DuckDB connection the project opens comes from here.

    Example:
        >>> con = duckdb_connect()
        >>> con.execute("SELECT 1 + 1").fetchone()[0]
        2
        >>> con.close()
    """
    import duckdb

    con = duckdb.connect(database, **kwargs)
    con.execute(f"SET memory_limit = '{_mb(memory_limit() if limit is None else limit)}MiB'")
    con.execute(f"SET temp_directory = '{str(spill_directory()).replace(chr(39), '')}'")
    with contextlib.suppress(duckdb.Error):  # in a Jupyter kernel DuckDB refuses without ipywidgets
        con.execute("SET enable_progress_bar = false")
    return con


# ---------------------------------------------------------------------------------------------
# Spark
# ---------------------------------------------------------------------------------------------
def parse_spark_conf(items: Sequence[str]) -> dict[str, str]:
    """``["spark.executor.memory=2g", ...]`` as a dict; a malformed item is refused by name.

    Example:
        >>> parse_spark_conf(["spark.executor.cores=2"])
        {'spark.executor.cores': '2'}
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key.startswith("spark.") or not value.strip():
            raise RegistryLabError(f"--spark-conf {item!r}: give KEY=VALUE with a key starting "
                                   "'spark.', e.g. spark.executor.memory=4g")
        out[key] = value.strip()
    return out


def spark_defaults_file(env: Mapping[str, str] | None = None) -> Path | None:
    """``spark-defaults.conf`` in ``SPARK_CONF_DIR`` (or ``SPARK_HOME/conf``), if there is one.

    Example:
        >>> with tempfile.TemporaryDirectory() as home:
        ...     conf = Path(home, "conf")
        ...     conf.mkdir()
        ...     before = spark_defaults_file({"SPARK_HOME": home})
        ...     _ = (conf / "spark-defaults.conf").write_text("spark.master local[4]")
        ...     found = spark_defaults_file({"SPARK_HOME": home})
        ...     before, found.relative_to(home).as_posix()
        (None, 'conf/spark-defaults.conf')
    """
    env = os.environ if env is None else env
    for folder in (env.get("SPARK_CONF_DIR"), env.get("SPARK_HOME") and str(Path(env["SPARK_HOME"]) / "conf")):
        if folder and (Path(folder) / "spark-defaults.conf").is_file():
            return Path(folder) / "spark-defaults.conf"
    return None


def read_spark_defaults(path: Path | None) -> dict[str, str]:
    """Properties in a ``spark-defaults.conf`` (``key value`` or ``key=value`` lines, ``#`` comments).

    Example:
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "spark-defaults.conf")
        ...     _ = path.write_text("# cluster defaults\\nspark.master   spark://m:7077\\n"
        ...                         "spark.executor.memory=4g\\n")
        ...     read_spark_defaults(path)
        {'spark.master': 'spark://m:7077', 'spark.executor.memory': '4g'}
        >>> read_spark_defaults(None)
        {}
    """
    if path is None:
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"\s*=\s*|\s+", line, maxsplit=1)
        if len(parts) == 2 and parts[0]:
            out[parts[0]] = parts[1].strip()
    return out


def configure_spark(master: str | None = None, conf: Sequence[str] | Mapping[str, str] = (),
                    workdir: str | Path | None = None) -> None:
    """Record the command line's Spark choices (``--spark-master``, ``--spark-conf``, ``--spark-dir``).

    ``workdir`` is a folder every executor can read and write (a shared file system, HDFS or
    an object store path): the Spark backend exchanges its Parquet files and checkpoints there.

    Example (the command line wins over the environment; ``configure_spark()`` forgets it):
        >>> configure_spark("spark://m:7077", ["spark.executor.cores=2"], workdir="s3a://bucket/spark")
        >>> settings = spark_settings(_CLI_SPARK["master"], _CLI_SPARK["conf"], env={"SPARK_MASTER": "local[4]"})
        >>> settings["spark.master"], settings["spark.executor.cores"], spark_workdir()
        ('spark://m:7077', '2', 's3a://bucket/spark')
        >>> configure_spark(conf=["executor.cores=2"])
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: --spark-conf 'executor.cores=2': give KEY=VALUE with a key starting 'spark.', e.g. spark.executor.memory=4g
        >>> configure_spark()
        >>> _CLI_SPARK
        {'master': None, 'conf': {}, 'workdir': None}
    """
    _CLI_SPARK["master"] = master
    _CLI_SPARK["conf"] = dict(conf) if isinstance(conf, Mapping) else parse_spark_conf(conf)
    _CLI_SPARK["workdir"] = str(workdir) if workdir else None


def spark_workdir(default: str | Path | None = None) -> str:
    """The shared folder for the Spark backend's Parquet exchange and checkpoints.

    ``--spark-dir``, else ``REGISTRY_LAB_SPARK_DIR``, else ``default`` (e.g. the cohort folder),
    else a local temporary folder (fine for ``local[...]`` and single-machine clusters).

    Example (no ``--spark-dir`` and no ``REGISTRY_LAB_SPARK_DIR`` here, so ``default`` is used):
        >>> saved = os.environ.pop("REGISTRY_LAB_SPARK_DIR", None)
        >>> spark_workdir("hdfs://namenode/registry-lab")
        'hdfs://namenode/registry-lab'
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Path(spark_workdir(Path(tmp, "cohort", "spark"))).relative_to(Path(tmp).resolve()).as_posix()
        'cohort/spark'
        >>> if saved is not None:
        ...     os.environ["REGISTRY_LAB_SPARK_DIR"] = saved
    """
    chosen = _CLI_SPARK["workdir"] or os.environ.get("REGISTRY_LAB_SPARK_DIR") or default
    if chosen is None:
        return tempfile.mkdtemp(prefix="registry-lab-spark-")
    if "://" not in str(chosen):
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return str(Path(chosen).resolve())
    return str(chosen)


def spark_settings(master: str | None = None, conf: Sequence[str] | Mapping[str, str] = (),
                   env: Mapping[str, str] | None = None, total: int | None = None) -> dict[str, str]:
    """The Spark properties a session is built with, by the precedence in the module docstring.

    Example:
        >>> s = spark_settings(env={"SPARK_MASTER": "spark://m:7077", "REGISTRY_LAB_MEMORY": "3GB"})
        >>> s["spark.master"], s["spark.driver.memory"]
        ('spark://m:7077', '3072m')
    """
    env = os.environ if env is None else env
    given = dict(conf) if isinstance(conf, Mapping) else parse_spark_conf(conf)
    defaults = read_spark_defaults(spark_defaults_file(env))
    out = {**SPARK_DEFAULTS, "spark.driver.memory": f"{_mb(memory_limit(env, total))}m",
           "spark.master": "local[2]"}
    if env.get("PYSPARK_PYTHON") is None:
        out["spark.pyspark.python"] = sys.executable
    out.update(defaults)
    if env.get("SPARK_MASTER"):
        out["spark.master"] = env["SPARK_MASTER"]
    if master:
        out["spark.master"] = master
    out.update(given)
    return out


def spark_session(jars: Sequence[str] = (), checkpoint_dir: str | None = None) -> Any:
    """A Spark session configured by :func:`spark_settings` and :func:`configure_spark`.

    Under ``spark-submit`` (or when a session already runs) the existing session is used as it
    is, with ``jars`` added. ``checkpoint_dir`` should be on a path all executors see.

    Example (without Java, the Spark backend says so before starting anything):
        >>> saved = {k: os.environ.pop(k, None) for k in ("PATH", "JAVA_HOME")}
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     os.environ["PATH"] = empty  # a PATH without java
        ...     try:
        ...         spark_session()
        ...     except RegistryLabError as exc:
        ...         print(exc)
        ...     finally:
        ...         os.environ.update({k: v for k, v in saved.items() if v is not None})
        backend 'spark': Java is not installed (no `java` on the PATH); use backend='duckdb' or install a Java 17 runtime
    """
    import shutil

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise RegistryLabError("backend 'spark': Java is not installed (no `java` on the PATH); "
                               "use backend='duckdb' or install a Java 17 runtime")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    submitted = active is not None or "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder
    if not submitted:
        settings = spark_settings(_CLI_SPARK["master"], _CLI_SPARK["conf"])
        for key, value in settings.items():
            builder = builder.config(key, value)
        # PySpark sends its Python workers' interpreter from PYSPARK_PYTHON (not the conf): the
        # release's Arrow functions run there and need this environment's packages.
        if settings.get("spark.pyspark.python") and not os.environ.get("PYSPARK_PYTHON"):
            os.environ["PYSPARK_PYTHON"] = settings["spark.pyspark.python"]
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - py4j/Spark raise many kinds; one sentence for the user
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RegistryLabError(f"backend 'spark': could not start a Spark session "
                               f"(master {_CLI_SPARK['master'] or 'from configuration'}): {first}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    if checkpoint_dir:
        try:
            spark.sparkContext.setCheckpointDir(checkpoint_dir)
        except Exception as exc:  # noqa: BLE001 - e.g. s3a:// without the cluster's S3 connector
            cause = [line for line in str(exc).splitlines() if "Exception:" in line]
            why = (cause[-1].split("Exception:", 1)[1] if cause else type(exc).__name__).strip()[:200]
            raise RegistryLabError(f"--spark-dir {checkpoint_dir}: Spark cannot use this folder ({why}); "
                                   "give a path every executor can read and write, with its file "
                                   "system's connector on the cluster") from exc
    return spark


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalSparkCluster:
    """A standalone Spark cluster on this machine: one master and ``workers`` workers.

    Started from the ``pyspark`` installation (``spark-class`` with the ``Master`` and
    ``Worker`` classes) on free localhost ports; use it as a context manager so the processes
    are stopped at the end, even on failure. ``url`` is the master URL to pass as
    ``--spark-master``; ``pids`` the process ids (for measuring memory per process).

    Example:
        >>> LocalSparkCluster(workers=2, cores=1, memory="512m").workers
        2
    """

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "1g",
                 workdir: str | Path | None = None, timeout: float = 90.0) -> None:
        self.workers, self.cores, self.memory, self.timeout = workers, cores, memory, timeout
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="registry-lab-cluster-"))
        self.url = ""
        self.ui = ""
        self._procs: list[Any] = []

    @property
    def pids(self) -> list[int]:
        """Process ids of the master (first) and the workers."""
        return [p.pid for p in self._procs]

    def _spawn(self, name: str, args: list[str]) -> None:
        import subprocess

        import pyspark

        home = Path(pyspark.__file__).parent
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOG_DIR": str(self.workdir / "logs"),
               "SPARK_WORKER_DIR": str(self.workdir / "work"), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_DAEMON_MEMORY": "256m", "PYSPARK_PYTHON": sys.executable}
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "logs" / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115
        self._procs.append(subprocess.Popen([str(home / "bin" / "spark-class"), *args], env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))
        log.close()

    def start(self) -> LocalSparkCluster:
        """Start the master and workers; wait until every worker has registered."""
        import json
        import time
        import urllib.request

        port, ui = _free_port(), _free_port()
        self.url, self.ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}"
        self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)])
        for i in range(self.workers):
            self._spawn(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", self.url,
                                       "--host", "127.0.0.1", "--cores", str(self.cores),
                                       "--memory", self.memory, "--webui-port", str(_free_port()),
                                       "--work-dir", str(self.workdir / f"work{i}")])
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self._procs):
                break
            try:
                with urllib.request.urlopen(f"{self.ui}/json/", timeout=2) as r:
                    state = json.loads(r.read() or b"{}")
                alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
                if len(alive) >= self.workers:
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RegistryLabError(f"local Spark cluster: the master and {self.workers} workers did not "
                               f"start within {self.timeout:.0f} s (logs in {self.workdir / 'logs'})")

    def stop(self) -> None:
        """Stop every process this cluster started (workers first, then the master)."""
        import signal
        import subprocess

        for p in reversed(self._procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self._procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=15)
        self._procs.clear()

    def __enter__(self) -> LocalSparkCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
