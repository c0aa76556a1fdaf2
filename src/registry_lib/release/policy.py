"""Release policies: purpose → fields, generalisations, opt-outs, output form, disclosure rules.

A policy is ``params/release/<name>.yaml``. It states:

- ``purpose``: one of :data:`PURPOSES`;
- ``national_data_opt_out``: whether NDOP applies (English defaults: yes for research releases,
  identifiable or pseudonymised; no for direct care and for anonymised aggregate statistics —
  epidemiology.md, "Opt-outs"). Registration opt-outs never appear: linkage removed them;
- ``output``: ``record_level`` or ``aggregates``;
- ``patient_key``: the release column that links a patient's rows across tables;
- ``tables`` (record level): per registry table, the released fields, each
  ``name: <transform>`` or ``name: {from: <registry column>, transform: <transform>}`` with
  a transform from :data:`TRANSFORMS` (generalisations: birth date to year, dates to month,
  age to 5-year band, postcode to district, area to region; keyed pseudonyms and re-keyed ids);
- ``aggregates`` (aggregates only): cubes of counts and their dimensions;
- ``forbidden``: fields that must never be released under this policy (for
  ``research_pseudonymised`` and ``aggregate_publication`` the direct identifiers and the
  registry's own ids are always forbidden, whatever the file says);
- ``risk``: quasi-identifiers and k for the re-identification risk report;
- ``disclosure``: threshold, rounding and secondary suppression for published tables.

Example:
    >>> p = load_policy("research_pseudonymised")
    >>> p.purpose, p.national_data_opt_out, p.output
    ('research_pseudonymised', True, 'record_level')
    >>> "nhs_number" in p.forbidden
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from registry_lib.config import load_yaml, params_hash
from registry_lib.errors import ConfigError, RegistryLabError
from registry_lib.linkage.tables import REGISTRY
from registry_lib.paths import project_root, validate_name

PURPOSES = ("direct_care", "research_identifiable", "research_pseudonymised", "aggregate_publication")
OUTPUTS = ("record_level", "aggregates")
#: Direct identifiers of the registry's patient table.
DIRECT_IDENTIFIERS = ("nhs_number", "given_name", "family_name", "birth_date", "postcode")
#: The registry's own ids: released only re-keyed.
REGISTRY_IDS = ("patient_id", "tumour_id", "treatment_id")
#: Purposes whose releases must never carry a direct identifier or a registry id.
DEIDENTIFIED_PURPOSES = ("research_pseudonymised", "aggregate_publication")

#: transform -> (what it does, source types it accepts, output Arrow type or None = same as source)
TRANSFORMS: dict[str, tuple[str, tuple[str, ...], pa.DataType | None]] = {
    "copy": ("released as held", ("any",), None),
    "pseudonym": ("HMAC-SHA256 of the patient's NHS number under the project key", ("any",), pa.string()),
    "rekey": ("HMAC-SHA256 of the registry id under the project key (per purpose)", ("any",), pa.string()),
    "year": ("date coarsened to its calendar year", ("date",), pa.int16()),
    "month": ("date coarsened to its month, 'YYYY-MM'", ("date",), pa.string()),
    "age_band": ("age coarsened to the lower bound of its 5-year band (90 = 90+)", ("int",), pa.int8()),
    "district": ("postcode coarsened to its district (outward code)", ("string",), pa.string()),
    "region": ("area replaced by its region (reference/areas)", ("string",), pa.string()),
}
HASHED = ("pseudonym", "rekey")
#: Identifying transforms do not make a forbidden source safe; the others generalise it.
IDENTIFYING = ("copy",)

#: Dimensions an aggregate cube may use: name -> (SQL over registry tumour t and patient p,
#: type, meaning)
CUBE_DIMENSIONS: dict[str, tuple[str, pa.DataType, str]] = {
    "diagnosis_year": ("CAST(year(t.diagnosis_date) AS SMALLINT)", pa.int16(), "year of diagnosis"),
    "sex": ("p.sex", pa.int8(), "1 male, 2 female"),
    # (DuckDB's least() ignores NULL, so an unknown age must stay NULL explicitly)
    "age_band": ("CAST(CASE WHEN t.age_at_diagnosis >= 90 THEN 90 "
                 "ELSE floor(t.age_at_diagnosis / 5) * 5 END AS TINYINT)", pa.int8(),
                 "5-year band of age at diagnosis: 0, 5, ..., 90 (90 = 90+)"),
    "site_icd10": ("t.site_icd10", pa.string(), "ICD-10 3-character site"),
    "stage": ("t.stage", pa.string(), "1-4 or U (unknown)"),
    "area_id": ("t.area_id", pa.string(), "area of residence at diagnosis"),
    "route_to_diagnosis": ("t.route_to_diagnosis", pa.string(), "Routes to Diagnosis category"),
}


@dataclass(frozen=True)
class FieldSpec:
    """One released column: its name, the registry column it comes from and the transform.

    Example:
        >>> spec = load_policy("research_pseudonymised").tables["patient"][0]
        >>> isinstance(spec, FieldSpec), spec.table
        (True, 'patient')
    """

    table: str
    name: str
    source: str
    transform: str

    def arrow_type(self) -> pa.DataType:
        out = TRANSFORMS[self.transform][2]
        if out is not None:
            return out
        return {c.name: c.type for c in REGISTRY[self.table].columns}[self.source]


@dataclass(frozen=True)
class Disclosure:
    """Disclosure-control settings for tables published from this release.

    Example:
        >>> Disclosure().threshold, Disclosure().rounding
        (7, 5)
    """

    threshold: int = 7
    rounding: int | str | None = 5
    secondary: bool = True
    survival_rounding: int | str | None = "midpoint6"


@dataclass(frozen=True)
class Policy:
    """A validated release policy (see the module docstring).

    Example:
        >>> p = load_policy("aggregate_publication")
        >>> p.output, p.disclosure.threshold
        ('aggregates', 7)
    """

    name: str
    purpose: str
    description: str
    national_data_opt_out: bool
    output: str
    patient_key: str | None
    tables: dict[str, list[FieldSpec]]
    aggregates: dict[str, list[str]]
    forbidden: tuple[str, ...]
    risk: dict[str, Any]
    disclosure: Disclosure
    path: Path
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    #: What happens to patients the NDOP could not be checked for (no valid NHS number on any
    #: record) when the NDOP applies: ``exclude`` (the default: left out, and counted) or ``include``.
    ndop_unchecked: str = "exclude"

    @property
    def needs_key(self) -> bool:
        """True if any field is a keyed hash (so the project key is required)."""
        return any(f.transform in HASHED for fs in self.tables.values() for f in fs)

    @property
    def params_hash(self) -> str:
        return params_hash(self.raw)

    def fields(self, table: str) -> list[str]:
        return [f.name for f in self.tables.get(table, [])]


def policy_dir(root: Path | None = None) -> Path:
    """``params/release`` of the project, where the policies live.

    Example:
        >>> policy_dir(Path("/project")).as_posix()
        '/project/params/release'
    """
    return (root or project_root()) / "params" / "release"


def list_policies(root: Path | None = None) -> list[str]:
    """Names of the policies in ``params/release/``.

    Example:
        >>> sorted(list_policies())[:2]
        ['aggregate_publication', 'direct_care']
    """
    return sorted(p.stem for p in policy_dir(root).glob("*.yaml"))


def resolve_policy_path(policy: str | Path, root: Path | None = None) -> Path:
    """``params/release/<policy>.yaml`` for a name, or the path itself for a path.

    Example:
        >>> resolve_policy_path("direct_care").name
        'direct_care.yaml'
    """
    text = str(policy)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(policy)
        if not path.is_absolute() and not path.exists():
            path = (root or project_root()) / path
        if not path.exists():
            raise ConfigError(f"{policy}: no such release policy file")
        validate_name(path.stem, f"{policy}: policy")
        return path
    validate_name(text, "policy")
    path = policy_dir(root) / f"{text}.yaml"
    if not path.exists():
        known = ", ".join(list_policies(root)) or "(none)"
        raise ConfigError(f"params/release/{text}.yaml: no such release policy (known: {known})")
    return path


def _field_spec(table: str, name: str, spec: Any, where: str) -> FieldSpec:
    if spec is None:
        spec = "copy"
    if isinstance(spec, str):
        source, transform = name, spec
    elif isinstance(spec, dict):
        unknown = set(spec) - {"from", "transform"}
        if unknown:
            raise ConfigError(f"{where}: field {table}.{name} has unknown key(s) {sorted(unknown)}")
        source, transform = spec.get("from", name), spec.get("transform", "copy")
    else:
        raise ConfigError(f"{where}: field {table}.{name} must be a transform name or a mapping")
    if transform not in TRANSFORMS:
        raise ConfigError(
            f"{where}: field {table}.{name} has unknown transform {transform!r} (known: {', '.join(TRANSFORMS)})"
        )
    if transform == "pseudonym":
        source = "patient_id"
    columns = {c.name: c.type for c in REGISTRY[table].columns}
    if source not in columns:
        raise ConfigError(f"{where}: field {table}.{name}: registry/{table} has no column {source!r}")
    kinds = TRANSFORMS[transform][1]
    typ = columns[source]
    kind = "date" if pa.types.is_date(typ) else "int" if pa.types.is_integer(typ) else (
        "string" if pa.types.is_string(typ) else "other")
    if "any" not in kinds and kind not in kinds:
        raise ConfigError(
            f"{where}: field {table}.{name}: transform {transform} needs a {'/'.join(kinds)} "
            f"column but {source} is {typ}"
        )
    if transform == "region" and source != "area_id":
        raise ConfigError(f"{where}: field {table}.{name}: transform region applies to area_id only")
    return FieldSpec(table, name, source, transform)


def _check_forbidden(policy: Policy) -> None:
    """Raise if any field releases a forbidden field (by name, or by copying its source)."""
    where = f"params/release/{policy.path.name}" if policy.path.parent.name == "release" else str(policy.path)
    for table, specs in policy.tables.items():
        for f in specs:
            if f.transform in IDENTIFYING and f.source in policy.forbidden:
                raise RegistryLabError(
                    f"{where}: field {table}.{f.name} releases {f.source} unchanged, which policy "
                    f"{policy.name} (purpose {policy.purpose}) forbids; nothing was released"
                )
            # A re-keyed registry id may keep its name; any other forbidden name may not be used.
            if f.name in policy.forbidden and not (f.name in REGISTRY_IDS and f.transform in HASHED):
                raise RegistryLabError(
                    f"{where}: field {table}.{f.name} is forbidden under policy {policy.name} "
                    f"(purpose {policy.purpose}); nothing was released"
                )
    for cube, dims in policy.aggregates.items():
        for d in dims:
            if d in policy.forbidden:
                raise RegistryLabError(
                    f"{where}: aggregate {cube} groups by {d}, which policy {policy.name} forbids; "
                    "nothing was released"
                )


def load_policy(policy: str | Path, root: Path | None = None) -> Policy:
    """Read and validate a release policy (a name in ``params/release/`` or a YAML path).

    Raises :class:`~registry_lib.errors.ConfigError` for a malformed policy and
    :class:`~registry_lib.errors.RegistryLabError` when a field is forbidden.

    Example:
        >>> load_policy("research_pseudonymised").national_data_opt_out
        True
    """
    path = resolve_policy_path(policy, root)
    raw = load_yaml(path)
    where = str(path.name)
    purpose = raw.get("purpose")
    if purpose not in PURPOSES:
        raise ConfigError(f"{where}: purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    output = raw.get("output")
    if output not in OUTPUTS:
        raise ConfigError(f"{where}: output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    ndop = raw.get("national_data_opt_out")
    if not isinstance(ndop, bool):
        raise ConfigError(f"{where}: national_data_opt_out must be true or false")
    forbidden = list(raw.get("forbidden") or [])
    if purpose in DEIDENTIFIED_PURPOSES:
        forbidden += [f for f in (*DIRECT_IDENTIFIERS, *REGISTRY_IDS) if f not in forbidden]
    tables: dict[str, list[FieldSpec]] = {}
    aggregates: dict[str, list[str]] = {}
    if output == "record_level":
        spec_tables = raw.get("tables") or {}
        if not isinstance(spec_tables, dict) or not spec_tables:
            raise ConfigError(f"{where}: a record-level policy needs a 'tables' mapping")
        for table, fields in spec_tables.items():
            if table not in ("patient", "tumour", "treatment", "screening", "cpes"):
                raise ConfigError(f"{where}: unknown table {table!r} (patient, tumour, treatment, screening, cpes)")
            if not isinstance(fields, dict) or not fields:
                raise ConfigError(f"{where}: table {table} needs a mapping of fields")
            tables[table] = [_field_spec(table, n, s, where) for n, s in fields.items()]
        key = raw.get("patient_key")
        if not key:
            raise ConfigError(f"{where}: a record-level policy needs patient_key (the linking column)")
        for table, specs in tables.items():
            if key not in [f.name for f in specs]:
                raise ConfigError(f"{where}: table {table} lacks the patient_key column {key!r}")
        if "patient" not in tables:
            raise ConfigError(f"{where}: a record-level policy must release the patient table")
    else:
        cubes = raw.get("aggregates") or {}
        if not isinstance(cubes, dict) or not cubes:
            raise ConfigError(f"{where}: an aggregates policy needs an 'aggregates' mapping")
        for cube, spec in cubes.items():
            dims = list((spec or {}).get("group_by") or [])
            bad = [d for d in dims if d not in CUBE_DIMENSIONS and d not in forbidden]
            if bad:
                raise ConfigError(
                    f"{where}: aggregate {cube}: unknown dimension(s) {bad} (known: {', '.join(CUBE_DIMENSIONS)})"
                )
            if not dims:
                raise ConfigError(f"{where}: aggregate {cube} needs group_by dimensions")
            aggregates[cube] = dims
        key = None
    disc = raw.get("disclosure") or {}
    unknown = set(disc) - {"threshold", "rounding", "secondary", "survival_rounding"}
    if unknown:
        raise ConfigError(f"{where}: disclosure has unknown key(s) {sorted(unknown)}")
    risk = dict(raw.get("risk") or {})
    unchecked = raw.get("national_data_opt_out_unchecked", "exclude")
    if unchecked not in ("exclude", "include"):
        raise ConfigError(f"{where}: national_data_opt_out_unchecked must be exclude or include, not {unchecked!r}")
    pol = Policy(
        ndop_unchecked=unchecked,
        name=path.stem,
        purpose=purpose,
        description=str(raw.get("description", "")).strip(),
        national_data_opt_out=ndop,
        output=output,
        patient_key=key,
        tables=tables,
        aggregates=aggregates,
        forbidden=tuple(forbidden),
        risk=risk,
        disclosure=Disclosure(**disc),
        path=path,
        raw=raw,
    )
    _check_forbidden(pol)
    return pol
