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
from registry_lib.paths import cohort_dir, inside, project_root, validate_name
from registry_lib.pipeline.cache import StepState, code_hash, combine, hash_files
from registry_lib.pipeline.notebooks import NotebookFailed, execute_notebook, render_html
from registry_lib.pipeline.spec import PipelineSpec, Step
from registry_lib.progress import say
from registry_lib.runlock import project_lock

RESERVED_PARAMS = {"cohort", "output_dir"}


@dataclass
class StepResult:
    """What happened to one step.

    Example:
        >>> r = StepResult("link", "link", "skipped", "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:01+00:00", 1.0)
        >>> r.status, r.report
        ('skipped', None)
    """

    name: str
    kind: str
    status: str  # ran | skipped | failed
    started: str
    finished: str
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)
    report: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Pipeline:
    """A pipeline bound to a project root and a cohort.

    Example:
        >>> pipe = Pipeline(load_spec(None, project_root()), project_root(), cohort="tiny")
        >>> pipe.cohort_path.name, pipe.cohort_config().name
        ('tiny', 'tiny.yaml')
    """

    def __init__(self, spec: PipelineSpec, root: Path, cohort: str | None = None, force: bool = False):
        self.spec = spec
        self.root = root
        self.cohort = validate_name(cohort or spec.cohort, "cohort")
        self.force = force
        self.code = code_hash(Path(registry_lib.__file__).parent)
        self.results: list[StepResult] = []
        self._keys: dict[str, str] = {}

    # ---- paths --------------------------------------------------------------------------
    @property
    def cohort_path(self) -> Path:
        return cohort_dir(self.cohort, self.root)

    def cohort_config(self) -> Path:
        path = self.root / "params" / "cohort" / f"{self.cohort}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in (self.root / "params" / "cohort").glob("*.yaml")))
            raise ConfigError(f"params/cohort/{self.cohort}.yaml: no such cohort (known: {known})")
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
                       current_fingerprint(self.root))

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
        # Downstream keys depend on the outputs' content, not only on this step's key.
        self._keys[step.name] = combine(key, hash_files(outputs, self.root))
        return self._finish(step, label, status, started, t0, parameters, report_dir)

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

    def _finish(self, step, label, status, started, t0, parameters, report_dir) -> StepResult:
        seconds = round(time.perf_counter() - t0, 2)
        report = None
        if step.kind == "notebook":
            folder = report_dir or self.root / "reports" / step.name
            report = str((folder / f"{folder.name}.html").relative_to(self.root / "reports"))
        result = StepResult(label, step.kind, status, started, _now(), seconds, parameters or {}, report)
        self.results.append(result)
        say(f"[{label}] {status} in {seconds:.1f} s", summary=True)
        return result

    def _execute(self, step: Step, parameters: dict[str, Any] | None, report_dir: Path | None) -> None:
        if step.kind == "synth":
            from registry_lib import synth

            synth.run(self.cohort_config(), out=self.cohort_path)
        elif step.kind == "link":
            from registry_lib import linkage

            linkage.run(self.cohort_path, evaluate=bool(step.option("evaluate", False)),
                        threshold=step.option("threshold"))
        elif step.kind == "release":
            from registry_lib import release

            release.run(self.cohort_path, step.option("policy"),
                        step.option("requester", "registry-lab reproduce"))
        else:
            folder = report_dir or self.root / "reports" / step.name
            executed = folder / f"{folder.name}.ipynb"
            execute_notebook(self.root / step.option("notebook"), executed, parameters or {}, self.root)
            render_html(executed, folder / f"{folder.name}.html")

    # ---- study parameters ---------------------------------------------------------------
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

    Example:
        >>> import os; os.environ["REGISTRY_LAB_KEY"] = "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a"
        >>> ensure_project_key(project_root())   # a key is configured: nothing to do, nothing said
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
    """The pipeline spec at ``pipeline`` (relative to ``root``; default ``params/pipeline.yaml``).

    Example:
        >>> spec = load_spec(None, project_root())
        >>> spec.ordered()[0].name
        'synth'
    """
    path = Path(pipeline) if pipeline else root / "params" / "pipeline.yaml"
    if not path.is_absolute():
        path = root / path
    return PipelineSpec.load(path)


def reproduce(pipeline: str | Path | None = None, *, cohort: str | None = None, force: bool = False,
              root: Path | None = None) -> list[StepResult]:
    """Run every step of the pipeline; write ``reports/index.html`` and ``reports/manifest.json``.

    Example:
        >>> import tempfile   # (a real run: ``reproduce(cohort="small")``)
        >>> with tempfile.TemporaryDirectory() as d:   # a folder that is no project: one clear sentence
        ...     reproduce(root=Path(d))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        registry_lib.errors.ConfigError: .../params/pipeline.yaml: no such params file
    """
    root = root or project_root()
    with project_lock(root, f"reproduce --cohort {cohort or '(pipeline default)'}"):
        return _reproduce(pipeline, cohort=cohort, force=force, root=root)


def _reproduce(pipeline: str | Path | None, *, cohort: str | None, force: bool, root: Path) -> list[StepResult]:
    from registry_lib.pipeline.manifest import write_index, write_manifest

    spec = load_spec(pipeline, root)
    pipe = Pipeline(spec, root, cohort=cohort, force=force)
    pipe.cohort_config()  # a missing cohort is a user mistake: say so before doing anything
    for step in spec.steps:  # every study's parameters are checked before any step runs
        if step.kind == "notebook":
            pipe.study_parameters(step)
    ensure_project_key(root)  # linkage (opt-out hashes) and releases (pseudonyms) need it
    started = _now()
    try:
        pipe.run()
    finally:
        write_index(pipe, root / "reports")
        write_manifest(pipe, root / "reports", started=started)
    return pipe.results


def run_study(study: str, *, cohort: str | None = None, overrides: dict[str, Any] | None = None,
              params_file: str | Path | None = None, pipeline: str | Path | None = None,
              root: Path | None = None) -> Path:
    """Run one study with other parameters into ``reports/<study>-<params hash>/``.

    Upstream steps (synth, link, releases) run first if they are out of date.

    Example:
        >>> import tempfile   # (a real run: ``run_study("cohort_overview", cohort="small")``)
        >>> with tempfile.TemporaryDirectory() as d:   # a folder that is no project: one clear sentence
        ...     run_study("cohort_overview", root=Path(d))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        registry_lib.errors.ConfigError: .../params/pipeline.yaml: no such params file
    """
    root = root or project_root()
    with project_lock(root, f"run {study} --cohort {cohort or '(pipeline default)'}"):
        return _run_study(study, cohort=cohort, overrides=overrides, params_file=params_file,
                          pipeline=pipeline, root=root)


def _run_study(study: str, *, cohort: str | None, overrides: dict[str, Any] | None,
               params_file: str | Path | None, pipeline: str | Path | None, root: Path) -> Path:
    spec = load_spec(pipeline, root)
    step = spec.step(study)
    if step.kind != "notebook":
        raise ConfigError(f"{study!r} is a {step.kind} step, not a study")
    pipe = Pipeline(spec, root, cohort=cohort)
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
    pipe.run_step(step, parameters=params, report_dir=root / "reports" / label, label=label)
    (root / "reports" / label / "params.yaml").write_text(_yaml_dump(params))
    return root / "reports" / label


def _yaml_dump(params: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(params, sort_keys=True)
