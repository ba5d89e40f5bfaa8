"""In-memory simulation and a prefetching batch iterator over (possibly on-disk) data sets."""

from __future__ import annotations

import math
import queue
import threading
from typing import NamedTuple

import numpy as np

from jaxsky.data.dataset import SPLITS, Dataset
from jaxsky.data.store import H5Array

__all__ = ["Batch", "batches", "simulate"]


class Batch(NamedTuple):
    """One batch: images float32[B, ny, nx], params float64[B, P], psfs float32[B, py, px] or
    None, index int64[B] (positions in the data set)."""

    images: np.ndarray
    params: np.ndarray
    psfs: np.ndarray | None
    index: np.ndarray


def simulate(
    preset, n: int, *, seed: int, survey=None, backend: str = "galsim", kind: str = "lhs",
    stream: int = 0, catalog=None, chunk: int = 64, ranges=None,
) -> Dataset:  # fmt: skip
    """Simulate ``n`` images in memory (one process): the same images ``jaxsky generate`` stores.

    Args:
        preset: preset name or instance; survey: survey name, instance or None.
        seed: design and render seed; stream: 0 training design, 1+ independent hold-outs.
        backend: ``"galsim"`` (reference) or ``"jaxsky"`` (vmapped renderer; paper/sersic).
        ranges: name -> (low, high) replacing an analytic preset's declared ranges.
    """
    from jaxsky.data.generate import plan_run, render_range

    run = plan_run(
        preset, n, seed=seed, survey=survey, kind=kind, chunk=chunk, backend=backend,
        catalog=catalog, stream=stream, ranges=ranges,
    )  # fmt: skip
    ims, pss = [], []
    for i0 in range(0, n, chunk):
        a, b = render_range(
            run.preset, run.design, i0, min(i0 + chunk, n), seed=run.config["seed"],
            survey=run.survey, backend=backend,
        )  # fmt: skip
        ims.append(a)
        pss.append(b)
    a = run.arrays
    return Dataset(
        images=np.concatenate(ims),
        params=a["params"],
        param_names=tuple(a["param_names"]),
        param_units=tuple(a["param_units"]),
        ranges={k: tuple(v) for k, v in run.config["ranges"].items()},
        scale=run.header["scale"],
        psfs=None if pss[0] is None else np.concatenate(pss),
        noise_sigma=a["noise_sigma"],
        noise_seeds=a["noise_seeds"],
        split_of=a["split"],
        meta={**run.header, "render_seeds": a["render_seeds"]},
        rows=a["rows"],
        extra=run.extra,
    )


def _order(dataset: Dataset, split, key, batch_size) -> np.ndarray:
    """Shuffled positions of one epoch over ``split`` (all images when None)."""
    import jax

    n = len(dataset)
    if split is None:
        sel = np.ones(n, bool)
    elif split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS} or None")
    else:
        sel = dataset.split_of == SPLITS.index(split)
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    rng = np.random.default_rng(seed)
    images = dataset.images
    if not isinstance(images, H5Array):
        return rng.permutation(np.flatnonzero(sel))
    # On disk: shuffle storage chunks, then images within windows of a few chunks, so each
    # batch decompresses a handful of chunks instead of one chunk per image.
    c = images._c
    blocks = rng.permutation(math.ceil(n / c))
    per = max(1, math.ceil(4 * batch_size / c))
    out = []
    for w in range(0, len(blocks), per):
        idx = np.concatenate([np.arange(b * c, min((b + 1) * c, n)) for b in blocks[w : w + per]])
        out.append(rng.permutation(idx[sel[idx]]))
    return np.concatenate(out) if out else np.array([], np.int64)


def batches(
    dataset: Dataset, batch_size: int, *, key, split: str | None = "train", prefetch: int = 2,
    drop_remainder: bool = False,
):  # fmt: skip
    """Iterate one shuffled epoch of ``split`` in batches, reading ahead on a thread.

    Works on h5py-backed data sets larger than memory: only ``prefetch`` batches are held.
    Shuffling is exact for in-memory sets and chunk-windowed for on-disk ones (see
    ``_order``). Yields :class:`Batch`; the same ``key`` gives the same batches.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be an integer >= 1")
    if int(prefetch) != prefetch or prefetch < 1:
        raise ValueError(f"prefetch={prefetch} must be an integer >= 1")
    order = _order(dataset, split, key, int(batch_size))
    stop = len(order) - (len(order) % batch_size if drop_remainder else 0)
    starts = range(0, stop, int(batch_size))

    def read(s):
        idx = order[s : s + batch_size]
        srt = np.argsort(idx, kind="stable")
        inv = np.argsort(srt)
        ims = np.asarray(dataset.images[idx[srt]], np.float32)[inv]
        psf = None
        if dataset.psfs is not None:
            psf = np.asarray(dataset.psfs[idx[srt]], np.float32)[inv]
        return Batch(ims, dataset.params[idx], psf, idx)

    q: queue.Queue = queue.Queue(maxsize=int(prefetch))
    halt = threading.Event()
    done = object()

    def worker():
        try:
            for s in starts:
                if halt.is_set():
                    return
                q.put(read(s))
            q.put(done)
        except BaseException as err:  # re-raised in the consumer
            q.put(err)

    thread = threading.Thread(target=worker, daemon=True, name="jaxsky-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)
