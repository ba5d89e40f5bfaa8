"""The hst64 accuracy outliers of issue 2: light-tailed Sersic x Gaussian PSF on a small stamp.

Galaxy 72 of ``tools/accuracy_sweep.py`` (seed 2024, hst64: 64 x 64 at 0.03"/pixel) was the one
galaxy of 200 above 1e-4 of the peak (1.27e-4). Diagnosis: its FFT period (108 pixels) was too
short. The planner and the wrap-around correction took the far field of a convolution as the
sum of the components' wings (zeroth order), which for two light tails (Sersic n < ~1.2 and a
Gaussian PSF) is 10-30x below the true wing, so the wrapped light (1.4e-4 of the peak at the
stamp edge) was neither avoided nor subtracted. The reference itself is checked here against
an independent real-space quadrature.
"""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from scipy.special import gammaincinv, gammaln, ndtr

import jaxsky
from jaxsky.interop import TIGHT_GSPARAMS, to_galsim
from jaxsky.render import Convolve, Gaussian, Sersic

NX, SCALE = 64, 0.03

CASES = {
    # tools/accuracy_sweep.py, hst64, seed 2024, galaxy 72 (err/peak 1.27e-4 before the fix).
    "sweep72": dict(
        n=0.7997487138830206,
        hlr=0.22230500453135893,
        flux=85150.24105683807,
        g1=0.40217329473690566,
        g2=0.14703385851199435,
        dx=-0.007202870569098389,
        dy=-0.008503040926670305,
        psf_fwhm=0.8829161287037635,
    ),
    # The same workload restricted to n in [0.5, 1.2] with a Gaussian PSF (5.5e-4 before).
    "n0.55": dict(
        n=0.5481, hlr=0.2435, flux=52431.9672, g1=0.3405, g2=-0.1796, dx=0.0135, dy=-0.0075,
        psf_fwhm=0.903,
    ),
}  # fmt: skip


def _profile(p):
    gal = Sersic(p["n"], half_light_radius=p["hlr"], flux=p["flux"])
    gal = gal.shear(g1=p["g1"], g2=p["g2"]).shift(p["dx"], p["dy"])
    return Convolve([gal, Gaussian(fwhm=p["psf_fwhm"])])


def _galaxy_grid(p, h, half):
    """The sheared, shifted Sersic sampled on an h-grid over [-half, half]^2 (rows: y)."""
    n, re = p["n"], p["hlr"]
    b = gammaincinv(2 * n, 0.5)  # half-light condition P(2n, b) = 1/2
    x = np.arange(-half, half + h / 2, h)
    g1, g2 = p["g1"], p["g2"]
    # GalSim's reduced-shear matrix (det 1): the sheared profile is I(A^-1 x).
    a = np.array([[1 + g1, g2], [g2, 1 - g1]]) / np.sqrt(1 - g1 * g1 - g2 * g2)
    ai = np.linalg.inv(a)
    xx, yy = np.meshgrid(x - p["dx"], x - p["dy"])
    r = np.hypot(ai[0, 0] * xx + ai[0, 1] * yy, ai[1, 0] * xx + ai[1, 1] * yy) / re
    # Sersic normalisation (Graham & Driver 2005): I0 = flux b^2n / (2 pi n Gamma(2n) re^2).
    log_i0 = 2 * n * np.log(b) - np.log(2 * np.pi * n * re * re) - gammaln(2 * n)
    return x, p["flux"] * np.exp(log_i0 - b * r ** (1 / n))


def _real_space_image(p, h=0.004, half=3.0):
    """Flux per pixel by direct quadrature of sheared Sersic x (Gaussian PSF x pixel box).

    The Gaussian PSF integrated over a pixel is separable (differences of normal CDFs), so the
    image is Q I Q^T h^2 with I the galaxy sampled on an h-grid (trapezoid rule; the galaxy is
    negligible beyond ``half`` arcsec). Independent of any Fourier transform.
    """
    x, img = _galaxy_grid(p, h, half)
    sig = p["psf_fwhm"] / (2 * np.sqrt(2 * np.log(2)))
    xc = (np.arange(NX) - (NX - 1) / 2) * SCALE  # GalSim's centring, even size included
    q = ndtr((xc[:, None] + SCALE / 2 - x) / sig) - ndtr((xc[:, None] - SCALE / 2 - x) / sig)
    return q @ img @ q.T * h * h


