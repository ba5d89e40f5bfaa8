"""What a preset (a family of galaxies) and a survey (observing conditions) provide.

A :class:`Preset` declares its conditioning parameters, lays out a design for N images and
simulates image ``i`` of a design with GalSim (the reference) under a :class:`Survey` (or the
preset's own conditions when ``survey is None``). Simulation of image ``i`` depends only on
(design, i, seed): that is what makes sharded, resumed and uninterrupted runs identical.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Design", "SimResult", "Survey", "Preset"]


@dataclasses.dataclass(frozen=True)
class Design:
    """Per-image inputs of a data set.

    Attributes:
        params: float64[N, P] conditioning parameters in physical units (stored as ``params``).
        rows: int64[N] catalogue row of each image for catalogue-driven presets, else -1.
        extra: name -> float64[N] further per-image inputs that are not conditions (e.g. a
            survey's PSF FWHM drawn per image, a random position angle); stored too.
    """

    params: np.ndarray
    rows: np.ndarray
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.params.shape[0])


@dataclasses.dataclass(frozen=True)
class SimResult:
    """One simulated stamp: noiseless image float[ny, nx] and unit-flux PSF image float[py, px]."""

    image: np.ndarray
    psf: np.ndarray


@dataclasses.dataclass(frozen=True)
class Survey:
    """Observing conditions combinable with any galaxy preset (values cite public sources).

    Attributes:
        name: e.g. ``"lsst"``.
        scale: pixel scale, arcsec/pixel.
        stamp: stamp side in pixels.
        psf_family: ``"moffat"``, ``"gaussian"`` or ``"airy"`` (space telescopes).
        psf_fwhm: (low, high) FWHM range in arcsec, drawn per image.
        psf_beta: Moffat beta (ignored for other families).
        noise_sigma: sky-noise standard deviation per pixel, in the image's flux units.
        sources: citations for the numbers.
        obscuration: linear central obscuration of the aperture (``"airy"`` PSFs).
        band: the band the numbers refer to.
        sky_brightness: sky surface brightness, AB mag/arcsec^2 (0 if not used).
        zeropoint: AB magnitude giving 1 electron/s.
        exposure_time: full-depth exposure, seconds.
    """

    name: str
    scale: float
    stamp: int
    psf_family: str
    psf_fwhm: tuple[float, float]
    psf_beta: float = 3.5
    noise_sigma: float = 0.0
    description: str = ""
    sources: tuple[str, ...] = ()
    obscuration: float = 0.0
    band: str = ""
    sky_brightness: float = 0.0
    zeropoint: float = 0.0
    exposure_time: float = 0.0

    def config(self) -> dict[str, Any]:
        """JSON-able description stored with every data set made under this survey."""
        out = dataclasses.asdict(self)
        out["psf_fwhm"] = list(self.psf_fwhm)
        out["sources"] = list(self.sources)
        return out


class Preset(abc.ABC):
    """A declarative family of galaxies: parameters, their ranges and a GalSim simulation."""

    name: str
    description: str
    param_names: tuple[str, ...]
    param_units: tuple[str, ...]

    @abc.abstractmethod
    def ranges(self) -> dict[str, tuple[float, float]]:
        """name -> (low, high) domain of each conditioning parameter."""

    @abc.abstractmethod
    def design(
        self, n: int, *, seed: int, survey: Survey | None = None, kind: str = "lhs"
    ) -> Design:
        """Per-image inputs for ``n`` images, reproducible from ``seed``."""

    @abc.abstractmethod
    def simulate(
        self, design: Design, i: int, *, seed: int, survey: Survey | None = None
    ) -> SimResult:
        """GalSim image ``i`` of ``design`` (noiseless) and its PSF image."""

    def stamp_shape(self, survey: Survey | None = None) -> tuple[int, int]:
        """(ny, nx) of the stamps under ``survey`` (or the preset's own default)."""
        raise NotImplementedError

    def pixel_scale(self, survey: Survey | None = None) -> float:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-able description stored in every file made from this preset."""
        return {"name": self.name, "description": self.description}
