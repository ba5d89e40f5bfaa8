"""Crash-safe, resumable, multi-process generation of a data set (``jaxsky generate``).

The parent lays out the whole design (deterministic in (preset, survey, N, seed, kind)) and
hands chunks of indices to worker processes (``ProcessPoolExecutor``; ``fork`` on Linux when
the parent runs no other thread and has not started JAX, else ``spawn``). Each worker renders
its chunk into preallocated arrays and writes it whole to ``OUT.partial/chunk-KKKKKK.h5``
through a temporary file and ``os.replace`` (see :mod:`jaxsky.data._chunks`): a ``kill -9`` at
any moment loses at most the chunks in flight, never a written one. Workers compress their own
chunks, except when the machine has a core to spare (workers < CPUs, at most 4 workers): then
they write them uncompressed and the parent compresses while they render (also with
``workers=1``, one forked worker). The parent copies the compressed chunks, in index order as
they arrive, into ``OUT.partial/assembly.h5`` (no arrays pickled between processes; HDF5's own
filter, so the bytes are the same whichever process compressed), and renames it to ``OUT``
once complete. Workers exit when their parent dies. ``--resume`` checks the chunk files
(sha256) and re-renders only missing or damaged ones. Image i depends only on (seed, i) and the
design, so resumed, sharded+merged and uninterrupted runs give identical files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from jaxsky.data._chunks import PARTIAL_FORMAT, chunk_ok, prepare_partial
from jaxsky.data._workers import Assembler, Job, render_range, run_in_process, run_pool
from jaxsky.data._workers import start_method as default_start_method
from jaxsky.data.dataset import assign_splits
from jaxsky.data.design import index_seeds
from jaxsky.data.presets import get_preset
from jaxsky.data.presets.analytic import AnalyticPreset
from jaxsky.data.presets.base import Design
from jaxsky.data.store import COMPRESSION
from jaxsky.data.surveys import get_survey
from jaxsky.errors import DataError, UserError

__all__ = ["generate", "plan_run", "parse_shard", "versions", "BACKENDS", "render_range"]

_start_method = default_start_method  # the default worker start method (tests, benchmarks)

BACKENDS = ("galsim", "jaxsky")


def versions() -> dict[str, str]:
    """Versions of the packages that determine the images (read without importing JAX)."""
    from importlib.metadata import PackageNotFoundError, version

    import galsim
    import h5py

    import jaxsky

    out = {"jaxsky": jaxsky.__version__, "galsim": galsim.__version__}
    out.update({"numpy": np.__version__, "h5py": h5py.__version__})
    for name in ("scipy", "jax"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover
            out[name] = "not installed"
    return out


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"k/K"`` (0 <= k < K) -> (k, K); None passes through."""
    if spec is None:
        return None
    try:
        k, total = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise UserError(f"--shard={spec!r} must look like k/K, e.g. 0/4") from None
    if total < 1 or not 0 <= k < total:
        raise UserError(f"--shard={spec!r}: need K >= 1 and 0 <= k < K (k is 0-based)")
    return k, total


def _check_int(name, value, lo):
    if isinstance(value, bool) or int(value) != value or value < lo:
        raise UserError(f"{name}={value!r} must be an integer >= {lo}")
    return int(value)


@dataclasses.dataclass
class Run:
    """Everything fixed before rendering starts (the parent's plan)."""

    preset: object
    survey: object
    design: Design
    config: dict
    start: int
    stop: int
    chunk: int
    header: dict
    arrays: dict
    extra: dict
    preset_kwargs: dict


def plan_run(
    preset, n, *, seed, survey=None, kind="lhs", chunk=64, shard=None, backend="galsim",
    catalog=None, split_fractions=(0.8, 0.1, 0.1), stream=0, ranges=None, compression="lzf",
) -> Run:  # fmt: skip
    """Validate the inputs and lay out the design, seeds, splits and the file header."""
    n = _check_int("n", n, 1)
    if compression not in COMPRESSION:
        raise UserError(f"--compression={compression!r} is not one of {tuple(COMPRESSION)}")
    seed = _check_int("seed", seed, 0)
    chunk = _check_int("chunk", chunk, 1)
    if backend not in BACKENDS:
        raise UserError(f"--backend={backend!r} is not one of {BACKENDS}")
    preset_name = preset if isinstance(preset, str) else preset.name
    preset_kwargs = {"catalog": catalog, "ranges": ranges or None}
    preset = get_preset(preset, **preset_kwargs)
    survey = get_survey(survey)
    if backend == "jaxsky":
        ok = getattr(preset, "jaxsky_backend", False)
        if not ok or (survey is not None and survey.psf_family == "airy"):
            raise UserError(
                f"the jaxsky backend is validated only for presets paper/sersic with Gaussian or "
                f"Moffat PSFs; got preset {preset_name!r}, survey "
                f"{getattr(survey, 'name', None)!r}: use --backend galsim"
            )
    analytic = isinstance(preset, AnalyticPreset)
    stream = _check_int("stream", stream, 0)
    if analytic:
        design = preset.design(n, seed=seed, survey=survey, kind=kind, stream=stream)
        names = tuple(p.name for p in preset.parameters(survey))
        units = tuple(p.unit for p in preset.parameters(survey))
        ranges = preset.ranges(survey)
        noise = preset.noise_sigma(survey)
    else:
        if stream:
            raise UserError(
                f"preset {preset_name!r} draws catalogue rows: make a hold-out set with a "
                "different --seed instead of --stream"
            )
        design = preset.design(n, seed=seed, survey=survey, kind=kind)
        names, units, ranges = tuple(preset.param_names), tuple(preset.param_units), preset.ranges()
        noise = getattr(preset, "noise_sigma", None)
        noise = noise(survey) if callable(noise) else (survey.noise_sigma if survey else 0.0)
    if design.params.shape != (n, len(names)):
        raise DataError(f"preset {preset_name!r} gave a design of shape {design.params.shape}")
    k, total = shard or (0, 1)
    start, stop = k * n // total, (k + 1) * n // total
    if stop <= start:
        raise UserError(f"--shard={k}/{total} is empty for --n {n}; use fewer shards")
    config = {
        "preset": preset_name,
        "preset_config": preset.config(),
        "survey": None if survey is None else survey.config(),
        "catalog": None if catalog is None else str(Path(catalog).resolve()),
        "n": n,
        "seed": seed,
        "design": kind,
        "stream": stream,
        "backend": backend,
        "chunk": chunk,
        "compression": compression,
        "split_fractions": list(split_fractions),
        "param_names": list(names),
        "param_units": list(units),
        "ranges": {key: list(v) for key, v in ranges.items()},
        "noise": "gaussian sky, sigma per pixel in /noise/sigma; seeds in /noise/seeds",
    }
    config = json.loads(json.dumps(config, default=str))
    idx = np.arange(start, stop)
    split = assign_splits(n, split_fractions, seed=seed)
    header = {
        "config": config,
        "versions": versions(),
        "scale": float(preset.pixel_scale(survey)),
        "n_total": n,
        "index_start": start,
        "index_stop": stop,
        "shard": None if shard is None or total == 1 else {"k": k, "K": total},
    }
    arrays = {
        "params": design.params[start:stop],
        "param_names": names,
        "param_units": units,
        "rows": design.rows[start:stop],
        "noise_sigma": np.full(stop - start, float(noise)),
        "noise_seeds": index_seeds(seed, idx, 1),
        "render_seeds": index_seeds(seed, idx, 0),
        "split": split[start:stop],
    }
    extra = {key: np.asarray(v)[start:stop] for key, v in design.extra.items()}
    return Run(
        preset, survey, design, config, start, stop, chunk, header, arrays, extra, preset_kwargs
    )


