"""Synthetic England: a cancer registry generator whose feeds look real and whose effects are known.

``generate(config)`` builds the reference data (areas, populations, life tables, point sources,
trusts, standard populations), the true patients, tumours and treatments, the raw feeds and the
truth of every feed record; ``write(cohort, path)`` writes them atomically as Parquet.

Example:
    >>> from registry_lib import synth
    >>> cfg = synth.load_config("params/cohort/small.yaml", scale=0.0005, years=(2019, 2019))
    >>> cfg["years"]
    [2019, 2019]
"""

from __future__ import annotations

from typing import Any

__all__ = ["Cohort", "generate", "load_config", "run", "write"]


def __getattr__(name: str) -> Any:
    # Lazy: importing registry_lib.synth.identities etc. must not pull in the whole generator.
    if name in {"Cohort", "generate", "write"}:
        from registry_lib.synth import cohort

        return getattr(cohort, name)
    if name == "run":
        from registry_lib.synth.make import run

        return run
    if name == "load_config":
        from registry_lib.synth.config import load_config

        return load_config
    raise AttributeError(f"module 'registry_lib.synth' has no attribute {name!r}")
