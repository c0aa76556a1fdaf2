"""Running the pipeline: steps in dependency order, skipping what is unchanged.

Example (from a shell): ``registry-lab reproduce --cohort small``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import registry_lib
from registry_lib.config import load_yaml, params_hash
from registry_lib.errors import ConfigError, RegistryLabError
from registry_lib.keys import KEY_HELP, current_fingerprint, keygen, project_key
from registry_lib.parameters import check_parameters, load_plain_file, split_declarations
from registry_lib.paths import cohort_dir, cohort_folder_name, inside, project_root, validate_name
from registry_lib.pipeline.cache import StepState, code_hash, combine, hash_files
from registry_lib.pipeline.manifest import git_state
from registry_lib.pipeline.notebooks import NotebookFailed, execute_notebook, render_html
from registry_lib.pipeline.spec import PipelineSpec, Step
from registry_lib.progress import say
from registry_lib.reporting.document import rerun_command
from registry_lib.runlock import project_lock

RESERVED_PARAMS = {"cohort", "output_dir"}


@dataclass
class StepResult:
    """What happened to one step.

    Example (as :meth:`Pipeline.run_step` records a study that ran for a minute):
        >>> r = StepResult("covid_impact", "notebook", "ran", "2024-05-01T09:00:00+00:00",
        ...                "2024-05-01T09:01:00+00:00", 60.0, {"cohort": "tiny"}, "covid_impact/covid_impact.html")
        >>> r.status, r.report, r.output_finished is None
        ('ran', 'covid_impact/covid_impact.html', True)
    """

    name: str
    kind: str
    status: str  # ran | skipped | failed
    started: str
    finished: str
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    # the run that made the current outputs (this one, or the earlier run a cached step reuses)
    output_finished: str | None = None
    output_seconds: float | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Pipeline:
    """A pipeline bound to a project root and a cohort.

    Example (the cohort's folder, and what each step reads and writes, with another seed):
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)   # a project root
        >>> (root / "params" / "cohort").mkdir(parents=True)
        >>> _ = (root / "params" / "cohort" / "tiny.yaml").write_text("name: tiny\\nseed: 20240607\\n")
        >>> _ = (root / "params" / "pipeline.yaml").write_text('''cohort: tiny
        ... steps:
        ...   - {name: synth, kind: synth}
        ...   - {name: link, kind: link, needs: [synth]}
        ...   - {name: registry_statistics, kind: notebook, notebook: notebooks/05_registry_statistics.ipynb, needs: [link]}
        ... ''')
        >>> (root / "params" / "studies").mkdir()
        >>> _ = (root / "params" / "studies" / "registry_statistics.yaml").write_text(
        ...     "threshold: 7\\nparameter_types:\\n  threshold: {type: int, min: 0}\\n")
        >>> spec = load_spec(None, root)
        >>> pipe = Pipeline(spec, root, seed=7)
        >>> pipe.cohort
        'tiny-seed7'
        >>> for step in spec.steps:
        ...     print(step.name, [p.relative_to(root).as_posix() for p in pipe.outputs(step)])
        synth ['synthetic/tiny-seed7/reference', 'synthetic/tiny-seed7/truth', 'synthetic/tiny-seed7/feeds', 'synthetic/tiny-seed7/cohort.json']
        link ['synthetic/tiny-seed7/registry']
        registry_statistics ['reports/registry_statistics']
        >>> pipe.study_parameters(spec.step("registry_statistics"), {"threshold": 10})
        {'threshold': 10, 'cohort': 'tiny-seed7', 'output_dir': 'reports/registry_statistics'}
        >>> pipe.study_parameters(spec.step("registry_statistics"), {"treshold": 10})
        Traceback (most recent call last):
        registry_lib.errors.ConfigError: study registry_statistics: no parameter 'treshold' (known: threshold)
        >>> tmp.cleanup()
    """

    def __init__(self, spec: PipelineSpec, root: Path, cohort: str | None = None, force: bool = False,
                 *, config: str | Path | None = None, seed: int | None = None):
        self.spec = spec
        self.root = root
        self.force = force
        self.seed = seed
        self.config = _config_path(config, root) if config is not None else None
        if self.config is not None and cohort is not None:
            raise ConfigError("give either --cohort NAME or --config FILE, not both")
        if self.config is not None:
            raw = load_yaml(self.config)
            name = raw.get("name", self.config.stem)
            validate_name(name, f"{self.config}: cohort")
            config_seed = raw.get("seed")
        else:
            name = validate_name(cohort or spec.cohort, "cohort")
            known = self.root / "params" / "cohort" / f"{name}.yaml"
            config_seed = load_yaml(known).get("seed") if seed is not None and known.exists() else None
        self.base_name = name
        self.cohort = cohort_folder_name(name, seed, config_seed=config_seed)
        self.code = code_hash(Path(registry_lib.__file__).parent)
        self.results: list[StepResult] = []
        self._keys: dict[str, str] = {}

    # ---- paths --------------------------------------------------------------------------
    @property
    def cohort_path(self) -> Path:
        return cohort_dir(self.cohort, self.root)

    def cohort_config(self) -> Path:
        if self.config is not None:
            return self.config
        path = self.root / "params" / "cohort" / f"{self.base_name}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in (self.root / "params" / "cohort").glob("*.yaml")))
            raise ConfigError(f"params/cohort/{self.base_name}.yaml: no such cohort (known: {known}); "
                              "to study a cohort from another config file use --config FILE")
        return path

    def outputs(self, step: Step, report_dir: Path | None = None) -> list[Path]:
        c = self.cohort_path
        if step.kind == "synth":
            return [c / "reference", c / "truth", c / "feeds", c / "cohort.json"]
        if step.kind == "link":
            return [c / "registry"]
        if step.kind == "release":
            return [c / "releases" / step.option("policy")]
        return [report_dir or self.root / "reports" / step.name]

    def inputs(self, step: Step) -> list[Path]:
        """Params files (and the notebook) a step reads besides upstream outputs."""
        if step.kind == "synth":
            return [self.cohort_config(), self.root / "params" / "epidemiology"]
        if step.kind == "release":
            return [self.root / "params" / "release" / f"{step.option('policy')}.yaml"]
        if step.kind == "notebook":
            return [self.root / step.option("notebook"), self.study_params_file(step)]
        if step.kind == "link":  # reviewed clerical decisions are honoured by the next link
            decisions = self.root / "params" / "linkage" / "decisions"
            return [decisions] if decisions.exists() else []
        return []

    def study_params_file(self, step: Step) -> Path:
        return self.root / step.option("params", f"params/studies/{step.name}.yaml")

    # ---- running ------------------------------------------------------------------------
    def run(self, targets: list[str] | None = None) -> list[StepResult]:
        for step in self.spec.ordered(targets):
            self.run_step(step)
        return self.results

    def step_key(self, step: Step, extra: Any = None) -> str:
        upstream = {n: self._keys.get(n) for n in step.needs}
        params = hash_files([p for p in self.inputs(step) if p.exists()], self.root)
        # The key's fingerprint (never the key): a new key re-runs every step that uses it.
        return combine(step.name, step.kind, step.options, self.cohort, self.code, params, upstream, extra,
                       current_fingerprint(self.root), *([self.seed] if self.seed is not None else []))

    def run_step(self, step: Step, *, parameters: dict[str, Any] | None = None,
                 report_dir: Path | None = None, label: str | None = None) -> StepResult:
        label = label or step.name
        if step.kind == "notebook" and parameters is None:
            parameters = self.study_parameters(step)
        key = self.step_key(step, parameters)
        outputs = self.outputs(step, report_dir)
        state = StepState(self.root / "reports" / ".state" / self.cohort / f"{label}.json")
        started, t0 = _now(), time.perf_counter()
        if not self.force and state.is_fresh(key, hash_files(outputs, self.root)):
            say(f"[{label}] unchanged, skipped", summary=True)
            status = "skipped"
        else:
            say(f"[{label}] running ({step.kind})", summary=True)
            state.forget()
            try:
                self._execute(step, parameters, report_dir)
            except NotebookFailed as exc:
                self._finish(step, label, "failed", started, t0, parameters, report_dir)
                raise self._set_aside(step, report_dir, exc) from None
            except BaseException:
                self._set_aside(step, report_dir, None)
                raise
            state.record(key, hash_files(outputs, self.root))
            status = "ran"
            state.record_run(_now(), round(time.perf_counter() - t0, 2))
        # Downstream keys depend on the outputs' content, not only on this step's key.
        self._keys[step.name] = combine(key, hash_files(outputs, self.root))
        return self._finish(step, label, status, started, t0, parameters, report_dir, state.last_run())

    def _set_aside(self, step: Step, report_dir: Path | None, exc: NotebookFailed | None) -> NotebookFailed | None:
        """A study that failed leaves no folder that looks like a report: its folder moves to
        ``reports/.failed/<name>/`` (the partly executed notebook, for debugging)."""
        if step.kind != "notebook":
            return exc
        folder = report_dir or self.root / "reports" / step.name
        if not folder.exists():
            return exc
        aside = inside(self.root / "reports" / ".failed" / folder.name, self.root / "reports")
        if aside.exists():
            shutil.rmtree(aside)
        aside.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(aside)
        if exc is None:
            return None
        old, new = str(folder.relative_to(self.root)), str(aside.relative_to(self.root))
        return NotebookFailed(str(exc).replace(f"kept at {old}/", f"kept at {new}/"))

    def _finish(self, step, label, status, started, t0, parameters, report_dir, made=None) -> StepResult:
        seconds = round(time.perf_counter() - t0, 2)
        report = None
        if step.kind == "notebook":
            folder = report_dir or self.root / "reports" / step.name
            report = str((folder / f"{folder.name}.html").relative_to(self.root / "reports"))
        made = made or {}
        result = StepResult(label, step.kind, status, started, _now(), seconds, parameters or {}, report,
                            made.get("finished"), made.get("seconds"))
        self.results.append(result)
        say(f"[{label}] {status} in {seconds:.1f} s", summary=True)
        return result

    def _execute(self, step: Step, parameters: dict[str, Any] | None, report_dir: Path | None) -> None:
        if step.kind == "synth":
            from registry_lib import synth

            synth.run(self.cohort_config(), seed=self.seed, out=self.cohort_path)
        elif step.kind == "link":
            from registry_lib import linkage

            linkage.run(self.cohort_path, evaluate=bool(step.option("evaluate", False)),
                        threshold=step.option("threshold"),
                        compare_methods=bool(step.option("compare_methods", False)))
        elif step.kind == "release":
            from registry_lib import release

            release.run(self.cohort_path, step.option("policy"),
                        step.option("requester", "registry-lab reproduce"))
        else:
            folder = report_dir or self.root / "reports" / step.name
            executed = folder / f"{folder.name}.ipynb"
            execute_notebook(self.root / step.option("notebook"), executed, parameters or {}, self.root)
            params = parameters or {}
            defaults = self.study_defaults(step)
            published = report_dir is None
            render_html(executed, folder / f"{folder.name}.html", context={
                "study": step.name, "folder": folder, "cohort": self.cohort, "params": params,
                "defaults": defaults, "run_key": folder.name, "root": self.root, "git": git_state(self.root),
                "rerun": rerun_command(step.name, self.cohort, params, defaults, published=published,
                                       default_cohort=self.spec.cohort)})

    # ---- study parameters ---------------------------------------------------------------
    def study_defaults(self, step: Step) -> dict[str, Any]:
        """The study's parameters as ``params/studies/<study>.yaml`` sets them."""
        params_file = self.study_params_file(step)
        data = load_yaml(params_file) if params_file.exists() else {}
        return split_declarations(data, str(params_file))[0]

    def study_parameters(self, step: Step, overrides: dict[str, Any] | None = None,
                         output_dir: str | None = None) -> dict[str, Any]:
        """The study's defaults with ``overrides``, every value checked against its declaration
        in the study's params file (before any step runs)."""
        params_file = self.study_params_file(step)
        where = f"{params_file.relative_to(self.root) if params_file.is_relative_to(self.root) else params_file}"
        data = load_yaml(params_file) if params_file.exists() else {}
        base, declarations = split_declarations(data, where)
        checked_base = check_parameters(base, base, declarations, f"{where}: ")
        try:
            checked = check_parameters(dict(overrides or {}), base, declarations)
        except ConfigError as exc:
            raise ConfigError(f"study {step.name}: {exc}") from None
        params = {**checked_base, **checked}
        params["cohort"] = self.cohort
        params["output_dir"] = output_dir or f"reports/{step.name}"
        return params


