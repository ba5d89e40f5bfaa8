"""The HDF5 file layout of a jaxsky data set, its writer and :func:`load`.

Layout (one file, h5py; images and PSFs chunked along N and gzip+shuffle compressed)::

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

import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from jaxsky.data.dataset import Dataset
from jaxsky.errors import DataError

__all__ = ["FORMAT", "FORMAT_VERSION", "H5Array", "write_dataset", "load", "chunk_sha256"]

FORMAT = "jaxsky-dataset"
FORMAT_VERSION = 1
LAZY_BYTES = 1 << 30  # images larger than this stay on disk (h5py-backed) by default


def chunk_sha256(images: np.ndarray, psfs: np.ndarray | None) -> str:
    """Checksum of one chunk: sha256 over little-endian float32 image then PSF bytes."""
    h = hashlib.sha256(np.ascontiguousarray(images, dtype="<f4").tobytes())
    if psfs is not None:
        h.update(np.ascontiguousarray(psfs, dtype="<f4").tobytes())
    return h.hexdigest()


def write_dataset(
    path,
    *,
    header: dict,
    arrays: dict[str, np.ndarray],
    extra: dict[str, np.ndarray],
    image_shape: tuple[int, int],
    psf_shape: tuple[int, int] | None,
    chunks: Iterable[tuple[np.ndarray, np.ndarray | None]],
    chunk: int,
) -> None:
    """Write a complete data set to ``path`` (a temporary path: the caller renames it).

    Args:
        header: attrs (``config``, ``versions``, ``scale``, ``n_total``, ``index_start``,
            ``index_stop``, ``shard``); dicts are stored as JSON.
        arrays: ``params``, ``param_names``, ``param_units``, ``rows``, ``noise_sigma``,
            ``noise_seeds``, ``render_seeds``, ``split`` for the file's N images.
        extra: design extras name -> float64[N].
        chunks: (images float32[c, ny, nx], psfs or None) in index order, chunk sizes ``chunk``
            (the last may be shorter).
    """
    n = len(arrays["params"])
    k_total = math.ceil(n / chunk)
    # gzip level 1: ~the same ratio on float images as level 4 at a fraction of the time (the
    # parent compresses while workers render; level 4 capped end-to-end throughput).
    comp = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    with h5py.File(path, "w", track_order=True) as f:
        for k, v in header.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, dict | list | type(None)) else v
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["chunk"] = int(chunk)
        f.attrs["complete"] = False
        c = min(chunk, n)
        img = f.create_dataset(
            "images", (n, *image_shape), "f4", chunks=(c, *image_shape), track_times=False, **comp
        )
        psf = None
        if psf_shape is not None:
            psf = f.create_dataset(
                "psfs", (n, *psf_shape), "f4", chunks=(c, *psf_shape), track_times=False, **comp
            )
        p = f.create_dataset("params", data=arrays["params"].astype("f8"), track_times=False)
        p.attrs["names"] = json.dumps(list(arrays["param_names"]))
        p.attrs["units"] = json.dumps(list(arrays["param_units"]))
        for name, key, dt in (
            ("design/rows", "rows", "i8"),
            ("noise/sigma", "noise_sigma", "f8"),
            ("noise/seeds", "noise_seeds", "i8"),
            ("render_seeds", "render_seeds", "i8"),
            ("split", "split", "i1"),
        ):
            f.create_dataset(name, data=np.asarray(arrays[key]).astype(dt), track_times=False)
        grp = f.create_group("design/extra")
        for name in sorted(extra):
            grp.create_dataset(name, data=np.asarray(extra[name], "f8"), track_times=False)
        done = f.create_dataset("chunks/completed", (k_total,), "?", track_times=False)
        sums = f.create_dataset("chunks/sha256", (k_total,), "S64", track_times=False)
        i0 = 0
        for k, (ims, pss) in enumerate(chunks):
            i1 = i0 + len(ims)
            if len(ims) != min(chunk, n - i0):
                raise DataError(f"chunk {k} has {len(ims)} images, expected {min(chunk, n - i0)}")
            img[i0:i1] = ims
            if psf is not None:
                psf[i0:i1] = pss
            sums[k] = chunk_sha256(ims, pss).encode()
            done[k] = True
            i0 = i1
        if i0 != n:
            raise DataError(f"wrote {i0} of {n} images")
        f.attrs["complete"] = True
        f.flush()
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


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
