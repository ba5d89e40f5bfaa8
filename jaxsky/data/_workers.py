"""Rendering processes of ``jaxsky generate`` and the parent's in-order chunk assembler.

See :mod:`jaxsky.data.generate` for the scheme (who renders, who compresses, crash safety).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from jaxsky.data._chunks import Progress, chunk_path, read_chunk, read_raw_chunk, write_chunk
from jaxsky.data.presets import get_preset
from jaxsky.data.presets.base import Design
from jaxsky.data.store import COMPRESSION, DatasetWriter, RawChunk
from jaxsky.errors import DataError

__all__ = ["Job", "render_range", "start_method", "run_pool", "run_in_process", "Assembler"]


@dataclasses.dataclass(frozen=True)
class Job:
    """What a rendering process needs (sent once to each worker)."""

    preset_name: str
    preset_kwargs: dict
    survey: object
    design: Design
    seed: int
    backend: str
    partial: Path
    rows: int  # images per storage chunk
    compression: str


_WORKER: dict = {}


def _init_worker(job: Job, preset=None, parent: int | None = None):
    if preset is None:
        preset = get_preset(job.preset_name, **job.preset_kwargs)
    _WORKER.update(job=job, preset=preset, buffers=None)  # buffers: see _buffers
    if parent is not None:
        import threading

        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A pool worker whose parent was killed (kill -9) would wait for work forever: exit.

    Written chunk files are complete (atomic rename); a chunk being written is dropped.
    """
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _make_chunk(k: int, i0: int, i1: int) -> int:
    """Render images ``i0 .. i1-1`` and write them as chunk ``k`` (in a worker or in-process)."""
    job, preset = _WORKER["job"], _WORKER["preset"]
    ims, pss = render_range(
        preset, job.design, i0, i1, seed=job.seed, survey=job.survey, backend=job.backend,
        out=_buffers(preset, job),
    )  # fmt: skip
    write_chunk(job.partial, k, ims, pss, rows=job.rows, compression=job.compression)
    return k


def _buffers(preset, job):
    """This process's reused image and PSF arrays for one chunk (None: not an analytic preset).

    Written chunk by chunk: fresh arrays would fault in new pages for every chunk (~2 page
    faults per image, measurable next to a ~0.6 ms render)."""
    if job.backend != "galsim" or not hasattr(preset, "simulate_range"):
        return None
    buf = _WORKER.get("buffers")
    if buf is None:
        shape = (job.rows, *preset.stamp_shape(job.survey))
        buf = _WORKER["buffers"] = (np.empty(shape, np.float32), np.empty(shape, np.float32))
    return buf


def render_range(preset, design, i0, i1, *, seed, survey=None, backend="galsim", out=None):
    """Images float32[i1-i0, ny, nx] and PSFs (or None) of design rows ``i0 .. i1-1``.

    Presets with a ``simulate_range`` method (the analytic ones) draw the whole range into
    preallocated arrays (``out``, reused by the caller, or new ones); others are simulated
    image by image.
    """
    if backend == "jaxsky":
        return preset.jaxsky_batch(design, np.arange(i0, i1), survey)
    fast = getattr(preset, "simulate_range", None)
    if fast is not None:
        return fast(design, i0, i1, seed=seed, survey=survey, out=out)
    res = [preset.simulate(design, i, seed=seed, survey=survey) for i in range(i0, i1)]
    images = np.stack([np.asarray(r.image, np.float32) for r in res])
    psfs = None if res[0].psf is None else np.stack([np.asarray(r.psf, np.float32) for r in res])
    return images, psfs


def start_method() -> str:
    """``fork`` (workers start at once, no imports) where it is safe, else ``spawn``.

    Safe: Linux, no other Python thread running, and no JAX backend started (JAX then runs
    threads of its own and warns that forking can deadlock; merely importing JAX is fine).
    """
    import sys
    import threading

    from jaxsky._cpu_pool import jax_backends_started

    if sys.platform != "linux" or threading.active_count() != 1:
        return "spawn"
    if jax_backends_started() is not False:  # started, or unknown: assume started
        return "spawn"
    return "fork"


def run_in_process(job, todo, bounds, asm, progress, m, done_images, label, preset=None):
    """Render the chunks ``todo`` in this process, assembling as they are written."""
    _init_worker(job, preset)
    with Progress(progress, m, done_images, label) as advance:
        asm.advance()
        for k in todo:
            _make_chunk(k, *bounds[k])
            advance(bounds[k][1] - bounds[k][0])
            asm.advance()


def run_pool(job, todo, bounds, workers, asm, progress, m, done_images, label, method):
    """Render the chunks ``todo`` with ``workers`` processes (start ``method``); the parent
    assembles (and, for uncompressed chunk files, compresses) as they finish."""
    import multiprocessing

    ctx = multiprocessing.get_context(method)
    workers = min(workers, len(todo))
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(job, None, os.getpid())
    ) as ex:
        queue = list(todo)
        pending = set()

        def refill():
            while queue and len(pending) < 2 * workers:  # a few chunks queued per worker
                k = queue.pop(0)
                pending.add(ex.submit(_make_chunk, k, *bounds[k]))

        refill()  # starts the workers (with fork: before the progress bar's thread)
        with Progress(progress, m, done_images, label) as advance:
            asm.advance()
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    k = fut.result()
                    advance(bounds[k][1] - bounds[k][0])
                refill()
                asm.advance()


def _image_shape(chunk):
    return chunk.image_shape if isinstance(chunk, RawChunk) else chunk[0].shape[1:]


def _psf_shape(chunk):
    if isinstance(chunk, RawChunk):
        return chunk.psf_shape
    return None if chunk[1] is None else chunk[1].shape[1:]


class Assembler:
    """Copies finished chunk files, in index order, into ``OUT.partial/assembly.h5``."""

    def __init__(self, run, partial, n_chunks, compression):
        self.run, self.partial, self.n_chunks = run, partial, n_chunks
        self.compression = compression
        self.path = partial / "assembly.h5"
        self.writer = None
        self.next = 0

    def advance(self) -> None:
        """Append every chunk file that continues the written prefix."""
        while self.next < self.n_chunks and chunk_path(self.partial, self.next).exists():
            raw = read_raw_chunk(self.partial, self.next)
            if raw.compression != COMPRESSION[self.compression].get("compression"):
                ims, pss = read_chunk(self.partial, self.next)  # compressed here, by add()
                raw = (ims, pss)
            if self.writer is None:
                self.writer = DatasetWriter(
                    self.path, header=self.run.header, arrays=self.run.arrays,
                    extra=self.run.extra, image_shape=_image_shape(raw), psf_shape=_psf_shape(raw),
                    chunk=self.run.chunk, compression=self.compression,
                )  # fmt: skip
            self.writer.add(raw)
            self.next += 1

    def finish(self, out: Path) -> None:
        self.advance()
        if self.next != self.n_chunks:
            raise DataError(f"chunk {self.next} is missing after rendering")
        self.writer.close()
        self.writer = None
        os.chmod(self.path, 0o644)
        os.replace(self.path, out)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        self.path.unlink(missing_ok=True)