def ensure_project_key(root: Path) -> None:
    """Make a project key on first use in a fresh clone, saying so (never a silent default).

    Example (a fresh clone, no key in the environment):
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ):
        ...     for name in ("REGISTRY_LAB_KEY", "REGISTRY_LAB_KEY_FILE"):
        ...         _ = os.environ.pop(name, None)
        ...     ensure_project_key(Path(d))   # says "created a new project key at .registry-lab/project.key ..."
        ...     key = (Path(d) / ".registry-lab" / "project.key").read_text()
        ...     ensure_project_key(Path(d))   # the key exists: kept as it is
        ...     (Path(d) / ".registry-lab" / "project.key").read_text() == key, len(key.strip())
        (True, 64)
    """
    try:
        project_key(root)
    except RegistryLabError as exc:
        if str(exc) != KEY_HELP:
            raise
        path = keygen(root)
        say(f"created a new project key at {path.relative_to(root)} (git-ignored); pseudonyms in "
            "releases depend on it: keep it to get the same pseudonyms again", summary=True)


def load_spec(pipeline: str | Path | None, root: Path) -> PipelineSpec:
    """The pipeline ``pipeline`` (a path, relative to ``root`` unless absolute), by default
    ``params/pipeline.yaml`` of the project.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)   # a project root
        >>> (root / "params" / "cohort").mkdir(parents=True)
        >>> _ = (root / "params" / "cohort" / "tiny.yaml").write_text("name: tiny\\nseed: 20240607\\n")
        >>> _ = (root / "params" / "pipeline.yaml").write_text('''cohort: tiny
        ... steps:
        ...   - {name: synth, kind: synth}
        ...   - {name: link, kind: link, needs: [synth]}
        ...   - {name: registry_statistics, kind: notebook, notebook: notebooks/05_registry_statistics.ipynb, needs: [link]}
        ... ''')
        >>> spec = load_spec(None, root)
        >>> spec.cohort, [s.name for s in spec.ordered(["link"])]
        ('tiny', ['synth', 'link'])
        >>> _ = (root / "params" / "synth_only.yaml").write_text("cohort: small\\nsteps: [{name: synth, kind: synth}]\\n")
        >>> spec = load_spec("params/synth_only.yaml", root)       # relative to the root
        >>> spec.cohort, [s.name for s in spec.steps]
        ('small', ['synth'])
        >>> tmp.cleanup()
    """
    path = Path(pipeline) if pipeline else root / "params" / "pipeline.yaml"
    if not path.is_absolute():
        path = root / path
    return PipelineSpec.load(path)


