"""Hybrid emulator: analytic render + learned residual; exact on the paper-like set."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _emu_data import gaussian_set, tiny_vae_residual
from jax.test_util import check_grads

from jaxsky.emulators import fit, hybrid, load
from jaxsky.testing import paper_like_dataset

TINY_VAE = tiny_vae_residual(16, 20)


@pytest.fixture(scope="module")
def paper():
    return paper_like_dataset(48, seed=3)


def test_analytic_part_is_exact_on_paper_and_hybrid_predicts(paper, tmp_path):
    model, _, _ = hybrid.render_dataset(paper, hybrid.default_config())
    peak = np.asarray(paper.images).max(axis=(1, 2))
    err = np.abs(model - np.asarray(paper.images)).max(axis=(1, 2)) / peak
    assert err.max() < 1e-5  # same renderer; plan sizes may differ slightly

    em = fit("hybrid", paper, {"residual": TINY_VAE}, key=jax.random.key(0))
    held = paper_like_dataset(8, seed=11)
    pred = np.asarray(em.predict(held.params))
    truth = np.asarray(held.images)
    herr = np.abs(pred - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2))
    assert herr.max() < 1e-4, herr
    em.save(tmp_path / "h")
    np.testing.assert_allclose(
        load(tmp_path / "h").predict(held.params), pred, rtol=1e-6, atol=1e-6 * truth.max()
    )


def test_hybrid_grads_and_edges(paper, x64):
    with jax.enable_x64(False):
        em = fit("hybrid", paper, {"residual": dict(TINY_VAE, steps=0)}, key=jax.random.key(1))
    st = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), em.state)
    lo = np.array([paper.ranges[k][0] for k in paper.param_names])
    hi = np.array([paper.ranges[k][1] for k in paper.param_names])
    w = jnp.linspace(0.5, 1.5, paper.shape[1])
    f = jax.jit(lambda u: jnp.sum(hybrid.predict(st, lo + u * (hi - lo)) * w) / 1e4)
    check_grads(
        f,
        (jnp.array([0.3, 0.5, 0.6, 0.4, 0.7]),),
        order=1,
        modes=("fwd", "rev"),
        eps=1e-5,
        rtol=2e-3,
    )
    for corner in ([0.0, 0.0, 0.15, 0.15, 0.0], [1.0, 1.0, 0.85, 0.85, 1.0]):
        c = jnp.asarray(corner)
        assert np.isfinite(f(c)) and np.isfinite(jax.grad(f)(c)).all()


def test_hybrid_on_a_set_the_profile_does_not_fit():
    """Gaussian galaxies, Exponential analytic part: the residual is real and gets learned."""
    ds = gaussian_set()
    cfg = {
        "columns": {"scale_radius": "hlr", "g2": 0.0},
        "residual": dict(TINY_VAE, steps=300, lr=3e-3),
    }
    em = fit("hybrid", ds, cfg, key=jax.random.key(2))
    te = ds.split("test")
    truth = np.asarray(te.images)
    model = np.asarray(jax.vmap(lambda t: hybrid.analytic(em.state, t))(jnp.asarray(te.params)))
    pred = np.asarray(em.predict(te.params))
    err_model = np.median(np.abs(model - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2)))
    err_hyb = np.median(np.abs(pred - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2)))
    assert err_model > 1e-2 and err_hyb < 0.5 * err_model, (err_model, err_hyb)


def test_bad_columns_raise():
    ds = gaussian_set()
    with pytest.raises(ValueError, match="scale_radius"):
        fit("hybrid", ds, {}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="profile"):
        fit("hybrid", ds, {"profile": "moffat"}, key=jax.random.key(0))


# ---------------------------------------------------------------- bulge + disk (+ knots) profile
BD_NAMES = ("flux", "bulge_fraction", "bulge_hlr", "disk_hlr", "g1", "g2", "knot_fraction")
BD_CFG = {"profile": "bulge-disk", "psf_profile": "moffat", "psf_beta": 3.5}


def _galsim_bd_mean(p, fwhm, nx, scale):
    """GalSim image of the knots' conditional mean: bulge + (1-kf) disk + kf Gaussian(hlr)."""
    import galsim

    flux, bf, bh, dh, g1, g2, kf = p
    disk = flux * (1 - bf)
    gal = galsim.Add(
        [
            galsim.DeVaucouleurs(half_light_radius=bh, flux=flux * bf),
            galsim.Exponential(half_light_radius=dh, flux=disk * (1 - kf)),
            galsim.Gaussian(half_light_radius=dh, flux=disk * kf),
        ]
    ).shear(g1=g1, g2=g2)
    psf = galsim.Moffat(beta=3.5, fwhm=fwhm)
    return galsim.Convolve(gal, psf).drawImage(nx=nx, ny=nx, scale=scale).array


