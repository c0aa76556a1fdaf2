"""``registry-lab synth``: a cohort from its config file, generated in memory or chunk by chunk.

A cohort of at most ``chunk_areas`` areas is generated whole (:func:`registry_lib.synth.cohort.generate`)
and written (:func:`~registry_lib.synth.cohort.write`); a larger one (England) is generated and
written chunk by chunk (:func:`registry_lib.synth.chunks.write_chunked`).

Example:
    >>> from registry_lib.synth.chunks import chunk_size
    >>> chunk_size({"chunk_areas": 500})
    500
"""

from __future__ import annotations

import time
from pathlib import Path

from registry_lib.errors import RegistryLabError
from registry_lib.progress import in_ci, say
from registry_lib.synth.chunks import chunk_size, write_chunked
from registry_lib.synth.cohort import _say_done, _Timer, generate_part, setup, write
from registry_lib.synth.config import load_config


def run(config_path: Path | str, *, seed: int | None = None, scale: float | None = None,
        years: tuple[int, int] | None = None, out: Path | str | None = None) -> Path:
    """What ``registry-lab synth`` calls: load the config, generate, write; returns the folder.

    Example:
        >>> import tempfile
        >>> from registry_lib.paths import project_root
        >>> with tempfile.TemporaryDirectory() as d:
        ...     taken = Path(d, "cohort.txt"); _ = taken.write_text("not a cohort")
        ...     try:
        ...         run(project_root() / "params" / "cohort" / "tiny.yaml", out=taken)
        ...     except RegistryLabError as e:
        ...         print(str(e).replace(str(taken.resolve()), "<out>"))
        <out>: exists and is not a folder; choose another --out
    """
    from registry_lib.config import load_yaml
    from registry_lib.paths import cohort_dir, cohort_folder_name

    cfg = load_config(config_path, seed=seed, scale=scale, years=years)
    target = Path(out).resolve() if out else cohort_dir(cohort_folder_name(
        cfg["name"], seed, config_seed=load_yaml(Path(config_path)).get("seed")))
    if target.exists() and not target.is_dir():
        raise RegistryLabError(f"{target}: exists and is not a folder; choose another --out")
    quiet = in_ci()
    timer = _Timer(quiet)
    ctx = setup(cfg, timer)
    if len(ctx.geo.areas) > chunk_size(cfg):   # out of core: generated and written chunk by chunk
        sizes = write_chunked(ctx, target)
        say(f"synth: {cfg['name']} done in {sum(timer.times.values()) + time.perf_counter() - timer.t:.1f} s - "
            f"{sizes['patients']:,} patients, {sizes['tumours']:,} tumours, {sizes['feed_records']:,} feed records "
            f"({sizes['chunks']} chunks; seconds by stage, all chunks: "
            f"{', '.join(f'{k} {v}' for k, v in sizes['stage_seconds'].items())})", summary=True)
        return target
    cohort = generate_part(ctx, ctx.rng, timer)
    _say_done(cohort, timer, quiet)
    t = time.perf_counter()
    write(cohort, target)
    say(f"synth: write        {time.perf_counter() - t:6.2f} s  {target}")
    return target
