"""Hybrid emulator whose analytic part is each galaxy's own single-Sersic fit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _emu_data import gaussian_set, tiny_vae_residual
from jax.test_util import check_grads

from jaxsky.emulators import fit, hybrid

TINY_VAE = tiny_vae_residual(32, 150, lr=5e-3)


def _fit_columns(ds, n):
    """A "catalogue fit" of the Gaussian set: Sersic n with the true flux, size and shear.

    n = 0.5 is exact (a Sersic of index 1/2 is a Gaussian); other n is a wrong profile whose
    error is a smooth function of theta, for the residual to learn.
    """
    z = np.zeros(len(ds.params))
    return {
        "flux": ds.param("flux"),
        "half_light_radius": ds.param("hlr"),
        "n": np.full(len(z), n),
        "g1": ds.param("g1"),
        "g2": z,
        "dx": z,
        "dy": z,
    }


def _err(pred, truth):
    truth = np.asarray(truth)
    return np.median(np.abs(np.asarray(pred) - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2)))


def test_exact_fit_renders_the_images():
    ds = gaussian_set()
    dsf = hybrid.with_sersic_fit(ds, _fit_columns(ds, 0.5))
    assert dsf.param_names[-7:] == tuple("fit_" + k for k in hybrid.SERSIC_FIT)
    np.testing.assert_array_equal(dsf.params[:, :4], ds.params)
    cfg = {**hybrid.default_config(), **hybrid.sersic_fit_config(psf_profile="gaussian")}
    model, roles, _ = hybrid.render_dataset(dsf, cfg)
    assert dict((r, i) for r, i, _ in roles)["psf_fwhm"] == 3  # the design's PSF column
    # Sersic(n=0.5) x Gaussian PSF == the Gaussian galaxies (same renderer; 1e-4 of the peak)
    assert _err(model, ds.images) < 1e-4


def test_residual_from_the_fit_is_learned():
    """An n = 1 "fit" of Gaussian galaxies misses ~10% of the peak; the residual recovers it."""
    ds = gaussian_set()
    dsf = hybrid.with_sersic_fit(ds, _fit_columns(ds, 1.0))
    cfg = hybrid.sersic_fit_config(psf_profile="gaussian", residual=TINY_VAE)
    em = fit("hybrid", dsf, cfg, key=jax.random.key(0))
    te = dsf.split("test")
    fit_render = jax.vmap(lambda t: hybrid.analytic(em.state, t))(jnp.asarray(te.params))
    err_fit, err_hyb = _err(fit_render, te.images), _err(em.predict(te.params), te.images)
    assert err_fit > 3e-2 and err_hyb < 0.5 * err_fit, (err_fit, err_hyb)


def test_sersic_fit_hybrid_grads_and_edges(x64):
    ds = gaussian_set()
    dsf = hybrid.with_sersic_fit(ds, _fit_columns(ds, 1.0))
    cfg = hybrid.sersic_fit_config(psf_profile="gaussian", residual=dict(TINY_VAE, steps=0))
    with jax.enable_x64(False):
        em = fit("hybrid", dsf, cfg, key=jax.random.key(1))
    st = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), em.state)
    names = dsf.param_names
    lo = np.array([dsf.ranges[k][0] for k in names])
    hi = np.array([dsf.ranges[k][1] for k in names])
    # the fit's n, g2, dx, dy are constant in the set: span a physical box for them instead
    box = {"fit_n": (0.5, 4.0), "fit_g2": (-0.3, 0.3), "fit_dx": (-0.2, 0.2), "fit_dy": (-0.2, 0.2)}
    for k, (a, b) in box.items():
        lo[names.index(k)], hi[names.index(k)] = a, b
    w = jnp.linspace(0.5, 1.5, ds.shape[1])
    f = jax.jit(lambda u: jnp.sum(hybrid.predict(st, lo + u * (hi - lo)) * w) / 1e3)
    u0 = jnp.linspace(0.2, 0.8, len(names))
    check_grads(f, (u0,), order=1, modes=("fwd", "rev"), eps=1e-5, rtol=2e-3)
    for corner in (jnp.zeros(len(names)), jnp.ones(len(names))):
        assert np.isfinite(f(corner)) and np.isfinite(jax.grad(f)(corner)).all()


def test_with_sersic_fit_rejects_bad_columns():
    ds = gaussian_set()
    cols = _fit_columns(ds, 1.0)
    with pytest.raises(ValueError, match="'dy'"):
        hybrid.with_sersic_fit(ds, {k: v for k, v in cols.items() if k != "dy"})
    with pytest.raises(ValueError, match=r"fit\['n'\] must hold 96"):
        hybrid.with_sersic_fit(ds, {**cols, "n": np.ones(5)})
    with pytest.raises(ValueError, match="non-finite"):
        hybrid.with_sersic_fit(ds, {**cols, "flux": np.full(96, np.nan)})
    with pytest.raises(ValueError, match="prefix"):
        hybrid.with_sersic_fit(ds, cols, prefix="")  # "flux" etc. already exist