def _config_path(config: str | Path, root: Path) -> Path:
    """A cohort config given on the command line: relative to the working folder, else the root."""
    path = Path(config)
    if not path.is_absolute() and not path.exists():
        path = root / path
    if not path.is_file():
        raise ConfigError(f"{config}: no such cohort config file")
    return path.resolve()


def reproduce(pipeline: str | Path | None = None, *, cohort: str | None = None, force: bool = False,
              root: Path | None = None, config: str | Path | None = None,
              seed: int | None = None) -> list[StepResult]:
    """Run every step of the pipeline; write ``reports/index.html`` and ``reports/manifest.json``.

    The cohort is ``params/cohort/<cohort>.yaml`` (default: the pipeline's), or ``config``, a
    cohort config at any path; ``seed`` overrides the config's seed. The cohort's folder is
    ``synthetic/<name>`` (``<name>-seed<N>`` with another seed), ``name`` from the config.

    Example (a cohort with no config is refused before any step runs):
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)   # a project root
        >>> (root / "params" / "cohort").mkdir(parents=True)
        >>> _ = (root / "params" / "cohort" / "tiny.yaml").write_text("name: tiny\\nseed: 20240607\\n")
        >>> _ = (root / "params" / "pipeline.yaml").write_text('''cohort: tiny
        ... steps:
        ...   - {name: synth, kind: synth}
        ...   - {name: link, kind: link, needs: [synth]}
        ...   - {name: registry_statistics, kind: notebook, notebook: notebooks/05_registry_statistics.ipynb, needs: [link]}
        ... ''')
        >>> reproduce(cohort="smal", root=root)
        Traceback (most recent call last):
        registry_lib.errors.ConfigError: params/cohort/smal.yaml: no such cohort (known: tiny); to study a cohort from another config file use --config FILE
        >>> sorted(p.name for p in root.iterdir())   # nothing generated, no reports written
        ['.registry-lab', 'params']
        >>> tmp.cleanup()
    """
    root = root or project_root()
    with project_lock(root, f"reproduce --cohort {cohort or config or '(pipeline default)'}"):
        return _reproduce(pipeline, cohort=cohort, force=force, root=root, config=config, seed=seed)