def _galsim(obj):
    return to_galsim(obj, TIGHT_GSPARAMS).drawImage(nx=NX, ny=NX, scale=SCALE).array


@pytest.mark.parametrize("case", sorted(CASES))
def test_light_tailed_outliers_match_tight_galsim(x64, case):
    obj = _profile(CASES[case])
    ref = _galsim(obj).astype(float)
    img = np.asarray(jaxsky.draw(obj, nx=NX, ny=NX, scale=SCALE))
    err = np.abs(img - ref).max() / ref.max()
    dflux = abs(img.sum() / ref.sum() - 1.0)
    assert err <= 1e-4, f"max|jaxsky - GalSim| / peak = {err:.3e}"
    assert dflux <= 1e-4, f"|dflux| / flux = {dflux:.3e}"


def test_tight_galsim_reference_is_right_at_outlier():
    """GalSim tight agrees with an independent real-space quadrature (so the target is sound)."""
    p = CASES["sweep72"]
    gobj = to_galsim(_profile(p), TIGHT_GSPARAMS)
    ref = gobj.drawImage(nx=NX, ny=NX, scale=SCALE, dtype=np.float64).array
    rs = _real_space_image(p)
    # Measured 7.6e-8 (quadrature converged to 1e-7 between h = 0.004" and 0.002").
    assert np.abs(ref - rs).max() / rs.max() <= 1e-6
    assert abs(ref.sum() / rs.sum() - 1.0) <= 1e-6
    # Even tighter GalSim settings change nothing at the 1e-6 level.
    tighter = galsim.GSParams(folding_threshold=1e-6, maxk_threshold=1e-7, kvalue_accuracy=1e-10)
    ref2 = gobj.withGSParams(tighter).drawImage(nx=NX, ny=NX, scale=SCALE, dtype=np.float64)
    assert np.abs(ref2.array - ref).max() / ref.max() <= 1e-6


def test_convolution_wing_of_two_gaussians_is_exact():
    """The planner's wing of a convolution: the saddle between two light tails is counted."""
    from jaxsky.render.compound import _saddle_sb_np

    s1, s2 = 0.375, 0.15
    var = s1 * s1 + s2 * s2
    d = np.sqrt(var) * np.array([3.0, 4.0, 5.0, 6.0])
    exact = 200.0 * np.exp(-0.5 * d * d / var) / (2 * np.pi * var)  # fluxes 10 x 20
    a, b = Gaussian(sigma=s1, flux=10.0), Gaussian(sigma=s2, flux=20.0)
    saddle = _saddle_sb_np(lambda r: a._log_sb_np(r), lambda r: b._log_sb_np(r), d)
    np.testing.assert_allclose(saddle, exact, rtol=0.05)
    conv = Convolve([a, b])
    np.testing.assert_allclose(conv._sb_np(d, True), exact, rtol=0.05)
    # The zeroth-order far field (what far_xvalue subtracts) misses a growing share of it.
    ratio = conv._far_sb_np(d, True) / exact
    assert np.all(np.diff(ratio) < 0) and ratio[-1] < 0.1, ratio


def test_planner_wing_bounds_true_wing_at_outlier():
    """At the periodic copies' distances, the planner's (major-axis) wing bounds the true one."""
    p = CASES["sweep72"]
    h = 0.004
    x, img = _galaxy_grid(p, h, 4.0)
    sig = p["psf_fwhm"] / (2 * np.sqrt(2 * np.log(2)))
    phi = 0.5 * np.arctan2(p["g2"], p["g1"])  # major axis of the sheared galaxy
    obj = _profile(p)
    for dist in (2.0, 2.28, 2.5, 3.0):
        px, py = dist * np.cos(phi), dist * np.sin(phi)
        gx, gy = np.exp(-0.5 * ((px - x) / sig) ** 2), np.exp(-0.5 * ((py - x) / sig) ** 2)
        true = gy @ img @ gx * h * h / (2 * np.pi * sig * sig)  # (Sersic x PSF)(px, py)
        est = float(obj._sb_np(np.array(dist), True))
        # Measured: est / true = 1.4 - 1.9 (circular major-axis bound); far_xvalue 0.04 - 0.12.
        assert true <= est <= 3.0 * true, (dist, est / true)