def _spare_core(workers: int) -> bool:
    """Whether a core is free beside ``workers`` busy ones (CPU count minus 1-minute load)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover (no load average on this OS)
        load = 0.0
    return (os.cpu_count() or 1) - load >= workers + 1


def generate(
    preset, n, *, seed, out, survey=None, workers=1, shard=None, resume=False,
    overwrite=False, backend="galsim", chunk=256, catalog=None, kind="lhs", stream=0,
    ranges=None, progress=True, compression="lzf", start_method=None,
) -> Path:  # fmt: skip
    """Generate ``n`` images of ``preset`` (under ``survey``) into the HDF5 file ``out``.

    See the module docstring for crash safety; returns the path written. ``shard="k/K"``
    renders the contiguous index range ``[k N / K, (k+1) N / K)`` (merge with
    :func:`jaxsky.data.merge`). ``chunk`` images are rendered, written and stored together
    (larger chunks: less overhead, more lost to a kill). ``compression`` is ``"lzf"`` (fast,
    h5py), ``"gzip"`` (level 1; any HDF5 tool) or ``"none"``. ``start_method`` forces the
    worker start method (``"fork"``/``"spawn"``; default: see :func:`_start_method`).
    """
    out = Path(out)
    workers = _check_int("workers", workers, 1)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    shard_t = parse_shard(shard) if isinstance(shard, str | type(None)) else tuple(shard)
    run = plan_run(
        preset, n, seed=seed, survey=survey, kind=kind, chunk=chunk, shard=shard_t,
        backend=backend, catalog=catalog, stream=stream, ranges=ranges, compression=compression,
    )  # fmt: skip
    manifest = {
        "config": run.config,
        "shard": run.header["shard"],
        "partial_format": PARTIAL_FORMAT,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = prepare_partial(out, manifest, resume=resume, overwrite=overwrite)
    m = run.stop - run.start
    rows = min(run.chunk, m)
    n_chunks = math.ceil(m / run.chunk)
    bounds = [
        (run.start + k * run.chunk, min(run.start + (k + 1) * run.chunk, run.stop))
        for k in range(n_chunks)
    ]
    todo = [
        k
        for k in range(n_chunks)
        if not chunk_ok(partial, k, bounds[k][1] - bounds[k][0], rows=rows)
    ]
    done_images = m - sum(bounds[k][1] - bounds[k][0] for k in todo)
    method = start_method or default_start_method()
    # With a core to spare, the parent compresses while the workers render (their chunk files
    # are then uncompressed); else each worker compresses its own chunk (on a busy machine the
    # parent would only compete with them). Same bytes either way.
    parent_compresses = (
        compression != "none" and backend == "galsim" and workers <= 4 and _spare_core(workers)
    )
    pool = backend == "galsim" and len(todo) > 1 and (workers > 1 or parent_compresses)
    if workers == 1 and method != "fork":
        pool = False  # a spawned worker's start-up (imports) costs more than it saves
    job = Job(
        run.config["preset"], run.preset_kwargs, run.survey, run.design, int(seed), backend,
        partial, rows, "none" if pool and parent_compresses else compression,
    )  # fmt: skip
    asm = Assembler(run, partial, n_chunks, compression)
    try:
        if not pool:
            run_in_process(job, todo, bounds, asm, progress, m, done_images, out.name, run.preset)
        else:
            run_pool(job, todo, bounds, workers, asm, progress, m, done_images, out.name, method)
        asm.finish(out)
    except BaseException:
        asm.abort()
        raise
    shutil.rmtree(partial, ignore_errors=True)
    return out