def _reproduce(pipeline: str | Path | None, *, cohort: str | None, force: bool, root: Path,
               config: str | Path | None = None, seed: int | None = None) -> list[StepResult]:
    from registry_lib.pipeline.manifest import write_index, write_manifest

    spec = load_spec(pipeline, root)
    pipe = Pipeline(spec, root, cohort=cohort, force=force, config=config, seed=seed)
    pipe.cohort_config()  # a missing cohort is a user mistake: say so before doing anything
    for step in spec.steps:  # every study's parameters are checked before any step runs
        if step.kind == "notebook":
            pipe.study_parameters(step)
    ensure_project_key(root)  # linkage (opt-out hashes) and releases (pseudonyms) need it
    if pipe.cohort != spec.cohort:
        say(f"reproduce --cohort {pipe.cohort}: the published reports in reports/ (index, study reports, "
            f"tables, figures, results.json) are replaced by the {pipe.cohort!r} cohort's; "
            f"'registry-lab reproduce' puts the {spec.cohort!r} ones back", summary=True)
    started = _now()
    try:
        pipe.run()
    finally:
        write_index(pipe, root / "reports")
        write_manifest(pipe, root / "reports", started=started)
    return pipe.results


def run_study(study: str, *, cohort: str | None = None, overrides: dict[str, Any] | None = None,
              params_file: str | Path | None = None, pipeline: str | Path | None = None,
              root: Path | None = None, config: str | Path | None = None,
              seed: int | None = None) -> Path:
    """Run one study with other parameters into ``reports/<study>-<params hash>/``.

    Upstream steps (synth, link, releases) run first if they are out of date. The cohort is
    chosen as in :func:`reproduce` (``cohort``, or ``config`` at any path, and ``seed``).

    Example (what is not a study is refused before any step runs):
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)   # a project root
        >>> (root / "params" / "cohort").mkdir(parents=True)
        >>> _ = (root / "params" / "cohort" / "tiny.yaml").write_text("name: tiny\\nseed: 20240607\\n")
        >>> _ = (root / "params" / "pipeline.yaml").write_text('''cohort: tiny
        ... steps:
        ...   - {name: synth, kind: synth}
        ...   - {name: link, kind: link, needs: [synth]}
        ...   - {name: registry_statistics, kind: notebook, notebook: notebooks/05_registry_statistics.ipynb, needs: [link]}
        ... ''')
        >>> run_study("link", root=root)
        Traceback (most recent call last):
        registry_lib.errors.ConfigError: 'link' is a link step, not a study
        >>> run_study("survival", root=root)
        Traceback (most recent call last):
        registry_lib.errors.ConfigError: unknown study 'survival'; the studies are: registry_statistics
        >>> tmp.cleanup()
    """
    root = root or project_root()
    with project_lock(root, f"run {study} --cohort {cohort or config or '(pipeline default)'}"):
        return _run_study(study, cohort=cohort, overrides=overrides, params_file=params_file,
                          pipeline=pipeline, root=root, config=config, seed=seed)


