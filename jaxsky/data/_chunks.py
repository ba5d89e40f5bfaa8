"""The partial directory of an unfinished run (``OUT.partial/``) and the progress bar.

``OUT.partial/manifest.json`` holds the run's configuration (``--resume`` must match it);
``chunk-KKKKKK.h5`` holds the images (and PSFs) of chunk k, written whole or not at all by the
process that rendered it: a small HDF5 file whose ``images``/``psfs`` datasets are one storage
chunk each, compressed with the data set's filter, with attrs ``n`` (images) and ``sha256``
(:func:`jaxsky.data.store.chunk_sha256`). The parent copies those compressed chunks verbatim
into the data set (``write_direct_chunk``): no array crosses a process boundary and nothing is
compressed twice. ``assembly.h5`` is the data set being assembled (renamed to ``OUT`` when
complete).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py

from jaxsky.data.store import (
    COMPRESSION,
    RawChunk,
    chunk_sha256,
    fill_chunk_file,
    raw_chunk_of,
)
from jaxsky.errors import DataError, UserError

__all__ = [
    "chunk_path",
    "write_chunk",
    "read_chunk",
    "read_raw_chunk",
    "chunk_ok",
    "prepare_partial",
    "Progress",
    "PARTIAL_FORMAT",
]

PARTIAL_FORMAT = 2  # 1: chunk-KKKKKK.npz (jaxsky <= 0.1 development); 2: chunk-KKKKKK.h5


def chunk_path(partial: Path, k: int) -> Path:
    return Path(partial) / f"chunk-{k:06d}.h5"


def write_chunk(partial: Path, k: int, images, psfs, *, rows: int, compression: str = "lzf") -> str:
    """Write chunk ``k`` atomically (temporary file + ``os.replace``); return its sha256.

    Args:
        images: float32[c, ny, nx] (c <= rows); psfs: float32[c, py, px] or None.
        rows: images per storage chunk of the data set (the chunk files use the same chunk
            shape, so their compressed bytes are the data set's).
        compression: a key of :data:`jaxsky.data.store.COMPRESSION`.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".chunk-{k:06d}.", suffix=".tmp", dir=partial)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            sha = fill_chunk_file(f, images, psfs, rows=rows, compression=compression)
        # os.replace is atomic: a killed process leaves either no chunk file or a whole one (no
        # fsync: process death does not lose the page cache; a power cut is caught on --resume,
        # which checks every chunk's sha256).
        os.replace(tmp, chunk_path(partial, k))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha


def read_chunk(partial: Path, k: int):
    """(images, psfs or None) of chunk ``k`` as arrays."""
    with h5py.File(chunk_path(partial, k), "r") as f:
        return f["images"][()], (f["psfs"][()] if "psfs" in f else None)


def read_raw_chunk(partial: Path, k: int) -> RawChunk:
    """Chunk ``k``'s compressed storage chunks, ready for ``write_direct_chunk``."""
    with h5py.File(chunk_path(partial, k), "r") as f:
        return raw_chunk_of(f)


def chunk_ok(partial: Path, k: int, n_images: int, *, rows: int) -> bool:
    """Whether chunk ``k`` exists, has ``n_images`` images in storage chunks of ``rows`` and
    matches its sha256 (else the file is removed and the chunk is to be redone).

    Any filter of :data:`~jaxsky.data.store.COMPRESSION` is accepted: chunks the parent is to
    compress are written uncompressed (see :mod:`jaxsky.data.generate`).
    """
    path = chunk_path(partial, k)
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            ims = f["images"]
            filters = {c.get("compression") for c in COMPRESSION.values()}
            if (
                int(f.attrs["n"]) == n_images == len(ims)
                and ims.chunks[0] == rows
                and ims.compression in filters
            ):
                pss = f["psfs"][()] if "psfs" in f else None
                if chunk_sha256(ims[()], pss) == str(f.attrs["sha256"]):
                    return True
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        pass
    path.unlink()
    return False


def prepare_partial(out: Path, manifest: dict, *, resume: bool, overwrite: bool) -> Path:
    partial = Path(f"{out}.partial")
    if partial.exists():
        if resume:
            try:
                old = json.loads((partial / "manifest.json").read_text())
            except (OSError, ValueError):
                raise DataError(f"{partial} has no readable manifest; remove it") from None
            if old.get("partial_format") != manifest.get("partial_format"):
                raise UserError(
                    f"--resume: {partial} was written by another jaxsky version (chunk format "
                    f"{old.get('partial_format', 1)}); start again with --overwrite"
                )
            if old != manifest:
                raise UserError(
                    f"--resume: {partial} was started with a different configuration "
                    "(preset/survey/N/seed/shard/chunk...); use the same options or --overwrite"
                )
            return partial
        if not overwrite:
            raise FileExistsError(
                f"an interrupted run is at {partial}: continue it with --resume or pass "
                "--overwrite to start again"
            )
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    (partial / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    return partial


class Progress:
    """A rich progress bar (count, rate, ETA) on stderr, or nothing."""

    def __init__(self, enabled, total, done, label):
        self.enabled, self.total, self.done, self.label = enabled, total, done, label

    def __enter__(self):
        if not self.enabled:
            return lambda k: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            refresh_per_second=2,  # rich's default 10/s took ~0.9% of a core (GIL shared)
        )
        self._p.start()
        task = self._p.add_task(self.label, total=self.total, completed=self.done, rate="-")

        def advance(k):
            self._p.advance(task, k)
            speed = self._p.tasks[0].speed
            self._p.update(task, rate=f"{speed:.1f}" if speed else "-")

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self._p.stop()
        return False
