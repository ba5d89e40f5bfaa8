"""Writing the HDF5 data set of :mod:`jaxsky.data.store`: compression, chunks, the writer.

Every storage chunk of ``/images`` and ``/psfs`` is written with h5py's
``write_direct_chunk``: chunks rendered in worker processes arrive already compressed (a
:class:`RawChunk` read from the worker's chunk file) and arrays are compressed first (through an
in-memory HDF5 file with the same filter), so a file's bytes depend only on its contents.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from typing import NamedTuple

import h5py
import numpy as np

from jaxsky.errors import DataError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "COMPRESSION",
    "RawChunk",
    "DatasetWriter",
    "compress_chunk",
    "fill_chunk_file",
    "raw_chunk_of",
    "write_dataset",
    "chunk_sha256",
]

FORMAT = "jaxsky-dataset"
FORMAT_VERSION = 1
# Filters of /images and /psfs, all built into h5py. ``lzf`` (the default) compresses noiseless
# float32 stamps as well as gzip+shuffle did (~0.68 of raw for ``paper``) at ~1/3 of the CPU
# time; ``gzip`` (level 1, no shuffle: shuffling made these stamps compress worse) is readable
# by any HDF5 tool. Files written with gzip+shuffle by earlier versions load unchanged.
COMPRESSION = {
    "none": {},
    "lzf": {"compression": "lzf"},
    "gzip": {"compression": "gzip", "compression_opts": 1},
}


def chunk_sha256(images: np.ndarray, psfs: np.ndarray | None) -> str:
    """Checksum of one chunk: sha256 over little-endian float32 image then PSF bytes."""
    h = hashlib.sha256(np.ascontiguousarray(images, dtype="<f4").tobytes())
    if psfs is not None:
        h.update(np.ascontiguousarray(psfs, dtype="<f4").tobytes())
    return h.hexdigest()


class RawChunk(NamedTuple):
    """One chunk's compressed storage chunks, copied verbatim by :class:`DatasetWriter`.

    ``images``/``psfs`` are (filter_mask, bytes) as ``h5py``'s ``read_direct_chunk`` returns
    them for a storage chunk of ``rows`` images; ``n`` of them are real (the last chunk of a
    file is padded, as HDF5 pads edge chunks).
    """

    n: int
    sha256: str
    image_shape: tuple
    psf_shape: tuple | None
    rows: int
    compression: str
    images: tuple
    psfs: tuple | None


def fill_chunk_file(f: h5py.File, images, psfs, *, rows: int, compression: str) -> str:
    """Store one chunk in the open file ``f`` as one storage chunk per array; return its sha256.

    ``images``/``psfs`` (or None) float32[c, ...] with c <= ``rows``; attrs ``n`` and ``sha256``.
    """
    images = np.ascontiguousarray(images, np.float32)
    psfs = None if psfs is None else np.ascontiguousarray(psfs, np.float32)
    sha = chunk_sha256(images, psfs)
    for name, a in (("images", images), ("psfs", psfs)):
        if a is not None:
            shape = (int(rows), *a.shape[1:])
            f.create_dataset(
                name, data=a, maxshape=shape, chunks=shape, track_times=False,
                **COMPRESSION[compression],
            )  # fmt: skip
    f.attrs["n"] = len(images)
    f.attrs["sha256"] = sha
    return sha


def raw_chunk_of(f: h5py.File) -> RawChunk:
    """The :class:`RawChunk` stored in ``f`` by :func:`fill_chunk_file`."""
    img = f["images"]
    psf = f["psfs"] if "psfs" in f else None
    return RawChunk(
        n=int(f.attrs["n"]),
        sha256=str(f.attrs["sha256"]),
        image_shape=img.shape[1:],
        psf_shape=None if psf is None else psf.shape[1:],
        rows=img.chunks[0],
        compression=img.compression,
        images=img.id.read_direct_chunk((0,) * img.ndim),
        psfs=None if psf is None else psf.id.read_direct_chunk((0,) * psf.ndim),
    )


def compress_chunk(images, psfs, *, rows: int, compression: str) -> RawChunk:
    """Compress arrays into a :class:`RawChunk` (through an in-memory HDF5 file), so that
    every chunk of every file is written the same way (``write_direct_chunk``)."""
    name = f"jaxsky-chunk-{os.getpid()}-{id(images)}"
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        fill_chunk_file(f, images, psfs, rows=rows, compression=compression)
        return raw_chunk_of(f)


class DatasetWriter:
    """Writes a data set chunk by chunk, in index order, to ``path`` (a temporary path).

    ``add`` takes (images, psfs) arrays or a :class:`RawChunk`; every chunk is written with
    ``write_direct_chunk`` (arrays are compressed first), so a file's bytes depend only on its
    contents, not on the path they took. ``close`` checks that all N images came, sets
    ``complete`` and fsyncs. The caller renames the file when complete.

    Args:
        header: attrs (``config``, ``versions``, ``scale``, ``n_total``, ``index_start``,
            ``index_stop``, ``shard``); dicts are stored as JSON.
        arrays: ``params``, ``param_names``, ``param_units``, ``rows``, ``noise_sigma``,
            ``noise_seeds``, ``render_seeds``, ``split`` for the file's N images.
        extra: design extras name -> float64[N].
        image_shape, psf_shape: (ny, nx) of images and PSFs (None: no PSFs).
        chunk: images per chunk (the last may be shorter); also the storage chunk along N.
        compression: a key of :data:`COMPRESSION`.
    """

    def __init__(
        self, path, *, header, arrays, extra, image_shape, psf_shape, chunk, compression="lzf"
    ):
        if compression not in COMPRESSION:
            raise ValueError(f"compression={compression!r} is not one of {tuple(COMPRESSION)}")
        self.path = path
        self.n = n = len(arrays["params"])
        self.chunk = int(chunk)
        self.rows = min(self.chunk, n)
        self.compression = compression
        self.k = self.i0 = 0
        comp = COMPRESSION[compression]
        self.f = f = h5py.File(path, "w", track_order=True)
        for k, v in header.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, dict | list | type(None)) else v
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["chunk"] = self.chunk
        f.attrs["complete"] = False
        shape = (self.rows, *image_shape)
        self.img = f.create_dataset(
            "images", (n, *image_shape), "f4", chunks=shape, track_times=False, **comp
        )
        self.psf = None
        if psf_shape is not None:
            shape = (self.rows, *psf_shape)
            self.psf = f.create_dataset(
                "psfs", (n, *psf_shape), "f4", chunks=shape, track_times=False, **comp
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
        k_total = math.ceil(n / self.chunk)
        self.done = f.create_dataset("chunks/completed", (k_total,), "?", track_times=False)
        self.sums = f.create_dataset("chunks/sha256", (k_total,), "S64", track_times=False)

    def add(self, chunk) -> None:
        """Append the next chunk: (images, psfs) arrays or a :class:`RawChunk`."""
        k, i0 = self.k, self.i0
        expect = min(self.chunk, self.n - i0)
        if not isinstance(chunk, RawChunk):
            chunk = compress_chunk(*chunk, rows=self.rows, compression=self.compression)
        if chunk.n != expect:
            raise DataError(f"chunk {k} has {chunk.n} images, expected {expect}")
        if (chunk.rows, chunk.compression) != (self.rows, self.img.compression):
            raise DataError(f"chunk {k} was stored with another chunk shape or compression")
        for dset, part in ((self.img, chunk.images), (self.psf, chunk.psfs)):
            if dset is not None:
                mask, data = part
                dset.id.write_direct_chunk((i0,) + (0,) * (dset.ndim - 1), data, mask)
        sha, m = chunk.sha256, chunk.n
        self.sums[k] = sha.encode()
        self.done[k] = True
        self.k, self.i0 = k + 1, i0 + m

    def close(self) -> None:
        """Mark the file complete and fsync it (DataError if images are missing)."""
        try:
            if self.i0 != self.n:
                raise DataError(f"wrote {self.i0} of {self.n} images")
            self.f.attrs["complete"] = True
            self.f.flush()
        finally:
            self.f.close()
        with open(self.path, "rb") as fh:
            os.fsync(fh.fileno())

    def abort(self) -> None:
        self.f.close()


def write_dataset(
    path,
    *,
    header: dict,
    arrays: dict[str, np.ndarray],
    extra: dict[str, np.ndarray],
    image_shape: tuple[int, int],
    psf_shape: tuple[int, int] | None,
    chunks: Iterable,
    chunk: int,
    compression: str = "lzf",
) -> None:
    """Write a complete data set to ``path`` (a temporary path: the caller renames it).

    ``chunks`` yields (images float32[c, ny, nx], psfs or None) or :class:`RawChunk` s in
    index order; see :class:`DatasetWriter` for the other arguments.
    """
    w = DatasetWriter(
        path, header=header, arrays=arrays, extra=extra, image_shape=image_shape,
        psf_shape=psf_shape, chunk=chunk, compression=compression,
    )  # fmt: skip
    try:
        for c in chunks:
            w.add(c)
    except BaseException:
        w.abort()
        raise
    w.close()
