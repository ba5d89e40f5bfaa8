"""The partial directory of an unfinished run (``OUT.partial/``) and the progress bar.

``OUT.partial/manifest.json`` holds the run's configuration (``--resume`` must match it);
``chunk-KKKKKK.npz`` holds the images (and PSFs) of chunk k, written whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from jaxsky.errors import DataError, UserError

__all__ = ["chunk_path", "save_chunk", "read_chunk", "chunk_ok", "prepare_partial", "Progress"]


def chunk_path(partial: Path, k: int) -> Path:
    return partial / f"chunk-{k:06d}.npz"


def save_chunk(partial: Path, k: int, images, psfs) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".chunk-{k:06d}.", dir=partial)
    with os.fdopen(fd, "wb") as fh:
        arrays = {"images": images} if psfs is None else {"images": images, "psfs": psfs}
        np.savez(fh, **arrays)
    # os.replace is atomic: a killed process leaves either no chunk file or a whole one (no
    # fsync: process death does not lose the page cache; a power cut is caught on --resume).
    os.replace(tmp, chunk_path(partial, k))


def chunk_ok(partial: Path, k: int, n_images: int) -> bool:
    """Whether chunk ``k`` exists and reads back with ``n_images`` images (else drop it)."""
    path = chunk_path(partial, k)
    if not path.exists():
        return False
    try:
        ims, _ = read_chunk(partial, k)
        if len(ims) == n_images:
            return True
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    path.unlink()
    return False


def read_chunk(partial: Path, k: int):
    with np.load(chunk_path(partial, k)) as z:
        return z["images"], (z["psfs"] if "psfs" in z.files else None)


def prepare_partial(out: Path, manifest: dict, *, resume: bool, overwrite: bool) -> Path:
    partial = Path(f"{out}.partial")
    if partial.exists():
        if resume:
            try:
                old = json.loads((partial / "manifest.json").read_text())
            except (OSError, ValueError):
                raise DataError(f"{partial} has no readable manifest; remove it") from None
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
