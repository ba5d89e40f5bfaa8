"""Starting points for stamp fits from adaptive (Gaussian-weighted) second moments.

Follows the adaptive-moment idea of Bernstein & Jarvis (2002, AJ 123, 583): iterate an
elliptical Gaussian weight matched to the object; for a Gaussian object the weighted covariance
M and the weight covariance W give the object's C = (M^-1 - W^-1)^-1 (= 2M at the fixed point
W = C), reached by iterating W <- 2M. The PSF's covariance is subtracted (moments of a
convolution add). NumPy, run once outside jit; it only needs to start an optimiser well.
"""

from __future__ import annotations

import numpy as np

__all__ = ["adaptive_moments", "sersic_init"]


def _grid(ny, nx, scale):
    # pixel centres relative to the stamp's true centre (GalSim convention), arcsec
    y = (np.arange(ny) - 0.5 * (ny - 1)) * scale
    x = (np.arange(nx) - 0.5 * (nx - 1)) * scale
    return np.meshgrid(x, y)


def adaptive_moments(images, weights, scale, *, sigma0, n_iter=12):
    """Weighted moments of float[B, ny, nx] stamps (weights 0 = masked).

    Returns (flux, mu float[B, 2], cov float[B, 2, 2]) for the object itself (weight removed);
    flux is the total within the stamp (noisy but unbiased) or 2x the weighted sum, whichever
    is larger. ``sigma0`` (arcsec; a scalar or float[B]) sets the first weight.
    """
    img = np.asarray(images, float) * (np.asarray(weights) > 0)
    nb, ny, nx = img.shape
    xx, yy = _grid(ny, nx, scale)
    mu = np.zeros((nb, 2))
    s0 = np.asarray(sigma0, float).reshape(-1, 1, 1)
    cw = np.broadcast_to(np.eye(2) * s0**2, (nb, 2, 2)).copy()
    cobj = cw.copy()
    swt = np.zeros(nb)
    floor = (0.25 * scale) ** 2
    for _ in range(n_iter):
        dx, dy = xx[None] - mu[:, 0, None, None], yy[None] - mu[:, 1, None, None]
        inv = np.linalg.inv(cw)
        q = inv[:, 0, 0, None, None] * dx**2 + 2 * inv[:, 0, 1, None, None] * dx * dy
        q = q + inv[:, 1, 1, None, None] * dy**2
        wimg = img * np.exp(-0.5 * q)
        s = wimg.sum((1, 2))
        good = s > 0
        swt = np.where(good, s, swt)
        sg = np.where(good, s, 1.0)
        mx = (wimg * xx).sum((1, 2)) / sg
        my = (wimg * yy).sum((1, 2)) / sg
        ddx, ddy = xx[None] - mx[:, None, None], yy[None] - my[:, None, None]
        m = np.empty((nb, 2, 2))
        m[:, 0, 0] = (wimg * ddx**2).sum((1, 2)) / sg
        m[:, 1, 1] = (wimg * ddy**2).sum((1, 2)) / sg
        m[:, 0, 1] = m[:, 1, 0] = (wimg * ddx * ddy).sum((1, 2)) / sg
        # fixed point of W = 2M: then W = C for a Gaussian object (Bernstein & Jarvis 2002)
        c = _clamp(2.0 * m, floor)
        ok = good & np.all(np.isfinite(c), axis=(1, 2))
        cobj = np.where(ok[:, None, None], c, cobj)
        # keep centroids inside the middle of the stamp
        lim = 0.25 * min(nx, ny) * scale
        mu = np.where(good[:, None], np.clip(np.stack([mx, my], -1), -lim, lim), mu)
        cw = cobj
    flux = np.maximum(img.sum((1, 2)), 2.0 * swt)
    return flux, mu, cobj


def _clamp(c, floor):
    """Symmetrise and floor the eigenvalues of float[B, 2, 2] matrices."""
    c = 0.5 * (c + np.swapaxes(c, 1, 2))
    c = np.where(np.isfinite(c), c, 0.0)
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, floor)
    return np.einsum("bij,bj,bkj->bik", v, w, v)


def sersic_init(images, weights, psf_image, scale, *, n0=1.5, g_max=0.8):
    """Rough (flux, hlr, n, g1, g2, dx, dy) per stamp: float[B, 7] in physical units.

    ``psf_image``: one PSF image float[py, px] for every stamp, or one per stamp float[B, py, px].
    """
    psf_img = np.asarray(psf_image, float)
    psf_img = psf_img[None] if psf_img.ndim == 2 else psf_img
    _, _, cpsf = adaptive_moments(psf_img, np.ones_like(psf_img), scale, sigma0=2 * scale)
    tpsf = np.trace(cpsf, axis1=1, axis2=2)  # float[1] or float[B]
    flux, mu, cobs = adaptive_moments(images, weights, scale, sigma0=np.sqrt(tpsf))
    cgal = _clamp(cobs - cpsf, (0.3 * scale) ** 2)
    sigma = np.linalg.det(cgal) ** 0.25
    hlr = 1.1774 * sigma  # Gaussian: hlr = sqrt(2 ln 2) sigma
    tr = cgal[:, 0, 0] + cgal[:, 1, 1]
    e1 = (cgal[:, 0, 0] - cgal[:, 1, 1]) / tr
    e2 = 2 * cgal[:, 0, 1] / tr
    e = np.hypot(e1, e2)
    # distortion e -> reduced shear g = e / (1 + sqrt(1 - e^2))  (GalSim Shear conventions)
    ratio = 1.0 / (1.0 + np.sqrt(np.clip(1 - e**2, 0, 1)))
    g1, g2 = e1 * ratio, e2 * ratio
    gn = np.hypot(g1, g2)
    shrink = np.where(gn > g_max, g_max / np.maximum(gn, 1e-12), 1.0)
    out = np.stack(
        [flux, hlr, np.full_like(hlr, n0), g1 * shrink, g2 * shrink, mu[:, 0], mu[:, 1]], -1
    )
    return out