def test_bulge_disk_analytic_matches_galsim(x64):
    from jaxsky.data import Dataset

    p = np.array(
        [
            [2e4, 0.3, 0.15, 0.6, 0.1, -0.2, 0.3, 0.7],
            [5e4, 0.8, 0.3, 0.4, -0.3, 0.1, 0.0, 0.55],
            [1e4, 0.0, 0.2, 0.9, 0.0, 0.4, 0.5, 0.9],
            [3e4, 1.0, 0.1, 0.3, 0.2, 0.2, 0.1, 0.6],
        ]
    )
    truth = np.stack([_galsim_bd_mean(r[:7], r[7], 32, 0.2) for r in p])
    ds = Dataset.from_arrays(truth, p, (*BD_NAMES, "psf_fwhm"), scale=0.2)
    model, roles, _ = hybrid.render_dataset(ds, {**hybrid.default_config(), **BD_CFG})
    err = np.abs(model - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2))
    assert err.max() < 3e-4, err  # the renderer's GalSim agreement (DeV cores are the hardest)
    assert [r for r, i, _ in roles if i < 0] == ["dx", "dy"]  # knot_fraction read from theta


def test_knot_mean_is_galsims_gaussian():
    """RandomKnots (default profile) averaged over seeds -> Gaussian(hlr), not Exponential(hlr)."""
    import galsim

    psf, nx, hlr, m = galsim.Moffat(beta=3.5, fwhm=0.6), 24, 0.6, 160
    draws = np.stack(
        [
            galsim.Convolve(
                galsim.RandomKnots(50, half_light_radius=hlr, rng=galsim.BaseDeviate(s)), psf
            )
            .drawImage(nx=nx, ny=nx, scale=0.2)
            .array
            for s in range(1, m + 1)
        ]
    )
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(m)
    ref = {
        k: galsim.Convolve(prof(half_light_radius=hlr), psf)
        .drawImage(nx=nx, ny=nx, scale=0.2)
        .array
        for k, prof in (("gauss", galsim.Gaussian), ("exp", galsim.Exponential))
    }
    z_gauss = np.abs(mean - ref["gauss"]) / se
    z_exp = np.abs(mean - ref["exp"]) / se
    assert np.quantile(z_gauss, 0.99) < 4.0 and z_exp.max() > 10.0, (z_gauss.max(), z_exp.max())


# A small peak-scaled PCA+GP residual with a validation-fitted weight (shared by two tests).
_PEAK_RESIDUAL = {
    "residual_family": "pcagp",
    "residual_scale": "peak",
    "residual_weight": "auto",
    "residual": {"normalize": "none", "flux_param": None, "hyper_steps": 60, "max_components": 16},
}


@pytest.fixture(scope="module")
def peak_hybrid():
    ds = gaussian_set()
    cfg = {
        "columns": {"scale_radius": "hlr", "g2": 0.0},
        **_PEAK_RESIDUAL,
    }
    return ds, fit("hybrid", ds, cfg, key=jax.random.key(4))


