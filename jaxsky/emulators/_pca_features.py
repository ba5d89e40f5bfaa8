"""GP input features for PCA + GP: the observed (PSF-convolved) second moments.

A peak-normalised galaxy image is governed, to first order, by the covariance matrix of the
convolved light, Sigma = s_gal^2 A A^T + s_psf^2 I, where A is the shear matrix of reduced
shear g (GalSim ``Shear`` convention: A = [[1 + g1, g2], [g2, 1 - g1]] / sqrt(1 - |g|^2)). A
GP interpolates the images more evenly in the coordinates of that ellipse: its log size
(1/4 log det Sigma), its conformal shear (eta = atanh|e| along the distortion
e = (S11 - S22, 2 S12) / tr Sigma, Bernstein & Jarvis 2002, Sec. 2) and the log PSF size
(with the first, how Exponential-like vs Gaussian-like the profile is). The angle of the ellipse
then enters smoothly instead of through the corners of the g1-g2 box.

Second moments per axis: Exponential of scale radius r: 3 r^2 (<r^2> = 6 r^2 in 2-D); a
half-light radius h is treated as Gaussian-like, h^2 / (2 ln 2); Gaussian PSF of FWHM f:
f^2 / (8 ln 2). These only shape the features (any smooth invertible map of the parameters is a
valid GP input); they need not be exact for other profiles.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = ["moment_columns", "moment_features"]

_LN2 = math.log(2.0)
# per-axis second moment over size^2: Exponential 3 r^2; Gaussian-like hlr: hlr^2 / (2 ln 2)
_SIZE = {"scale_radius": 3.0, "half_light_radius": 0.5 / _LN2, "hlr": 0.5 / _LN2}
_FWHM_TO_SIGMA2 = 1.0 / (8.0 * _LN2)  # Gaussian: FWHM = 2 sqrt(2 ln 2) sigma


def moment_columns(names) -> dict | None:
    """Indices of (size, g1, g2, psf_fwhm) in ``names``, or None if the features do not apply.

    Needs a galaxy size and ``psf_fwhm``; g1 / g2 are optional (missing ones count as 0).
    """
    names = list(names)
    size = next((k for k in _SIZE if k in names), None)
    if size is None or "psf_fwhm" not in names:
        return None
    idx = {k: (names.index(k) if k in names else -1) for k in ("g1", "g2")}
    return {"size": names.index(size), "size_c": _SIZE[size], "psf": names.index("psf_fwhm"), **idx}


def moment_features(theta, cols: dict):
    """float[..., 4] (log size, eta1, eta2, log PSF size) from float[..., P] parameters.

    Pure and differentiable; finite for |g| < 1, sizes > 0 (double ``where`` at e = 0).
    """
    r = theta[..., cols["size"]]
    g1 = theta[..., cols["g1"]] if cols["g1"] >= 0 else jnp.zeros_like(r)
    g2 = theta[..., cols["g2"]] if cols["g2"] >= 0 else jnp.zeros_like(r)
    s_gal = cols["size_c"] * r**2
    s_psf = _FWHM_TO_SIGMA2 * theta[..., cols["psf"]] ** 2
    inv = 1.0 / (1.0 - g1**2 - g2**2)
    a11, a22, a12 = (1.0 + g1), (1.0 - g1), g2
    # Sigma = s_gal A A^T / (1 - |g|^2) + s_psf I
    s11 = s_gal * inv * (a11**2 + a12**2) + s_psf
    s22 = s_gal * inv * (a12**2 + a22**2) + s_psf
    s12 = s_gal * inv * a12 * (a11 + a22)
    tr = s11 + s22
    e1, e2 = (s11 - s22) / tr, 2.0 * s12 / tr
    e2sum = e1**2 + e2**2
    pos = e2sum > 1e-12
    e = jnp.sqrt(jnp.where(pos, e2sum, 1.0))
    k = jnp.where(pos, jnp.arctanh(jnp.where(pos, e, 0.5)) / e, 1.0 + e2sum / 3.0)
    log_size = 0.25 * jnp.log(s11 * s22 - s12**2)
    return jnp.stack([log_size, k * e1, k * e2, 0.5 * jnp.log(s_psf)], axis=-1)
