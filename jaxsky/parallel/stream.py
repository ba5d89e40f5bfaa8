"""Stream millions of rendered or emulated stamps to an HDF5 file in bounded memory.

:func:`stream_to_hdf5` evaluates ``fn(theta) -> image`` for N parameter rows in fixed-size
steps sharded over all local devices (:func:`jaxsky.parallel.sharded_chunks`) and appends each
step to a chunked, compressed HDF5 dataset.

Memory bound: the host holds ``thetas`` plus at most ~3 steps of images (one being computed
on the devices, one being copied back, one being compressed and written), i.e. about
``3 * chunk * ny * nx * 4`` bytes for float32 stamps; the devices hold two steps plus the
program's work space. For ``chunk=65536`` 64x64 stamps that is ~3 GiB on the host; choose
``chunk`` from the memory you have (the throughput gain flattens above ~10^4 per device).

Crash safety: the file is written as ``<path>.partial`` and renamed to ``path`` only when
complete. After an interruption, calling again with the same ``thetas`` resumes after the
last step recorded in the ``n_done`` attribute (the function must be the same; its identity
cannot be checked, the parameters' SHA-256 is).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxsky.parallel.sharding import batch_mesh, sharded_chunks

__all__ = ["stream_to_hdf5", "partial_path"]

_FORMAT = "jaxsky-stream-1"


def partial_path(path) -> Path:
    """Where :func:`stream_to_hdf5` writes until the file is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def _digest(thetas: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr((thetas.shape, thetas.dtype.str)).encode())
    h.update(np.ascontiguousarray(thetas).data)
    return h.hexdigest()


def _progress(enabled: bool, total: int, done: int, description: str):
    import rich.progress as rp

    bar = rp.Progress(
        rp.TextColumn("[bold]{task.description}"),
        rp.BarColumn(),
        rp.MofNCompleteColumn(),
        rp.TextColumn("{task.fields[rate]}"),
        rp.TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
    task = bar.add_task(description, total=total, completed=done, rate="")
    return bar, task


def stream_to_hdf5(
    fn: Callable,
    thetas,
    path,
    *,
    chunk: int,
    overwrite: bool = False,
    shared=None,
    dataset: str = "images",
    compression: str | None = "gzip",
    progress: bool = True,
    attrs: dict | None = None,
    mesh=None,
) -> Path:
    """Write ``fn(theta)`` for every row of ``thetas`` to ``path`` (HDF5), step by step.

    Args:
      fn: ``theta float[P] -> image float[ny, nx]`` (or ``fn(shared, theta)`` with
        ``shared``), pure JAX, e.g. an emulator's ``predict_fn()`` or a render closure.
      thetas: float[N, P] parameters (stored as the ``params`` dataset).
      path: output ``.h5`` file; written as ``<path>.partial`` and renamed when done.
      chunk: stamps per step (rounded up to a multiple of the device count); it sets the
        memory bound (module docstring).
      overwrite: replace an existing ``path`` and discard any ``.partial``; otherwise an
        existing ``path`` is an error and a matching ``.partial`` is resumed.
      shared: pytree replicated on every device and passed as ``fn(shared, theta)``.
      dataset: name of the image dataset, float32[N, ny, nx], chunked and compressed.
      compression: h5py filter (``"gzip"``, ``"lzf"`` or None).
      progress: show a rich progress bar.
      attrs: extra JSON-able file attributes (provenance).

    Returns:
      the final path.
    """
    import h5py

    path = Path(path)
    thetas = np.asarray(thetas)
    if thetas.ndim != 2 or len(thetas) == 0:
        raise ValueError(f"thetas must be float[N, P] with N >= 1, got shape {thetas.shape}")
    if int(chunk) < 1:
        raise ValueError(f"chunk={chunk} must be a positive integer")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    part = partial_path(path)
    if overwrite and part.exists():
        part.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh = mesh or batch_mesh()
    n = len(thetas)
    digest = _digest(thetas)
    one = (lambda t: fn(shared, t)) if shared is not None else fn
    out = jax.eval_shape(one, jax.ShapeDtypeStruct(thetas.shape[1:], thetas.dtype))
    if not hasattr(out, "shape"):
        raise ValueError("fn must return one array (an image) per parameter row")
    item_shape = tuple(out.shape)
    done = 0
    if part.exists():
        with h5py.File(part, "r") as f:
            ok = f.attrs.get("format") == _FORMAT and f.attrs.get("thetas_sha256") == digest
            ok = ok and dataset in f and f[dataset].shape == (n, *item_shape)
            done = int(f.attrs.get("n_done", 0)) if ok else -1
        if done < 0:
            raise FileExistsError(
                f"{part} is an unfinished stream of different parameters or shape; delete it "
                "or pass overwrite=True (--overwrite)"
            )
    else:
        rows = max(1, min(int(chunk), (1 << 20) // max(1, 4 * int(np.prod(item_shape)))))
        with h5py.File(part, "w") as f:
            f.create_dataset(
                dataset,
                shape=(n, *item_shape),
                dtype="float32",
                chunks=(rows, *item_shape),
                compression=compression,
                shuffle=compression is not None,
            )
            f.create_dataset("params", data=thetas)
            f.attrs.update({"format": _FORMAT, "thetas_sha256": digest, "n_done": 0})
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
    bar, task = _progress(progress, n, done, f"streaming to {path.name}")
    with bar, h5py.File(part, "r+") as f:
        dset = f[dataset]
        steps = sharded_chunks(fn, thetas[done:], shared=shared, chunk=chunk, mesh=mesh)
        t0 = time.perf_counter()
        for start, stop, imgs in steps:
            dset[done + start : done + stop] = imgs
            # Images first, then the counter: a crash between them only repeats one step.
            f.attrs["n_done"] = done + stop
            f.flush()
            rate = stop / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, completed=done + stop, rate=f"{rate:,.0f} stamps/s")
    os.replace(part, path)
    return path