def test_peak_scaled_residual_is_learned(peak_hybrid, tmp_path):
    ds, em = peak_hybrid
    assert em.state.scale_mode == "peak"
    assert 0.8 < float(em.state.weight) <= 1.0  # a learnable residual keeps its weight
    te = ds.split("test")
    truth = np.asarray(te.images)
    th = jnp.asarray(te.params)
    with jax.enable_x64(True):
        model = np.asarray(jax.vmap(lambda t: hybrid.analytic(em.state, t))(th))
    pred = np.asarray(em.predict(te.params))
    peak = truth.max(axis=(1, 2))
    err_model = np.median(np.abs(model - truth).max(axis=(1, 2)) / peak)
    err_hyb = np.median(np.abs(pred - truth).max(axis=(1, 2)) / peak)
    assert err_model > 1e-2 and err_hyb < 0.2 * err_model, (err_model, err_hyb)
    flux_err = np.abs(pred.sum((1, 2)) / truth.sum((1, 2)) - 1)
    assert np.median(flux_err) < 0.2 * np.median(np.abs(model.sum((1, 2)) / truth.sum((1, 2)) - 1))
    em.save(tmp_path / "hp")
    again = load(tmp_path / "hp")
    assert again.state.scale_mode == "peak"
    np.testing.assert_allclose(again.predict(te.params), pred, rtol=1e-6, atol=1e-6 * peak.max())


def test_peak_scaled_hybrid_grads(peak_hybrid, x64):
    ds, em = peak_hybrid
    lo = np.array([ds.ranges[k][0] for k in ds.param_names])
    hi = np.array([ds.ranges[k][1] for k in ds.param_names])
    w = jnp.linspace(0.5, 1.5, ds.shape[1])
    f = jax.jit(lambda u: jnp.sum(hybrid.predict(em.state, lo + u * (hi - lo)) * w) / 1e3)
    check_grads(f, (jnp.array([0.3, 0.6, 0.4, 0.7]),), order=1, modes=("fwd", "rev"), eps=1e-5)
    for corner in ([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]):
        c = jnp.asarray(corner)
        assert np.isfinite(f(c)) and np.isfinite(jax.grad(f)(c)).all()


def test_flux_scaled_residual_matches_unscaled_target():
    """residual_scale='flux': the residual family sees (image - model) / flux."""
    ds = gaussian_set(n=40, seed=1)
    cfg = {"columns": {"scale_radius": "hlr", "g2": 0.0}, "residual_scale": "flux"}
    model, roles, _ = hybrid.render_dataset(ds, {**hybrid.default_config(), **cfg})
    s = np.asarray(hybrid.residual_scale("flux", roles, jnp.asarray(ds.params), model))
    np.testing.assert_allclose(s, ds.param("flux"), rtol=1e-6)
    s = np.asarray(hybrid.residual_scale("peak", roles, jnp.asarray(ds.params), model))
    np.testing.assert_allclose(s, model.max(axis=(1, 2)), rtol=1e-6)


def test_bad_residual_scale_raises():
    with pytest.raises(ValueError, match="residual_scale='max'"):
        fit("hybrid", gaussian_set(), {"residual_scale": "max"}, key=jax.random.key(0))


def test_auto_weight_shrinks_an_unlearnable_residual():
    """Exact analytic part (Sersic n=0.5 is the Gaussian) + per-image random pixel noise:
    the residual is irreducible, so the fitted weight is small and the hybrid stays close to
    the exact conditional mean instead of adding fitted noise."""
    base = gaussian_set()
    rng = np.random.default_rng(7)
    imgs = np.asarray(base.images)
    noise = 0.03 * imgs.max(axis=(1, 2), keepdims=True) * rng.standard_normal(imgs.shape)
    ds = dataclasses.replace(base, images=(imgs + noise).astype(np.float32))
    cfg = {
        "profile": "sersic",
        "columns": {"n": 0.5, "half_light_radius": "hlr", "g2": 0.0},
        **_PEAK_RESIDUAL,
    }
    em = fit("hybrid", ds, cfg, key=jax.random.key(5))
    w = float(em.state.weight)
    te = base.split("test")
    clean = np.asarray(te.images)
    pred = np.asarray(em.predict(te.params))
    err = np.abs(pred - clean).max(axis=(1, 2)) / clean.max(axis=(1, 2))
    assert w < 0.3, w
    assert np.median(err) < 0.03, np.median(err)  # well below the 0.03-sigma noise's max
