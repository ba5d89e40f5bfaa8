"""Non-parametric morphology: Gini, M20, concentration, asymmetry, smoothness (numpy).

Definitions for noiseless stamps (no background terms):

- Petrosian radius r_p: where the annulus surface brightness is eta = 0.2 of the mean inside
  (Petrosian 1976; Lotz et al. 2004 Sec. 3), about the flux-weighted centroid.
- Segmentation: pixels brighter than the surface brightness at r_p (Lotz et al. 2004 Sec. 3.1).
- Gini: G = sum_i (2i - n - 1) |X_i| / (mean|X| n (n - 1)), X sorted (Lotz et al. 2004 Eq. 6).
- M20: log10(sum of r^2 f over the brightest pixels holding 20% of the flux / M_tot), about
  the centroid, over the segmentation (Lotz et al. 2004 Eqs. 7-8).
- Concentration: C = 5 log10(r80 / r20) from circular curves of growth (Conselice 2003 Eq. 3).
- Asymmetry: A = sum |I - I_180| / sum |I| with the 180-degree rotation about the centroid
  (Conselice et al. 2000; Lotz et al. 2004 Eq. 9 without the background term), within 1.5 r_p.
- Smoothness: S = 10 sum (I - I_s)+ / sum I with a boxcar of 0.25 r_p, between 0.25 and
  1.5 r_p (Conselice 2003 Eq. 11; Lotz et al. 2004 Eq. 11).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "gini",
    "m20",
    "concentration",
    "asymmetry",
    "smoothness",
    "petrosian_radius",
    "morphology",
    "batch_morphology",
]


def _grid(image, center=None):
    ny, nx = image.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    if center is None:
        f = np.clip(image, 0, None)
        center = ((f * x).sum() / f.sum(), (f * y).sum() / f.sum())
    return x - center[0], y - center[1], center


def gini(values) -> float:
    """Gini coefficient of the |values| (0 uniform, -> 1 all light in one pixel)."""
    x = np.sort(np.abs(np.asarray(values, dtype=np.float64).ravel()))
    n = x.size
    if n < 2 or x.mean() == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (x.mean() * n * (n - 1)))


def m20(image, mask=None, center=None) -> float:
    """M20 of ``image`` over ``mask`` (all pixels when None), about ``center`` or the centroid."""
    image = np.asarray(image, dtype=np.float64)
    dx, dy, _ = _grid(image, center)
    mask = np.ones(image.shape, bool) if mask is None else mask
    f, r2 = image[mask], (dx * dx + dy * dy)[mask]
    order = np.argsort(f)[::-1]
    f, r2 = f[order], r2[order]
    m = f * r2
    n20 = int(np.searchsorted(np.cumsum(f), 0.2 * f.sum())) + 1
    return float(np.log10(m[:n20].sum() / m.sum()))


def _curve_of_growth(image, center=None):
    dx, dy, c = _grid(image, center)
    r = np.hypot(dx, dy).ravel()
    order = np.argsort(r)
    return r[order], np.cumsum(image.ravel()[order]), c


def _radius_at(r, cum, frac, total):
    return float(np.interp(frac * total, cum, r))


def concentration(image, center=None) -> float:
    """C = 5 log10(r80/r20), radii of circles holding 20% and 80% of the stamp's flux."""
    image = np.asarray(image, dtype=np.float64)
    r, cum, _ = _curve_of_growth(image, center)
    total = image.sum()
    return float(5 * np.log10(_radius_at(r, cum, 0.8, total) / _radius_at(r, cum, 0.2, total)))


def petrosian_radius(image, eta: float = 0.2, center=None) -> float:
    """Petrosian radius (pixels): annulus surface brightness = eta x mean inside."""
    image = np.asarray(image, dtype=np.float64)
    dx, dy, _ = _grid(image, center)
    r = np.hypot(dx, dy)
    radii = np.arange(1.0, min(image.shape) / 2.0, 0.5)
    for rad in radii:
        inner = r < rad
        ann = (r >= 0.8 * rad) & (r < 1.25 * rad)
        if inner.sum() == 0 or ann.sum() == 0:
            continue
        if image[ann].mean() < eta * image[inner].mean():
            return float(rad)
    return float(radii[-1])


def _rotate180(image, center):
    from scipy.ndimage import shift

    ny, nx = image.shape
    # shift the centroid to the array centre, flip both axes, shift back (cubic spline)
    to_mid = ((ny - 1) / 2.0 - center[1], (nx - 1) / 2.0 - center[0])
    mid = shift(image, to_mid, order=3, mode="constant")
    return shift(mid[::-1, ::-1], (-to_mid[0], -to_mid[1]), order=3, mode="constant")


def asymmetry(image, center=None, radius=None) -> float:
    """A = sum|I - I_180| / sum|I| within ``radius`` (pixels; all pixels when None)."""
    image = np.asarray(image, dtype=np.float64)
    dx, dy, c = _grid(image, center)
    rot = _rotate180(image, c)
    m = np.ones(image.shape, bool) if radius is None else np.hypot(dx, dy) <= radius
    return float(np.abs(image - rot)[m].sum() / np.abs(image)[m].sum())


def smoothness(image, r_p, center=None) -> float:
    """S = 10 sum (I - I_smooth)+ / sum I between 0.25 r_p and 1.5 r_p (pixels)."""
    from scipy.ndimage import uniform_filter

    image = np.asarray(image, dtype=np.float64)
    dx, dy, _ = _grid(image, center)
    width = max(int(round(0.25 * r_p)), 2)
    smooth = uniform_filter(image, size=width, mode="constant")
    r = np.hypot(dx, dy)
    m = (r >= 0.25 * r_p) & (r <= 1.5 * r_p)
    return float(10 * np.clip(image - smooth, 0, None)[m].sum() / image[m].sum())


def morphology(image) -> dict[str, float]:
    """All five statistics (and r_p in pixels) of one noiseless stamp float[ny, nx]."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or not np.isfinite(image).all() or image.sum() <= 0:
        raise ValueError("morphology needs a finite 2-d image with positive total flux")
    _, _, c = _grid(image)
    rp = petrosian_radius(image, center=c)
    dx, dy, _ = _grid(image, c)
    r = np.hypot(dx, dy)
    ann = (r >= 0.8 * rp) & (r < 1.25 * rp)
    mu = image[ann].mean() if ann.any() else 0.0
    seg = image >= mu
    return {
        "gini": gini(image[seg]),
        "m20": m20(image, seg, c),
        "concentration": concentration(image, c),
        "asymmetry": asymmetry(image, c, 1.5 * rp),
        "smoothness": smoothness(image, rp, c),
        "r_petrosian": rp,
    }


def batch_morphology(images) -> dict[str, np.ndarray]:
    """:func:`morphology` of every image float[B, ny, nx]; NaN where it cannot be measured."""
    keys = ("gini", "m20", "concentration", "asymmetry", "smoothness", "r_petrosian")
    out = {k: np.full(len(images), np.nan) for k in keys}
    for i, im in enumerate(np.asarray(images)):
        try:
            res = morphology(im)
        except ValueError:
            continue
        for k in keys:
            out[k][i] = res[k]
    return out
