"""Running the pipeline: steps in dependency order, skipping what is unchanged.

Example (from a shell): ``registry-lab reproduce --cohort small``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import registry_lib
from registry_lib.config import load_yaml, params_hash
from registry_lib.errors import ConfigError, RegistryLabError
from registry_lib.keys import KEY_HELP, keygen, project_key
from registry_lib.paths import cohort_dir, project_root
from registry_lib.pipeline.cache import StepState, code_hash, combine, hash_files
from registry_lib.pipeline.notebooks import NotebookFailed, execute_notebook, render_html
from registry_lib.pipeline.spec import PipelineSpec, Step
from registry_lib.progress import say
from registry_lib.reporting.document import rerun_command

RESERVED_PARAMS = {"cohort", "output_dir"}


@dataclass
class StepResult:
    """What happened to one step."""

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
    """A pipeline bound to a project root and a cohort."""

    def __init__(self, spec: PipelineSpec, root: Path, cohort: str | None = None, force: bool = False):
        self.spec = spec
        self.root = root
        self.cohort = cohort or spec.cohort
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
        return combine(step.name, step.kind, step.options, self.cohort, self.code, params, upstream, extra)

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
            except NotebookFailed:
                self._finish(step, label, "failed", started, t0, parameters, report_dir)
                raise
            state.record(key, hash_files(outputs, self.root))
            status = "ran"
            state.record_run(_now(), round(time.perf_counter() - t0, 2))
        # Downstream keys depend on the outputs' content, not only on this step's key.
        self._keys[step.name] = combine(key, hash_files(outputs, self.root))
        return self._finish(step, label, status, started, t0, parameters, report_dir, state.last_run())

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
            params = parameters or {}
            defaults = self.study_defaults(step)
            published = report_dir is None
            render_html(executed, folder / f"{folder.name}.html", context={
                "study": step.name, "folder": folder, "cohort": self.cohort, "params": params,
                "defaults": defaults, "run_key": folder.name, "root": self.root,
                "rerun": rerun_command(step.name, self.cohort, params, defaults, published=published,
                                       default_cohort=self.spec.cohort)})

    # ---- study parameters ---------------------------------------------------------------
    def study_defaults(self, step: Step) -> dict[str, Any]:
        """The study's parameters as ``params/studies/<study>.yaml`` sets them."""
        params_file = self.study_params_file(step)
        return load_yaml(params_file) if params_file.exists() else {}

    def study_parameters(self, step: Step, overrides: dict[str, Any] | None = None,
                         output_dir: str | None = None) -> dict[str, Any]:
        params_file = self.study_params_file(step)
        base = load_yaml(params_file) if params_file.exists() else {}
        for key in (overrides or {}):
            if key not in base:
                known = ", ".join(sorted(base)) or "(none)"
                raise ConfigError(f"{params_file.relative_to(self.root)}: study {step.name} has no "
                                  f"parameter {key!r} (known: {known})")
        params = {**base, **(overrides or {})}
        params["cohort"] = self.cohort
        params["output_dir"] = output_dir or f"reports/{step.name}"
        return params


def ensure_project_key(root: Path) -> None:
    """Make a project key on first use in a fresh clone, saying so (never a silent default)."""
    try:
        project_key(root)
    except RegistryLabError as exc:
        if str(exc) != KEY_HELP:
            raise
        path = keygen(root)
        say(f"created a new project key at {path.relative_to(root)} (git-ignored); pseudonyms in "
            "releases depend on it: keep it to get the same pseudonyms again", summary=True)


def load_spec(pipeline: str | Path | None, root: Path) -> PipelineSpec:
    path = Path(pipeline) if pipeline else root / "params" / "pipeline.yaml"
    if not path.is_absolute():
        path = root / path
    return PipelineSpec.load(path)


def reproduce(pipeline: str | Path | None = None, *, cohort: str | None = None, force: bool = False,
              root: Path | None = None) -> list[StepResult]:
    """Run every step of the pipeline; write ``reports/index.html`` and ``reports/manifest.json``."""
    from registry_lib.pipeline.manifest import write_index, write_manifest

    root = root or project_root()
    spec = load_spec(pipeline, root)
    pipe = Pipeline(spec, root, cohort=cohort, force=force)
    pipe.cohort_config()  # a missing cohort is a user mistake: say so before doing anything
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
              root: Path | None = None) -> Path:
    """Run one study with other parameters into ``reports/<study>-<params hash>/``.

    Upstream steps (synth, link, releases) run first if they are out of date.
    """
    root = root or project_root()
    spec = load_spec(pipeline, root)
    step = spec.step(study)
    if step.kind != "notebook":
        raise ConfigError(f"{study!r} is a {step.kind} step, not a study")
    pipe = Pipeline(spec, root, cohort=cohort)
    pipe.cohort_config()
    ensure_project_key(root)
    merged = dict(overrides or {})
    if params_file:
        extra = load_yaml(Path(params_file))
        merged = {**extra, **merged}
    params = pipe.study_parameters(step, merged)
    digest = params_hash({k: v for k, v in params.items() if k != "output_dir"})[:8]
    label = f"{study}-{digest}"
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


def environment_summary() -> dict[str, Any]:
    """Python and package versions for the manifest."""
    import platform
    from importlib import metadata

    packages = {d.metadata["Name"].lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return {"python": platform.python_version(), "platform": platform.system().lower(),
            "packages": dict(sorted(packages.items()))}
