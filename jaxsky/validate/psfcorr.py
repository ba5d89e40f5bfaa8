"""PSF-corrected shapes from adaptive moments, and the resolution factor R2.

Second moments add under convolution (unweighted moments exactly; adaptive moments exactly for
Gaussian galaxy and PSF), so the galaxy's moment matrix is ``M_G = M_I - M_P`` with ``M_I`` the
observed image's and ``M_P`` the PSF's adaptive moments. Its distortion
``e = (M_G,xx - M_G,yy, 2 M_G,xy) / tr M_G`` is the "linear" PSF correction of Bernstein & Jarvis
(2002, Sec. 4) without the kurtosis terms, and the resolution factor is
``R2 = 1 - T_P / T_I`` with ``T = tr M`` (Hirata & Seljak 2003, Eq. 8). For non-Gaussian
profiles the estimate is biased, but the bias is the same for any two renderers of the same
galaxy, which is what a paired shear-calibration comparison needs; weak-lensing catalogues keep
resolved galaxies only (R2 >= 0.3 in HSC, Mandelbaum et al. 2018).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.validate.moments import Moments, adaptive_moments, batch_adaptive_moments, e_to_g

__all__ = [
    "CorrectedShape",
    "corrected_shape",
    "batch_corrected_shape",
    "psf_moments",
    "RESOLVED_R2",
]

RESOLVED_R2 = 0.3  # HSC first-year shear catalogue cut (Mandelbaum et al. 2018)


class CorrectedShape(NamedTuple):
    """PSF-corrected shape of one image (arrays gain a batch axis when batched).

    Attributes:
        g1, g2: reduced shear of ``M_I - M_P``.
        e1, e2: its distortion.
        r2: resolution factor 1 - T_P / T_I (<= 0: unresolved, the shape is meaningless).
        converged: both adaptive-moment fits converged.
    """

    g1: jax.Array
    g2: jax.Array
    e1: jax.Array
    e2: jax.Array
    r2: jax.Array
    converged: jax.Array


def _combine(mi, mp) -> CorrectedShape:
    dxx, dxy, dyy = mi.mxx - mp.mxx, mi.mxy - mp.mxy, mi.myy - mp.myy
    t_i, t_p = mi.mxx + mi.myy, mp.mxx + mp.myy
    t_g = dxx + dyy
    # double where: an unresolved image (t_g <= 0) gives NaN-free values and gradients
    ok = t_g > 0
    safe = jnp.where(ok, t_g, 1.0)
    e1 = jnp.where(ok, (dxx - dyy) / safe, jnp.nan)
    e2 = jnp.where(ok, 2.0 * dxy / safe, jnp.nan)
    g1, g2 = e_to_g(jnp.where(ok, e1, 0.0), jnp.where(ok, e2, 0.0))
    return CorrectedShape(
        g1=jnp.where(ok, g1, jnp.nan),
        g2=jnp.where(ok, g2, jnp.nan),
        e1=e1,
        e2=e2,
        r2=1.0 - t_p / t_i,
        converged=mi.converged & mp.converged,
    )


def corrected_shape(image, psf, **moment_kw) -> CorrectedShape:
    """PSF-corrected shape of one image float[ny, nx] given its PSF image float[py, px]
    (same pixel scale; pixel response included in both or neither). Differentiable in both.

    Keyword arguments go to :func:`~jaxsky.validate.moments.adaptive_moments`.
    """
    return _combine(adaptive_moments(image, **moment_kw), adaptive_moments(psf, **moment_kw))


def psf_moments(psfs, **moment_kw) -> Moments:
    """Adaptive moments of PSF images float[G, py, px], to measure once and hand to
    :func:`batch_corrected_shape` (``psf_moments=``) for any number of images per PSF."""
    return batch_adaptive_moments(np.asarray(psfs), **moment_kw)


def batch_corrected_shape(images, psfs=None, *, psf_moments=None, **moment_kw) -> CorrectedShape:
    """:func:`corrected_shape` of float[B, ny, nx] images (vmapped in chunks).

    The PSFs are either images ``psfs`` float[G, py, px] or their adaptive moments
    ``psf_moments`` (:func:`psf_moments`, float[G] fields), each measured once. G = B pairs
    image k with PSF k; a G that divides B tiles them, image k using PSF ``k % G`` (the layout
    of the ring stacks of :mod:`jaxsky.validate.shear`: blocks of the same G galaxies).
    Returns numpy float[B] arrays; NaN shapes where R2 <= 0.
    """
    images = np.asarray(images)
    if (psfs is None) == (psf_moments is None):
        raise ValueError("batch_corrected_shape needs exactly one of psfs= or psf_moments=")
    if psf_moments is None:
        psfs = np.asarray(psfs)
        if psfs.ndim != 3:
            raise ValueError(f"psfs must be a (G, py, px) stack, got shape {psfs.shape}")
        g = psfs.shape[0]
    else:
        g = int(np.shape(psf_moments.mxx)[0]) if np.ndim(psf_moments.mxx) == 1 else -1
        if g < 1:
            raise ValueError(f"psf_moments must hold float[G] fields, mxx has shape "
                             f"{np.shape(psf_moments.mxx)}")  # fmt: skip
    if images.ndim != 3 or g < 1 or len(images) % g:
        raise ValueError(
            f"images must be a (B, ny, nx) stack and the number of PSFs G must divide B; got "
            f"images {images.shape} and G={g} ({'psfs' if psf_moments is None else 'psf_moments'})"
        )
    mi = batch_adaptive_moments(images, **moment_kw)
    mp = psf_moments if psf_moments is not None else batch_adaptive_moments(psfs, **moment_kw)
    if g != len(images):
        idx = np.arange(len(images)) % g
        mp = Moments(*(jnp.asarray(v)[idx] for v in mp))
    return CorrectedShape(*(np.asarray(v) for v in _combine(mi, mp)))
