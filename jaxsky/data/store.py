"""The HDF5 file layout of a jaxsky data set and :func:`load` (writer: :mod:`jaxsky.data.writer`).

Layout (one file, h5py; images and PSFs chunked along N, compressed with lzf or gzip)::

    /images              float32[N, ny, nx]  noiseless, flux per pixel
    /psfs                float32[N, py, px]  unit-flux effective PSF per image (optional)
    /params              float64[N, P]       attrs: names, units (JSON lists)
    /design/rows         int64[N]            catalogue row (-1 for analytic presets)
    /design/extra/<name> float64[N]          non-conditioning per-image inputs
    /noise/sigma         float64[N]          Gaussian sky sigma per pixel (0 = noiseless)
    /noise/seeds         int64[N]            seed of image i's noise (Dataset.noisy)
    /render_seeds        int64[N]            seed of image i's stochastic rendering
    /split               int8[N]             0 train, 1 val, 2 test
    /chunks/completed    bool[K]             chunk k holds images [k C, (k+1) C)
    /chunks/sha256       S64[K]              sha256 of chunk k's image + PSF bytes
    attrs: format, format_version, config (JSON: preset, survey, ranges, seed, N, ...),
           versions (JSON: jaxsky, galsim, jax, h5py, numpy), scale, chunk, n_total,
           index_start, index_stop, shard (JSON or "null"), complete (written last).

A file is only ever renamed to its final path once complete; ``complete`` and the completed
mask guard against anything else. :func:`load` turns every way a file can be broken
(truncated, not HDF5, chunk corrupted, incomplete) into a :class:`~jaxsky.errors.DataError`.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from jaxsky.data.dataset import Dataset
from jaxsky.data.writer import (
    COMPRESSION,
    FORMAT,
    FORMAT_VERSION,
    DatasetWriter,
    RawChunk,
    chunk_sha256,
    compress_chunk,
    fill_chunk_file,
    raw_chunk_of,
    write_dataset,
)
from jaxsky.errors import DataError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "COMPRESSION",
    "H5Array",
    "RawChunk",
    "DatasetWriter",
    "compress_chunk",
    "fill_chunk_file",
    "raw_chunk_of",
    "write_dataset",
    "load",
    "chunk_sha256",
]

LAZY_BYTES = 1 << 30  # images larger than this stay on disk (h5py-backed) by default


class H5Array:
    """Read-only array view of an h5py dataset that reads whole storage chunks.

    ``a[idx]`` accepts an int, a slice or an integer index array (any order, repeats ok);
    each storage chunk touched is decompressed once. Keeps its file open.
    """

    def __init__(self, dset: h5py.Dataset):
        self._d = dset
        self.shape = dset.shape
        self.dtype = dset.dtype
        self.ndim = dset.ndim
        self._c = (dset.chunks or dset.shape)[0]

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self._d[()]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, idx):
        if isinstance(idx, int | np.integer | slice) or idx is Ellipsis:
            return self._d[idx]
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        if not len(idx):
            return out
        if idx.min() < 0 or idx.max() >= self.shape[0]:
            raise IndexError(f"index out of range for {self.shape[0]} images")
        block = idx // self._c
        for b in np.unique(block):
            sel = np.flatnonzero(block == b)
            lo = int(b) * self._c
            try:
                data = self._d[lo : min(lo + self._c, self.shape[0])]
            except (OSError, RuntimeError) as err:
                raise DataError(
                    f"{self._d.file.filename}: chunk {int(b)} cannot be read (corrupted): {err}"
                ) from None
            out[sel] = data[idx[sel] - lo]
        return out


def _open(path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        partial = Path(f"{path}.partial")
        hint = (
            f" (an incomplete run is at {partial}: finish it with --resume)"
            if partial.exists()
            else ""
        )
        raise FileNotFoundError(f"no data set at {path}{hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(
            f"{path} cannot be read as HDF5 (truncated or corrupted file?): {err}"
        ) from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise DataError(f"{path} is not a jaxsky data set (no format={FORMAT!r} attribute)")
    return f


def _verify(f: h5py.File, path) -> None:
    n = f["params"].shape[0]
    c = int(f.attrs["chunk"])
    psfs = f.get("psfs")
    sums = f["chunks/sha256"][()]
    for k in range(len(sums)):
        sl = slice(k * c, min((k + 1) * c, n))
        try:
            ims = f["images"][sl]
            pss = None if psfs is None else psfs[sl]
        except (OSError, RuntimeError) as err:
            raise DataError(f"{path}: chunk {k} cannot be read (corrupted): {err}") from None
        if chunk_sha256(ims, pss).encode() != sums[k]:
            raise DataError(
                f"{path}: chunk {k} (images {sl.start}-{sl.stop - 1}) fails its checksum"
            )


def load(path, *, lazy: bool | None = None, verify: bool | None = None) -> Dataset:
    """Open a data set written by ``jaxsky generate`` / ``jaxsky merge``.

    Args:
        path: the ``.h5`` file.
        lazy: keep ``images``/``psfs`` on disk as :class:`H5Array` (default: when the images
            exceed 1 GiB). In-memory data sets are fully read and the file closed.
        verify: check every chunk's sha256 (default: when not lazy; reads all images).

    Raises:
        DataError: the file is truncated, corrupted, incomplete or not a jaxsky data set.
    """
    f = _open(path)
    try:
        if not bool(f.attrs.get("complete", False)):
            raise DataError(f"{path} is incomplete (generation did not finish)")
        done = f["chunks/completed"][()]
        if not done.all():
            raise DataError(f"{path} is incomplete: chunks {np.flatnonzero(~done)[:10]} missing")
        nbytes = f["images"].size * 4
        lazy = nbytes > LAZY_BYTES if lazy is None else bool(lazy)
        if verify if verify is not None else not lazy:
            _verify(f, path)
        p = f["params"]
        names = tuple(json.loads(p.attrs["names"]))
        units = tuple(json.loads(p.attrs["units"]))
        config = json.loads(f.attrs["config"])
        meta = {
            "config": config,
            "versions": json.loads(f.attrs["versions"]),
            "shard": json.loads(f.attrs["shard"]),
            "index_start": int(f.attrs["index_start"]),
            "n_total": int(f.attrs["n_total"]),
            "render_seeds": f["render_seeds"][()],
            "path": str(path),
        }
        if lazy:
            images = H5Array(f["images"])
            psfs = H5Array(f["psfs"]) if "psfs" in f else None
        else:
            images = f["images"][()]
            psfs = f["psfs"][()] if "psfs" in f else None
        ds = Dataset(
            images=images,
            params=p[()],
            param_names=names,
            param_units=units,
            ranges={k: tuple(v) for k, v in config["ranges"].items()},
            scale=float(f.attrs["scale"]),
            psfs=psfs,
            noise_sigma=f["noise/sigma"][()],
            noise_seeds=f["noise/seeds"][()],
            split_of=f["split"][()],
            meta=meta,
            rows=f["design/rows"][()],
            extra={k: v[()] for k, v in f["design/extra"].items()},
        )
    except (KeyError, ValueError, OSError) as err:
        f.close()
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path} is missing or has a damaged part of the layout: {err}") from None
    if not lazy:
        f.close()
    return ds
