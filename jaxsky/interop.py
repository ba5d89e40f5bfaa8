"""Conversion between jaxsky profiles and GalSim ``GSObject``s (both directions).

``to_galsim`` is how the tests and benchmarks build the reference image for exactly the
same profile; ``from_galsim`` lets GalSim users bring existing objects over.
"""

from __future__ import annotations

import galsim
import numpy as np

from jaxsky.render import profiles as P
from jaxsky.render._base import GSObject
from jaxsky.render.compound import Add, Convolution
from jaxsky.render.transform import Transformation

__all__ = ["to_galsim", "from_galsim", "to_interpolated_image", "TIGHT_GSPARAMS"]

#: The reference accuracy used in jaxsky's tests (issue 2): tighter than GalSim's defaults.
TIGHT_GSPARAMS = galsim.GSParams(folding_threshold=1e-4, maxk_threshold=1e-5, kvalue_accuracy=1e-7)


def _f(x) -> float:
    a = np.asarray(x, dtype=float)
    if a.ndim:
        raise ValueError("to_galsim converts one profile; index a batched profile first")
    return float(a)


def to_galsim(obj: GSObject, gsparams: galsim.GSParams | None = None) -> galsim.GSObject:
    """The equivalent GalSim object (concrete, unbatched parameters)."""
    gsp = gsparams
    if isinstance(obj, P.Gaussian):
        return galsim.Gaussian(sigma=_f(obj.sigma), flux=_f(obj.flux), gsparams=gsp)
    if isinstance(obj, P.Exponential):
        return galsim.Exponential(
            scale_radius=_f(obj.scale_radius), flux=_f(obj.flux), gsparams=gsp
        )
    if isinstance(obj, P.Sersic):
        return galsim.Sersic(
            n=_f(obj.n),
            half_light_radius=_f(obj.half_light_radius),
            flux=_f(obj.flux),
            gsparams=gsp,
        )
    if isinstance(obj, P.Moffat):
        return galsim.Moffat(
            beta=_f(obj.beta), scale_radius=_f(obj.scale_radius), flux=_f(obj.flux), gsparams=gsp
        )
    if isinstance(obj, Transformation):
        jac = np.asarray(obj.jac, float)
        off = np.asarray(obj.offset, float)
        if jac.ndim != 2:
            raise ValueError("to_galsim converts one profile; index a batched profile first")
        return galsim.Transform(
            to_galsim(obj.obj, gsp),
            jac=jac,
            offset=galsim.PositionD(float(off[0]), float(off[1])),
            flux_ratio=_f(obj.flux_ratio),
            gsparams=gsp,
        )
    if isinstance(obj, Add):
        return galsim.Add([to_galsim(o, gsp) for o in obj.objs], gsparams=gsp)
    if isinstance(obj, Convolution):
        return galsim.Convolve([to_galsim(o, gsp) for o in obj.objs], gsparams=gsp)
    raise TypeError(f"no GalSim equivalent for {type(obj).__name__}")


def from_galsim(obj: galsim.GSObject) -> GSObject:
    """The equivalent jaxsky profile; raises ``TypeError`` for GalSim types jaxsky lacks."""
    if isinstance(obj, galsim.Gaussian):
        return P.Gaussian(sigma=obj.sigma, flux=obj.flux)
    if isinstance(obj, galsim.Exponential):
        return P.Exponential(scale_radius=obj.scale_radius, flux=obj.flux)
    if isinstance(obj, galsim.Sersic):  # includes DeVaucouleurs
        if obj.trunc:
            raise TypeError("truncated Sersic profiles are not supported by jaxsky")
        return P.Sersic(obj.n, half_light_radius=obj.half_light_radius, flux=obj.flux)
    if isinstance(obj, galsim.Moffat):
        if obj.trunc:
            raise TypeError("truncated Moffat profiles are not supported by jaxsky")
        return P.Moffat(obj.beta, scale_radius=obj.scale_radius, flux=obj.flux)
    if isinstance(obj, galsim.Transformation):
        return Transformation(
            from_galsim(obj.original),
            jac=np.asarray(obj.jac, float),
            offset=np.array([obj.offset.x, obj.offset.y]),
            flux_ratio=obj.flux_ratio,
        )
    if isinstance(obj, galsim.Sum):
        return Add([from_galsim(o) for o in obj.obj_list])
    if isinstance(obj, galsim.Convolution):
        return Convolution([from_galsim(o) for o in obj.obj_list])
    raise TypeError(f"GalSim type {type(obj).__name__} has no jaxsky equivalent yet")


def to_interpolated_image(
    image, *, scale: float, flux: float | None = None, x_interpolant: str = "quintic"
) -> galsim.InterpolatedImage:
    """An emulated or rendered stamp as a ``galsim.InterpolatedImage`` for GalSim scenes.

    Args:
        image: float[ny, nx] flux per pixel (e.g. one ``Emulator.predict`` output), centred on
            the stamp's true centre as jaxsky and GalSim draw it.
        scale: pixel scale in arcsec/pixel.
        flux: total flux to normalise to (default: the image sum).
        x_interpolant: GalSim interpolant name.

    The stamp already contains the pixel response, so draw the result in GalSim with
    ``method="no_pixel"`` to avoid applying it twice.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-d (ny, nx), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    if not float(scale) > 0:
        raise ValueError(f"scale={scale} is outside the allowed range (0, inf) arcsec/pixel")
    total = float(arr.sum()) if flux is None else float(flux)
    if not np.isfinite(total) or total == 0:
        raise ValueError(f"flux={total} must be finite and non-zero")
    return galsim.InterpolatedImage(
        galsim.Image(arr, scale=float(scale)),
        flux=total,
        x_interpolant=x_interpolant,
    )