def _run_study(study: str, *, cohort: str | None, overrides: dict[str, Any] | None,
               params_file: str | Path | None, pipeline: str | Path | None, root: Path,
               config: str | Path | None = None, seed: int | None = None) -> Path:
    spec = load_spec(pipeline, root)
    step = spec.step(study)
    if step.kind != "notebook":
        raise ConfigError(f"{study!r} is a {step.kind} step, not a study")
    pipe = Pipeline(spec, root, cohort=cohort, config=config, seed=seed)
    pipe.cohort_config()
    ensure_project_key(root)
    merged = dict(overrides or {})
    if params_file:
        extra = load_plain_file(Path(params_file))
        merged = {**extra, **merged}
    params = pipe.study_parameters(step, merged)
    digest = params_hash({k: v for k, v in params.items() if k != "output_dir"})[:8]
    label = validate_name(f"{study}-{digest}", "report")
    inside(root / "reports" / label, root / "reports", "report folder")
    params["output_dir"] = f"reports/{label}"
    for need in spec.ordered(list(step.needs)):
        pipe.run_step(need)
    (root / "reports" / label).mkdir(parents=True, exist_ok=True)
    (root / "reports" / label / "params.yaml").write_text(_yaml_dump(params))
    result = pipe.run_step(step, parameters=params, report_dir=root / "reports" / label, label=label)
    from registry_lib.pipeline.manifest import write_run_times

    write_run_times(root / "reports", {label: {"finished": result.output_finished,
                                               "seconds": result.output_seconds}})
    return root / "reports" / label


def _yaml_dump(params: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(params, sort_keys=True)
