"""Morphology statistics against analytic expectations (GalSim-drawn profiles)."""

import galsim
import numpy as np
import pytest
from scipy.optimize import brentq

from jaxsky.validate.morphology import asymmetry, concentration, gini, m20, morphology


def _draw(obj, n=96, scale=0.1):
    return obj.drawImage(nx=n, ny=n, scale=scale, method="no_pixel").array.astype(np.float64)


def test_gini_limits():
    assert gini(np.ones(100)) == pytest.approx(0.0, abs=1e-12)
    one = np.zeros(100)
    one[7] = 3.0
    assert gini(one) == pytest.approx(1.0, abs=1e-12)
    # two-level image: Gini of a fraction p of pixels holding all the light is 1 - p
    x = np.r_[np.zeros(75), np.ones(25)]
    assert gini(x) == pytest.approx(1 - 0.25, abs=0.01)


def test_concentration_exponential_analytic_and_ordering():
    # exponential disk: enclosed fraction 1 - (1 + x) e^-x, x = r / r0
    frac = lambda x, f: 1 - (1 + x) * np.exp(-x) - f  # noqa: E731
    c_exp = 5 * np.log10(brentq(frac, 1e-3, 50, args=0.8) / brentq(frac, 1e-3, 50, args=0.2))
    im_exp = _draw(galsim.Exponential(scale_radius=0.3), n=160)
    assert concentration(im_exp) == pytest.approx(c_exp, abs=0.1)
    im_gauss = _draw(galsim.Gaussian(half_light_radius=0.5))
    im_dev = _draw(galsim.DeVaucouleurs(half_light_radius=0.5, trunc=4.0))
    im_e = _draw(galsim.Exponential(half_light_radius=0.5))
    assert concentration(im_gauss) < concentration(im_e) < concentration(im_dev)


def test_m20_gaussian_analytic():
    # Gaussian: the brightest 20% of the light lies within u = r^2/2s^2 = -ln 0.8, and
    # M(<r)/M_tot = 1 - e^-u (1 + u) = 1 - 0.8 (1 - ln 0.8)
    expected = np.log10(1 - 0.8 * (1 - np.log(0.8)))
    assert m20(_draw(galsim.Gaussian(sigma=0.6))) == pytest.approx(expected, abs=0.03)


def test_asymmetry_symmetric_and_not():
    sym = _draw(galsim.Gaussian(sigma=0.4).shear(g1=0.3, g2=0.1).shift(0.033, -0.021))
    assert asymmetry(sym) < 5e-3
    lop = sym + 0.5 * _draw(galsim.Gaussian(sigma=0.2).shift(0.8, 0.3))
    assert asymmetry(lop) > 0.2


def test_morphology_all_stats_finite_and_ordered():
    smooth = morphology(_draw(galsim.Sersic(1.0, half_light_radius=0.6)))
    clumpy_im = _draw(galsim.Sersic(1.0, half_light_radius=0.6))
    rng = np.random.default_rng(0)
    for _ in range(6):
        clumpy_im += 0.3 * _draw(
            galsim.Gaussian(sigma=0.08, flux=1).shift(*rng.uniform(-0.8, 0.8, 2))
        )
    clumpy = morphology(clumpy_im)
    assert all(np.isfinite(v) for v in smooth.values())
    assert clumpy["smoothness"] > smooth["smoothness"] + 0.05
    assert clumpy["asymmetry"] > smooth["asymmetry"]
    with pytest.raises(ValueError, match="finite"):
        morphology(np.full((8, 8), np.nan))
