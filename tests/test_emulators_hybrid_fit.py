"""Hybrid emulator whose analytic part is each galaxy's own single-Sersic fit."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _emu_data import gaussian_set, tiny_vae_residual
from jax.test_util import check_grads

from jaxsky.emulators import fit, hybrid, load
from jaxsky.emulators._flux_model import flux_target, flux_template, log_flux_ratio
from jaxsky.errors import CheckpointError

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
    assert em.state.flux is not None  # sersic_fit_config's default: the flux has its own GP
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


# ---------------------------------------------------------------- the separate flux model
# PCA+GP residual shrunk to w = 0.3 on purpose: without a flux model the hybrid would keep 70%
# of the fit render's flux error; with it the flux does not depend on w.
_FLUX_CFG = dict(
    psf_profile="gaussian",
    residual_family="pcagp",
    residual_scale="peak",
    residual_weight=0.3,
    residual={"normalize": "none", "flux_param": None, "hyper_steps": 40, "max_components": 16},
    flux={"hyper_steps": 80},
)


@pytest.fixture(scope="module")
def flux_hybrid():
    ds = gaussian_set()
    dsf = hybrid.with_sersic_fit(ds, _fit_columns(ds, 1.0))
    return dsf, fit("hybrid", dsf, hybrid.sersic_fit_config(**_FLUX_CFG), key=jax.random.key(3))


def test_flux_model_is_not_shrunk_with_the_residual(flux_hybrid, tmp_path):
    dsf, em = flux_hybrid
    te = dsf.split("test")
    truth = np.asarray(te.images, np.float64)
    th = jnp.asarray(te.params)
    with jax.enable_x64(True):
        model = np.asarray(jax.vmap(lambda t: hybrid.analytic(em.state, t))(th), np.float64)
        f_hat = np.asarray(jax.vmap(lambda t: log_flux_ratio(em.state.flux, t))(th))
    pred = np.asarray(em.predict(te.params), np.float64)
    t_flux = truth.sum((1, 2))
    fit_bias = model.sum((1, 2)) / t_flux - 1  # the n = 1 render's flux error in the stamp
    hyb_bias = pred.sum((1, 2)) / t_flux - 1
    assert np.median(np.abs(fit_bias)) > 5e-4, fit_bias
    assert np.median(np.abs(hyb_bias)) < 0.05 * np.median(np.abs(fit_bias)), hyb_bias
    # the residual carries no flux: the image's flux is the flux model's, exactly
    np.testing.assert_allclose(pred.sum((1, 2)), model.sum((1, 2)) * np.exp(f_hat), rtol=2e-6)
    np.testing.assert_allclose(
        np.sum(np.asarray(em.state.flux.template, np.float64)), 1.0, rtol=1e-9
    )
    assert _err(pred, truth) < 0.75 * _err(model, truth)  # w = 0.3 of the residual: ~0.7x
    # save / load round trip keeps the flux model
    em.save(tmp_path / "f")
    again = load(tmp_path / "f")
    np.testing.assert_allclose(again.predict(te.params), pred, rtol=1e-6, atol=1e-6 * truth.max())


def test_flux_model_checkpoints_old_and_mismatched(flux_hybrid, tmp_path):
    import json

    dsf, em = flux_hybrid
    em.save(tmp_path / "gp")
    doc = json.loads((tmp_path / "gp" / "emulator.json").read_text())
    doc["config"]["flux_correction"] = None
    (tmp_path / "gp" / "emulator.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="has a flux model but flux_correction"):
        load(tmp_path / "gp")
    # a checkpoint written before the flux model existed: no config keys, no state entry
    cfg = hybrid.sersic_fit_config(psf_profile="gaussian", residual=dict(TINY_VAE, steps=0))
    old = fit("hybrid", dsf, {**cfg, "flux_correction": None}, key=jax.random.key(1))
    assert old.state.flux is None
    old.save(tmp_path / "old")
    doc = json.loads((tmp_path / "old" / "emulator.json").read_text())
    for k in ("flux_correction", "flux"):
        del doc["config"][k]
    (tmp_path / "old" / "emulator.json").write_text(json.dumps(doc))
    te = dsf.split("test")
    np.testing.assert_array_equal(load(tmp_path / "old").predict(te.params), old.predict(te.params))
    doc["config"]["flux_correction"] = "gp"
    (tmp_path / "old" / "emulator.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="no flux model"):
        load(tmp_path / "old")


def test_flux_target_template_and_config_errors():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(30, 6, 5))
    t = flux_template(r, "learned")
    np.testing.assert_allclose(t.sum(), 1.0, rtol=1e-12)
    # it is the least-squares pattern: residuals minus f_i t have no component along f
    f = r.sum((1, 2))
    np.testing.assert_allclose(np.tensordot(f, r - f[:, None, None] * t, 1), 0, atol=1e-10)
    np.testing.assert_allclose(flux_template(r, "uniform"), np.full((6, 5), 1 / 30))
    np.testing.assert_allclose(flux_template(np.zeros((3, 6, 5)), "learned"), 1 / 30)
    imgs = np.ones((3, 4, 4))
    np.testing.assert_allclose(flux_target(imgs, 2 * imgs), np.log(0.5))
    y = flux_target(imgs, np.stack([imgs[0], -imgs[1], imgs[2]]))  # no ratio for row 1
    np.testing.assert_array_equal(np.isnan(y), [False, True, False])
    ds = gaussian_set()
    dsf = hybrid.with_sersic_fit(ds, _fit_columns(ds, 1.0))
    with pytest.raises(ValueError, match="flux_correction='ml'"):
        fit("hybrid", dsf, hybrid.sersic_fit_config(flux_correction="ml"), key=jax.random.key(0))
    bad = hybrid.sersic_fit_config(psf_profile="gaussian", flux={"template": "core"})
    with pytest.raises(ValueError, match="flux template='core'"):
        fit("hybrid", dsf, bad, key=jax.random.key(0))
    neg = dataclasses.replace(dsf, images=-np.asarray(dsf.images))  # no positive flux at all
    with pytest.raises(ValueError, match="positive in-stamp flux; 0 of"):
        fit("hybrid", neg, hybrid.sersic_fit_config(psf_profile="gaussian"), key=jax.random.key(0))
