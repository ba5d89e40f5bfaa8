"""Fits through a trained PCA+GP emulator agree with fits through the renderer (issue 6).

GalSim draws noisy Exponential x Gaussian stamps inside the emulator's training box; the same
stamps are fitted through the emulator and through jaxsky's renderer with one fitter
(``fit_images``) and one parameter box, and the two answers are compared in units of the
statistical error.
"""

import galsim
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxsky.emulators as em
from jaxsky.infer.emulated import _kernels, _space, fit_emulator, fit_images
from jaxsky.render import Convolve, Exponential, Gaussian, draw, make_plan
from jaxsky.testing import paper_like_dataset

SMALL = {"n_components": 10, "hyper_steps": 60, "n_hyper": 96, "groups": [3]}
NT = 12
# one static plan for the renderer fits: the largest, most sheared galaxy of the box
PLAN = make_plan(
    Convolve(Exponential(scale_radius=1.0).shear(g1=0.6, g2=0.0), Gaussian(fwhm=0.4)), 33, 33, 0.2
)


def render_model(t):
    """theta = (flux, scale_radius, g1, g2, psf_fwhm) -> 33x33 image, the emulator's layout."""
    gal = Exponential(flux=t[0], scale_radius=t[1]).shear(g1=t[2], g2=t[3])
    return draw(Convolve(gal, Gaussian(fwhm=t[4])), nx=33, ny=33, scale=0.2, plan=PLAN)


@pytest.fixture(scope="module")
def setup():
    emu = em.fit("pcagp", paper_like_dataset(160, seed=0), SMALL, key=jax.random.key(0))
    names, ranges = emu.param_names, emu.info["ranges"]
    lo, hi = (np.array([ranges[k][i] for k in names]) for i in (0, 1))
    rng = np.random.default_rng(3)
    theta = lo + (hi - lo) * rng.uniform(0.15, 0.85, (NT, len(names)))
    clean = np.empty((NT, 33, 33))
    for i, t in enumerate(theta):
        gal = galsim.Exponential(flux=t[0], scale_radius=t[1]).shear(g1=t[2], g2=t[3])
        obj = galsim.Convolve(gal, galsim.Gaussian(fwhm=t[4]))
        clean[i] = obj.drawImage(nx=33, ny=33, scale=0.2).array
    sigma = np.sqrt((clean**2).sum((1, 2))) / rng.uniform(20, 40, NT)  # optimal SNR 20-40
    images = clean + sigma[:, None, None] * rng.standard_normal(clean.shape)
    fixed = {"psf_fwhm": theta[:, 4]}
    fe = fit_emulator(emu, images, sigma**2, fixed=fixed)
    fr = fit_images(render_model, names, ranges, images, sigma**2, fixed=fixed)
    return emu, theta, images, sigma, fe, fr


def test_emulator_fit_agrees_with_renderer_fit(setup):
    emu, theta, _, _, fe, fr = setup
    ok = fe["converged"] & fr["converged"]
    assert ok.mean() >= 0.9
    for i, k in enumerate(emu.param_names[:4]):
        d = ((fe[k] - fr[k]) / fr[f"{k}_err"])[ok]
        # the emulator's image error (~1e-3 of the peak) is far below the noise: the two
        # optima differ by a fraction of the statistical error, and so do the errors
        assert np.sqrt(np.mean(d**2)) < 0.5 and np.max(np.abs(d)) < 1.5, (k, d)
        np.testing.assert_allclose(fe[f"{k}_err"][ok], fr[f"{k}_err"][ok], rtol=0.15)
        # both recover the GalSim truth within their errors (12 galaxies: loose)
        z = ((fr[k] - theta[:, i]) / fr[f"{k}_err"])[ok]
        assert np.all(np.abs(z) < 4.5) and np.mean(z**2) < 3.0, (k, z)
    np.testing.assert_array_equal(fe["psf_fwhm"], theta[:, 4])  # held fixed
    assert np.all(np.abs(fe["chi2"][ok] / 33**2 - 1) < 5 * np.sqrt(2 / 33**2))


def test_bad_input(setup):
    emu, theta, images, sigma, _, _ = setup
    with pytest.raises(ValueError, match="unknown parameters"):
        fit_emulator(emu, images[:2], sigma[:2] ** 2, fixed={"psf": 0.3})
    with pytest.raises(ValueError, match="emulator makes 33x33"):
        fit_emulator(emu, images[:2, :30, :30], sigma[:2] ** 2)
    with pytest.raises(ValueError, match="no \\(lo, hi\\) box"):
        fit_images(render_model, emu.param_names, {"flux": (1e4, 1e5)}, images[:2], 1.0)
    bad = dict(emu.info["ranges"], flux=(1e5, 1e4))
    with pytest.raises(ValueError, match="lo < hi"):
        fit_images(render_model, emu.param_names, bad, images[:2], 1.0)
    with pytest.raises(ValueError, match="variance"):
        fit_emulator(emu, images[:2], -1.0)


def test_objective_gradients(setup, x64):
    """The fit's objective (renderer model, logistic box) in float64: check_grads, and finite
    at the box edges (|u| large saturates the logistic without NaN)."""
    emu, theta, images, sigma, _, _ = setup
    box = tuple(tuple(emu.info["ranges"][k]) for k in emu.param_names[:4])
    space = _space(box)
    f, r = _kernels(render_model, space, (0, 1, 2, 3), (4,))
    data = jnp.asarray(images[0])
    ivar = jnp.full((33, 33), 1 / sigma[0] ** 2)
    fix = jnp.asarray(theta[0, 4:])
    u = space.to_unconstrained(jnp.asarray(theta[0, :4]))
    loss = jax.jit(lambda v: f(v, data, ivar, fix))  # jit: eager op-by-op would be slow
    check_grads(loss, (u,), order=1, modes=["fwd", "rev"], eps=1e-4)
    edges = jnp.array([[-30.0] * 4, [30.0] * 4, [-30.0, 30.0, -30.0, 30.0]])
    g = jax.vmap(jax.grad(loss))(edges)
    assert np.all(np.isfinite(g))
    assert np.all(np.isfinite(jax.vmap(lambda v: r(v, data, ivar, fix))(edges)))
