"""The pipeline definition (``params/pipeline.yaml``): steps, their kinds and dependencies.

Example:
    >>> spec = PipelineSpec.from_dict({"cohort": "small", "steps": [
    ...     {"name": "synth", "kind": "synth"},
    ...     {"name": "link", "kind": "link", "needs": ["synth"]}]})
    >>> [s.name for s in spec.ordered()]
    ['synth', 'link']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_lib.config import load_yaml
from registry_lib.errors import ConfigError
from registry_lib.paths import NAME_PATTERN, validate_name

STEP_KINDS = {"synth", "link", "release", "notebook"}
STEP_KEYS = {"name", "kind", "needs", "config", "evaluate", "compare_methods", "policy", "requester", "notebook",
             "params", "title", "question"}  # title and question: shown on the reports index


@dataclass(frozen=True)
class Step:
    """One pipeline step. ``notebook`` steps are studies: their name is the study name.

    Example:
        >>> step = Step("release_research", "release", ("link",), {"policy": "research_pseudonymised"})
        >>> step.option("policy"), step.option("requester", "unknown")
        ('research_pseudonymised', 'unknown')
    """

    name: str
    kind: str
    needs: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass(frozen=True)
class PipelineSpec:
    """The cohort the pipeline runs on and its steps.

    Example:
        >>> spec = PipelineSpec.from_dict({"cohort": "tiny", "steps": [
        ...     {"name": "link", "kind": "link", "needs": ["synth"]}, {"name": "synth", "kind": "synth"}]})
        >>> spec.cohort, [s.name for s in spec.ordered()]
        ('tiny', ['synth', 'link'])
    """

    cohort: str
    steps: tuple[Step, ...]
    source: str = "params/pipeline.yaml"

    @classmethod
    def load(cls, path: Path) -> PipelineSpec:
        return cls.from_dict(load_yaml(path), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "pipeline") -> PipelineSpec:
        unknown = set(data) - {"cohort", "steps"}
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        steps = []
        for i, raw in enumerate(data.get("steps") or []):
            if not isinstance(raw, dict) or "name" not in raw or "kind" not in raw:
                raise ConfigError(f"{source}: step {i + 1} needs a name and a kind")
            bad = set(raw) - STEP_KEYS
            if bad:
                raise ConfigError(f"{source}: step {raw['name']} has unknown key(s) {', '.join(sorted(bad))}")
            if raw["kind"] not in STEP_KINDS:
                raise ConfigError(f"{source}: step {raw['name']} has unknown kind {raw['kind']!r} "
                                  f"(expected one of {', '.join(sorted(STEP_KINDS))})")
            if not isinstance(raw["name"], str) or not NAME_PATTERN.fullmatch(raw["name"]):
                raise ConfigError(f"{source}: step name {raw['name']!r} is not allowed: use letters, "
                                  "digits, _ and - only, starting with a letter or digit")
            needs = raw.get("needs") or ()
            if isinstance(needs, str) or not all(isinstance(n, str) for n in needs):
                raise ConfigError(f"{source}: step {raw['name']} needs must be a list of step names")
            if raw["kind"] == "release":
                validate_name(raw.get("policy"), f"{source}: step {raw['name']} policy")
            options = {k: v for k, v in raw.items() if k not in {"name", "kind", "needs"}}
            steps.append(Step(raw["name"], raw["kind"], tuple(raw.get("needs") or ()), options))
        names = [s.name for s in steps]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ConfigError(f"{source}: duplicate step name(s) {', '.join(sorted(dupes))}")
        for s in steps:
            for need in s.needs:
                if need not in names:
                    raise ConfigError(f"{source}: step {s.name} needs unknown step {need!r}")
        cohort = validate_name(data.get("cohort", "default"), f"{source}: cohort")
        spec = cls(cohort, tuple(steps), source)
        spec.ordered()  # raises on a cycle
        return spec

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        studies = ", ".join(s.name for s in self.steps if s.kind == "notebook")
        raise ConfigError(f"unknown study {name!r}; the studies are: {studies}")

    def ordered(self, targets: list[str] | None = None) -> list[Step]:
        """Steps in dependency order (stable: file order among independent steps).

        With ``targets``, only those steps and everything they need.
        """
        by_name = {s.name: s for s in self.steps}
        wanted: set[str] = set()

        def collect(name: str, trail: tuple[str, ...] = ()) -> None:
            if name in trail:
                raise ConfigError(f"{self.source}: steps depend on each other in a cycle: {' -> '.join((*trail, name))}")
            if name in wanted:
                return
            for need in by_name[name].needs:
                collect(need, (*trail, name))
            wanted.add(name)

        for name in targets or list(by_name):
            collect(name)
        done: list[Step] = []
        remaining = [s for s in self.steps if s.name in wanted]
        while remaining:
            ready = [s for s in remaining if all(n in {d.name for d in done} for n in s.needs)]
            done.extend(ready)
            remaining = [s for s in remaining if s not in ready]
        return done
