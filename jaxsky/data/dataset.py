"""The in-memory view of a training set that emulators, validation and inference consume.

A :class:`Dataset` holds noiseless images, the physical parameters that made them, the PSF of
every image and the noise model, with deterministic train/validation/test splits. It is built
either from arrays (:meth:`Dataset.from_arrays`) or from an HDF5 file (``jaxsky.data.load``),
in which case ``images``/``psfs`` may be lazily read h5py-backed arrays.

Shapes: ``images`` float32[N, ny, nx] (flux per pixel), ``params`` float64[N, P],
``psfs`` float32[N, py, px] (unit flux, same pixel scale) or None; ``scale`` arcsec/pixel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxsky.errors import DataError

__all__ = ["Dataset", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images, parameters, PSFs and provenance of one training or hold-out set.

    Attributes:
        images: float32[N, ny, nx] noiseless images (flux per pixel); an array-like that
            supports ``images[idx]`` with sorted integer index arrays (numpy or h5py).
        params: float64[N, P] physical parameters (or conditioning variables) per image.
        param_names: the P parameter names, e.g. ``("flux", "scale_radius", "g1", ...)``.
        param_units: the P units ("ADU", "arcsec", "" ...).
        ranges: name -> (low, high) declared domain of each parameter (the design's box).
        scale: pixel scale in arcsec/pixel.
        psfs: float32[N, py, px] unit-flux PSF images at ``scale``, or None.
        noise_sigma: float64[N] Gaussian sky-noise standard deviation per image (0 = none).
        noise_seeds: int64[N] seed of each image's noise realisation (see :meth:`noisy`).
        split_of: int8[N] 0/1/2 for train/val/test.
        meta: JSON-able provenance: preset, survey, config, seed, package versions.
        rows: int64[N] catalogue row of each image (-1 for analytic presets), or None.
        extra: name -> float64[N] further per-image design inputs that are not conditions.
    """

    images: Any
    params: np.ndarray
    param_names: tuple[str, ...]
    param_units: tuple[str, ...]
    ranges: Mapping[str, tuple[float, float]]
    scale: float
    psfs: Any = None
    noise_sigma: np.ndarray | None = None
    noise_seeds: np.ndarray | None = None
    split_of: np.ndarray | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rows: np.ndarray | None = None
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        images,
        params,
        param_names,
        *,
        scale: float,
        param_units=None,
        ranges=None,
        psfs=None,
        noise_sigma=0.0,
        noise_seeds=None,
        split_fractions=(0.8, 0.1, 0.1),
        split_seed: int = 0,
        meta=None,
    ) -> Dataset:
        """Build a data set from arrays, validating shapes and values.

        ``ranges`` defaults to the min/max of each parameter column. Splits are assigned by a
        seeded permutation with the given fractions (see :func:`assign_splits`).
        """
        images = np.asarray(images, dtype=np.float32)
        params = np.asarray(params, dtype=np.float64)
        if images.ndim != 3:
            raise DataError(f"images must have shape (N, ny, nx), got {images.shape}")
        n = images.shape[0]
        if n == 0:
            raise DataError("the data set is empty (N=0)")
        if params.ndim != 2 or params.shape[0] != n:
            raise DataError(f"params must have shape (N={n}, P), got {params.shape}")
        names = tuple(str(p) for p in param_names)
        if len(names) != params.shape[1]:
            raise DataError(f"{len(names)} param_names for {params.shape[1]} parameter columns")
        units = tuple(param_units) if param_units is not None else ("",) * len(names)
        if not np.all(np.isfinite(images)):
            raise DataError("images contain NaN or infinite values")
        if not np.all(np.isfinite(params)):
            raise DataError("params contain NaN or infinite values")
        if ranges is None:
            ranges = {
                k: (float(params[:, i].min()), float(params[:, i].max()))
                for i, k in enumerate(names)
            }
        else:
            ranges = {k: (float(ranges[k][0]), float(ranges[k][1])) for k in names}
        if psfs is not None:
            psfs = np.asarray(psfs, dtype=np.float32)
            if psfs.ndim == 2:
                psfs = np.broadcast_to(psfs, (n, *psfs.shape))
            if psfs.ndim != 3 or psfs.shape[0] != n:
                raise DataError(f"psfs must have shape (N={n}, py, px), got {psfs.shape}")
        sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (n,)).copy()
        if np.any(sigma < 0) or not np.all(np.isfinite(sigma)):
            raise DataError("noise_sigma must be finite and >= 0")
        seeds = (
            np.arange(n, dtype=np.int64)
            if noise_seeds is None
            else np.asarray(noise_seeds, np.int64)
        )
        if float(scale) <= 0:
            raise DataError(f"scale={scale} must be > 0 arcsec/pixel")
        return cls(
            images=images,
            params=params,
            param_names=names,
            param_units=units,
            ranges=ranges,
            scale=float(scale),
            psfs=psfs,
            noise_sigma=sigma,
            noise_seeds=seeds,
            split_of=assign_splits(n, split_fractions, seed=split_seed),
            meta=dict(meta or {}),
        )

    # ------------------------------------------------------------------ basic views
    def __len__(self) -> int:
        return int(self.params.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of one stamp."""
        return tuple(self.images.shape[1:])

    def param(self, name: str) -> np.ndarray:
        """One parameter column by name."""
        try:
            return self.params[:, self.param_names.index(name)]
        except ValueError:
            raise KeyError(f"no parameter {name!r}; have {self.param_names}") from None

    def subset(self, idx) -> Dataset:
        """A data set holding the images at ``idx`` (read into memory)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.sort(idx.astype(np.int64))
        return dataclasses.replace(
            self,
            images=np.asarray(self.images[idx], dtype=np.float32),
            params=self.params[idx],
            psfs=None if self.psfs is None else np.asarray(self.psfs[idx], dtype=np.float32),
            noise_sigma=None if self.noise_sigma is None else self.noise_sigma[idx],
            noise_seeds=None if self.noise_seeds is None else self.noise_seeds[idx],
            split_of=None if self.split_of is None else self.split_of[idx],
            rows=None if self.rows is None else self.rows[idx],
            extra={k: np.asarray(v)[idx] for k, v in self.extra.items()},
        )

    def split(self, name: str) -> Dataset:
        """The ``"train"``, ``"val"`` or ``"test"`` part (deterministic, stored in the file)."""
        if name not in SPLITS:
            raise ValueError(f"split={name!r} is not one of {SPLITS}")
        part = self.subset(self.split_of == SPLITS.index(name))
        if len(part) == 0:
            raise DataError(f"split {name!r} is empty in this data set of {len(self)} images")
        return part

    def noisy(self, idx=None) -> np.ndarray:
        """Noisy realisations ``images + sigma * N(0, 1)``, reproducible from ``noise_seeds``.

        Image i always gets the same noise: the normal deviates come from
        ``numpy.random.default_rng(noise_seeds[i])``.
        """
        idx = np.arange(len(self)) if idx is None else np.atleast_1d(np.asarray(idx))
        clean = np.asarray(self.images[np.sort(idx)] if len(idx) else self.images[:0])
        order = np.argsort(np.argsort(idx))
        clean = clean[order]
        out = np.empty_like(clean)
        for j, i in enumerate(idx):
            rng = np.random.default_rng(int(self.noise_seeds[i]))
            out[j] = clean[j] + self.noise_sigma[i] * rng.standard_normal(clean.shape[1:])
        return out


def assign_splits(n: int, fractions=(0.8, 0.1, 0.1), *, seed: int = 0) -> np.ndarray:
    """Deterministic split labels (0 train, 1 val, 2 test) from a seeded permutation.

    Counts are ``round(f * n)`` for val and test (at least one each when ``n >= 3`` and the
    fraction is positive); train takes the rest.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise ValueError(
            f"split_fractions={tuple(fractions)} must be three numbers >= 0 summing to 1"
        )
    counts = [0, 0, 0]
    for k in (1, 2):
        counts[k] = int(round(fr[k] * n))
        if fr[k] > 0 and n >= 3:
            counts[k] = max(counts[k], 1)
    counts[0] = n - counts[1] - counts[2]
    labels = np.repeat(np.arange(3, dtype=np.int8), counts)
    return labels[np.random.default_rng(seed).permutation(n)]
