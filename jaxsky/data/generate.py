"""Crash-safe, resumable, multi-process generation of a data set (``jaxsky generate``).

The parent lays out the whole design (deterministic in (preset, survey, N, seed, kind)),
hands chunks of indices to worker processes (``ProcessPoolExecutor``, spawn context) and
writes every finished chunk at once to ``OUT.partial/chunk-KKKKKK.npz`` through a temporary
file and ``os.replace``: a ``kill -9`` at any moment loses at most the chunks in flight, never a
written one. ``--resume`` re-renders only the missing chunks. When all are there, the parent
streams them into ``OUT`` (via a temporary sibling, renamed when complete; see
:mod:`jaxsky.data.store`) and removes ``OUT.partial``. Image i depends only on (seed, i) and the
design, so resumed, sharded+merged and uninterrupted runs give identical files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from jaxsky.data._chunks import Progress, chunk_ok, prepare_partial, read_chunk, save_chunk
from jaxsky.data.dataset import assign_splits
from jaxsky.data.design import index_seeds
from jaxsky.data.presets import get_preset
from jaxsky.data.presets.analytic import AnalyticPreset
from jaxsky.data.presets.base import Design
from jaxsky.data.store import write_dataset
from jaxsky.data.surveys import get_survey
from jaxsky.errors import DataError, UserError

__all__ = ["generate", "plan_run", "parse_shard", "versions", "BACKENDS", "render_range"]

BACKENDS = ("galsim", "jaxsky")


def versions() -> dict[str, str]:
    """Versions of the packages that determine the images."""
    import galsim
    import h5py
    import scipy

    import jaxsky

    out = {"jaxsky": jaxsky.__version__, "galsim": galsim.__version__}
    out.update({"numpy": np.__version__, "h5py": h5py.__version__, "scipy": scipy.__version__})
    try:
        import jax

        out["jax"] = jax.__version__
    except ImportError:  # pragma: no cover
        out["jax"] = "not installed"
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
    catalog=None, split_fractions=(0.8, 0.1, 0.1), stream=0, ranges=None,
) -> Run:  # fmt: skip
    """Validate the inputs and lay out the design, seeds, splits and the file header."""
    n = _check_int("n", n, 1)
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


# ----------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(preset_name, preset_kwargs, survey, design, seed):
    _WORKER.update(
        preset=get_preset(preset_name, **preset_kwargs), survey=survey, design=design, seed=seed
    )


def _render_chunk(k: int, i0: int, i1: int):
    w = _WORKER
    return k, render_range(w["preset"], w["design"], i0, i1, seed=w["seed"], survey=w["survey"])


def render_range(preset, design, i0, i1, *, seed, survey=None, backend="galsim"):
    """Images float32[i1-i0, ny, nx] and PSFs (or None) of design rows ``i0 .. i1-1``."""
    if backend == "jaxsky":
        return preset.jaxsky_batch(design, np.arange(i0, i1), survey)
    res = [preset.simulate(design, i, seed=seed, survey=survey) for i in range(i0, i1)]
    images = np.stack([np.asarray(r.image, np.float32) for r in res])
    psfs = None if res[0].psf is None else np.stack([np.asarray(r.psf, np.float32) for r in res])
    return images, psfs


def generate(
    preset, n, *, seed, out, survey=None, workers=1, shard=None, resume=False,
    overwrite=False, backend="galsim", chunk=64, catalog=None, kind="lhs", stream=0,
    ranges=None, progress=True,
) -> Path:  # fmt: skip
    """Generate ``n`` images of ``preset`` (under ``survey``) into the HDF5 file ``out``.

    See the module docstring for crash safety; returns the path written. ``shard="k/K"``
    renders the contiguous index range ``[k N / K, (k+1) N / K)`` (merge with
    :func:`jaxsky.data.merge`).
    """
    out = Path(out)
    workers = _check_int("workers", workers, 1)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    shard_t = parse_shard(shard) if isinstance(shard, str | type(None)) else tuple(shard)
    run = plan_run(
        preset, n, seed=seed, survey=survey, kind=kind, chunk=chunk, shard=shard_t,
        backend=backend, catalog=catalog, stream=stream, ranges=ranges,
    )  # fmt: skip
    manifest = {"config": run.config, "shard": run.header["shard"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = prepare_partial(out, manifest, resume=resume, overwrite=overwrite)
    m = run.stop - run.start
    n_chunks = math.ceil(m / run.chunk)
    bounds = [
        (run.start + k * run.chunk, min(run.start + (k + 1) * run.chunk, run.stop))
        for k in range(n_chunks)
    ]  # noqa: E501
    todo = [k for k in range(n_chunks) if not chunk_ok(partial, k, bounds[k][1] - bounds[k][0])]
    done_images = m - sum(bounds[k][1] - bounds[k][0] for k in todo)
    with Progress(progress, m, done_images, out.name) as advance:
        if backend == "jaxsky" or workers == 1:
            for k in todo:
                ims, pss = render_range(
                    run.preset, run.design, *bounds[k], seed=seed, survey=run.survey,
                    backend=backend,
                )  # fmt: skip
                save_chunk(partial, k, ims, pss)
                advance(len(ims))
        else:
            _run_pool(run, partial, todo, bounds, workers, seed, advance)
    _assemble(run, partial, n_chunks, out)
    shutil.rmtree(partial, ignore_errors=True)
    return out


def _run_pool(run, partial, todo, bounds, workers, seed, advance):
    import multiprocessing

    preset_name = run.config["preset"]
    ctx = multiprocessing.get_context("spawn")
    init = (preset_name, run.preset_kwargs, run.survey, run.design, seed)
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=init
    ) as ex:
        queue = list(todo)
        pending = set()
        while queue or pending:
            while queue and len(pending) < 2 * workers:  # bounded memory in flight
                k = queue.pop(0)
                pending.add(ex.submit(_render_chunk, k, *bounds[k]))
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                k, (ims, pss) = fut.result()
                save_chunk(partial, k, ims, pss)
                advance(len(ims))


def _assemble(run, partial, n_chunks, out: Path) -> None:
    first, first_psf = read_chunk(partial, 0)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        write_dataset(
            tmp,
            header=run.header,
            arrays=run.arrays,
            extra=run.extra,
            image_shape=first.shape[1:],
            psf_shape=None if first_psf is None else first_psf.shape[1:],
            chunks=(read_chunk(partial, k) for k in range(n_chunks)),
            chunk=run.chunk,
        )
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
