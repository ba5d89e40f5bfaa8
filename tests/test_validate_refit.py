"""Sersic refit pipeline: the forward model against GalSim, gradients, parameter recovery."""

import galsim
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxsky.validate.refit import sersic_model, sersic_refit

TRUTH = [(2.3, 0.5, 1e4, 0.2, -0.1, 0.07, -0.03), (1.2, 0.7, 3e4, -0.15, 0.25, -0.05, 0.02)]


def _stamps(nx=36, px=25):
    ims, psfs = [], []
    psf = galsim.Moffat(3.0, fwhm=0.6)
    for n, hlr, flux, g1, g2, dx, dy in TRUTH:
        gal = galsim.Sersic(n, half_light_radius=hlr, flux=flux).shear(g1=g1, g2=g2)
        obj = galsim.Convolve(gal.shift(dx, dy), psf)
        ims.append(obj.drawImage(nx=nx, ny=nx, scale=0.2).array)
        psfs.append(psf.drawImage(nx=px, ny=px, scale=0.2).array)
    return np.array(ims, np.float64), np.array(psfs, np.float64)


def test_forward_model_matches_galsim_and_grads(x64):
    ims, psfs = _stamps(nx=33, px=32)  # odd stamp, even PSF: both half-pixel conventions
    for t, im, p in zip(TRUTH, ims, psfs):
        model = np.asarray(sersic_model(t, jnp.asarray(p), shape=im.shape, scale=0.2))
        # 5e-4 of the peak: the PSF image's truncated Moffat wings and its sampling
        assert np.abs(model - im).max() < 5e-4 * im.max()
    f = jax.jit(lambda th: sersic_model(th, jnp.asarray(psfs[0]), shape=(33, 33), scale=0.2))
    th = jnp.asarray(TRUTH[0])
    check_grads(lambda t: f(t)[10:20, 12:18], (th,), order=1, modes="rev", rtol=1e-4, atol=1e-3)
    assert np.all(np.isfinite(np.asarray(jax.jacrev(lambda t: f(t).sum())(th.at[3:5].set(0.0)))))


def test_refit_recovers_parameters():
    ims, psfs = _stamps()
    fit = sersic_refit(ims, psfs, scale=0.2, steps=400)
    for i, (n, hlr, flux, g1, g2, dx, dy) in enumerate(TRUTH):
        assert fit.loss[i] < 1e-4
        assert fit.n[i] == pytest.approx(n, abs=0.1)
        assert fit.hlr[i] == pytest.approx(hlr, rel=0.02)
        assert fit.flux[i] == pytest.approx(flux, rel=0.01)
        assert fit.g1[i] == pytest.approx(g1, abs=0.01) and fit.g2[i] == pytest.approx(g2, abs=0.01)
        assert fit.dx[i] == pytest.approx(dx, abs=0.01) and fit.dy[i] == pytest.approx(dy, abs=0.01)
    with pytest.raises(ValueError, match="n_range"):
        sersic_refit(ims, psfs, scale=0.2, n_range=(2.0, 4.0))
