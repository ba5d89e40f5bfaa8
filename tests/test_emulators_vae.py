"""VAE emulator: Fourier PSF convolution, training, latent/GP regression, PSF mode, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _emu_data import gaussian_set
from jax.test_util import check_grads
from scipy.signal import fftconvolve

from jaxsky.emulators import fit, load, vae
from jaxsky.emulators._fourier_psf import psf_convolve
from jaxsky.emulators._latent_gp import gp_fit, gp_mean
from jaxsky.render import Convolve, Gaussian, draw

TINY = dict(
    latent_dim=4,
    enc_features=[4, 8, 8],
    dec_features=[8, 8, 4],
    dense_features=[16, 32],
    dense=32,
    mlp_features=[32, 32],
    val_every=50,
    batch_size=32,
)


def _max_err(pred, truth):
    return np.median(np.abs(pred - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2)))


def test_psf_convolve_matches_scipy_and_renderer(x64):
    rng = np.random.default_rng(0)
    a, p = rng.normal(size=(25, 25)), rng.normal(size=(15, 15))
    np.testing.assert_allclose(psf_convolve(a, p), fftconvolve(a, p, mode="same"), atol=1e-12)
    # Pre-PSF galaxy (no pixel) * PSF image (with pixel) == renderer's drawn convolution,
    # odd and even stamps (even: the PSF's true centre is between pixels).
    gal, psf = Gaussian(sigma=0.45, flux=2.0), Gaussian(sigma=0.3)
    for n, m in [(33, 33), (32, 32)]:
        g = draw(gal, nx=n, ny=n, scale=0.2, method="no_pixel")
        ref = draw(Convolve(gal, psf), nx=n, ny=n, scale=0.2)
        out = psf_convolve(g, draw(psf, nx=m, ny=m, scale=0.2))
        assert float(jnp.abs(out - ref).max() / ref.max()) < 1e-6, (n, m)


def test_conditional_vae_beats_mean_image():
    ds = gaussian_set()
    em = fit("vae", ds, dict(TINY, mode="conditional", steps=250, lr=3e-3), key=jax.random.key(0))
    te = ds.split("test")
    truth = np.asarray(te.images)
    pred = np.asarray(em.predict(te.params))
    unit = np.asarray(ds.split("train").images) / ds.split("train").param("flux")[:, None, None]
    baseline = unit.mean(0)[None] * te.param("flux")[:, None, None]
    assert _max_err(pred, truth) < 0.5 * _max_err(baseline, truth)
    # flux is applied analytically: doubling flux doubles the image exactly
    th2 = te.params[:1].copy()
    th2[0, 0] = min(2 * th2[0, 0], 1e4)
    ratio = em.predict(th2) / em.predict(te.params[:1])
    np.testing.assert_allclose(ratio, th2[0, 0] / te.params[0, 0], rtol=1e-5)


def test_latent_vae_sample_and_save_load(tmp_path):
    ds = gaussian_set()
    cfg = dict(TINY, mode="latent", decoder="dense", regressor="gp", steps=40, gp_steps=20)
    em = fit("vae", ds, cfg, key=jax.random.key(1))
    assert np.isfinite(em.predict(ds.split("test").params)).all()
    th = ds.split("test").params[:3]
    em.save(tmp_path / "m")
    em2 = load(tmp_path / "m")
    np.testing.assert_allclose(em2.predict(th), em.predict(th), rtol=1e-6, atol=1e-6)
    draw = jax.jit(lambda st, t, k: vae.sample(st, t, key=k))
    s1 = draw(em.state, jnp.asarray(th[0]), jax.random.key(5))
    s2 = draw(em2.state, jnp.asarray(th[0]), jax.random.key(5))
    s3 = draw(em.state, jnp.asarray(th[0]), jax.random.key(6))
    assert em.sample(th, key=jax.random.key(5)).shape == (3, *ds.shape)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    assert np.isfinite(s1).all() and float(jnp.abs(s1 - s3).max()) > 0
    assert float(jnp.min(em.state.z_res)) > 0
    # the encoder maps an image to a latent the decoder turns back into a similar image
    mu, _ = vae.encode(em.state, jnp.asarray(ds.images[0]), jnp.asarray(ds.params[0]))
    assert mu.shape == (4,) and np.isfinite(mu).all()


def test_latent_gp_matches_function():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (50, 2))
    f = lambda x: np.stack([np.sin(2 * x[:, 0]) + x[:, 1] ** 2, x[:, 1]], axis=1)  # noqa: E731
    st = gp_fit(x, f(x), steps=40)
    xt = rng.uniform(-0.9, 0.9, (20, 2))
    pred = jax.vmap(lambda c: gp_mean(st, jnp.asarray(c, jnp.float32)))(xt)
    assert float(np.abs(pred - f(xt)).max()) < 0.02


def test_psf_mode_renders_the_dataset_psf():
    ds = gaussian_set()
    cfg = dict(TINY, mode="conditional", decoder="dense", psf_mode=True, steps=150, lr=3e-3)
    em = fit("vae", ds, cfg, key=jax.random.key(3))
    st = em.state
    i = 0
    th = jnp.asarray(ds.params[i], jnp.float32)
    # PSF from the psf_fwhm column matches the data set's PSF image (renderer conventions)
    psf = vae.render_psf(st, th)
    np.testing.assert_allclose(psf, ds.psfs[i], atol=1e-5 * float(ds.psfs[i].max()))
    np.testing.assert_allclose(
        vae.predict(st, th),
        vae.predict_with_psf(st, th, jnp.asarray(ds.psfs[i])),
        rtol=1e-4,
        atol=1e-4 * float(ds.images[i].max()),
    )
    te = ds.split("test")
    unit = np.asarray(ds.split("train").images) / ds.split("train").param("flux")[:, None, None]
    baseline = unit.mean(0)[None] * te.param("flux")[:, None, None]
    assert _max_err(np.asarray(em.predict(te.params)), te.images) < _max_err(baseline, te.images)


def _perturb(a):
    return a + 0.05 * jnp.cos(jnp.arange(a.size).reshape(a.shape))


def _tiny_state(mode, **kw):
    ds = gaussian_set()
    em = fit(
        "vae",
        ds,
        dict(TINY, mode=mode, steps=3, reg_steps=3, finetune_steps=3, **kw),
        key=jax.random.key(4),
    )
    return ds, em


@pytest.mark.parametrize(
    "mode,kw", [("conditional", {"decoder": "dense"}), ("latent", {"psf_mode": True})]
)
def test_predict_check_grads_and_edges(x64, mode, kw):
    ds, em = _tiny_state(mode, **kw)
    st = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), em.state)
    # perturb the zero-initialised last layers so the gradient is not trivially zero
    st = st.replace(
        params=jax.tree.map(
            lambda a: a + 0.01 * jnp.cos(jnp.arange(a.size).reshape(a.shape)), st.params
        )
    )

    lo = np.array([ds.ranges[k][0] for k in ds.param_names])
    hi = np.array([ds.ranges[k][1] for k in ds.param_names])

    def f(u):  # u in [0, 1]^P maps onto the parameter box, so one eps suits every column
        theta = lo + u * (hi - lo)
        return jnp.sum(vae.predict(st, theta) * jnp.linspace(0.5, 1.5, ds.shape[1]))

    f = jax.jit(f)  # compiled once: eager flax ops are slow
    check_grads(f, (jnp.array([0.3, 0.6, 0.45, 0.7]),), order=1, modes=("fwd", "rev"), eps=1e-4)
    for corner in ([0.0] * 4, [1.0] * 4, [0.0, 1.0, 0.0, 1.0]):
        c = jnp.asarray(corner, jnp.float64)
        assert np.isfinite(f(c)) and np.isfinite(jax.grad(f)(c)).all()


def test_bad_config_is_rejected():
    ds = gaussian_set()
    with pytest.raises(ValueError, match="mode"):
        fit("vae", ds, {"mode": "nope"}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="flux_param"):
        fit("vae", ds, {"flux_param": "mag"}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown vae config"):
        fit("vae", ds, {"laten_dim": 3}, key=jax.random.key(0))


def test_log_conditioning_and_legacy_checkpoints(tmp_path):
    """Sizes/PSF are conditioned in log (range ends map to -1/+1); a model saved before
    ``log_cond``/``dense_features`` existed loads with the linear map and ``dec_features``."""
    import json

    ds = gaussian_set()
    em = fit("vae", ds, dict(TINY, decoder="dense", steps=3), key=jax.random.key(7))
    assert em.state.spec.cond_log == (True, False, True)  # hlr, g1, psf_fwhm (flux analytic)
    lo = np.array([ds.ranges[k][0] for k in ds.param_names])
    hi = np.array([ds.ranges[k][1] for k in ds.param_names])
    mid = np.where(lo > 0, np.sqrt(np.abs(lo * hi)), 0.5 * (lo + hi))  # log-midpoints -> 0
    for theta, want in ((lo, -1.0), (hi, 1.0)):
        np.testing.assert_allclose(vae._cond(em.state, jnp.asarray(theta)), want, atol=1e-5)
    c = np.asarray(vae._cond(em.state, jnp.asarray(mid)))
    np.testing.assert_allclose(c[[0, 2]], 0.0, atol=1e-5)
    legacy = dict(TINY, decoder="dense", steps=3, log_cond=False, dense_features=None)
    old = fit("vae", ds, legacy, key=jax.random.key(8))
    old.save(tmp_path / "old")
    meta = tmp_path / "old" / "emulator.json"
    doc = json.loads(meta.read_text())
    for k in ("log_cond", "dense_features", "warmup"):
        doc["config"].pop(k)
    meta.write_text(json.dumps(doc))
    back = load(tmp_path / "old")
    assert back.state.spec.cond_log == (False, False, False)
    th = ds.params[:4]
    np.testing.assert_allclose(back.predict(th), old.predict(th), rtol=1e-6, atol=1e-6)


def test_noise_floor_is_relative_to_each_image(monkeypatch):
    """Noiseless sets: each image's likelihood sigma is noise_floor x its own peak."""
    ds = gaussian_set()
    seen = {}
    real = vae.train_loop

    def spy(loss, params, batches, **kw):
        seen["batch"] = batches(0, jax.random.key(0))
        return real(loss, params, batches, **kw)

    monkeypatch.setattr(vae, "train_loop", spy)
    fit("vae", ds, dict(TINY, decoder="dense", steps=1, batch_size=8), key=jax.random.key(0))
    xb, _, wb, _ = (np.asarray(a) if a is not None else None for a in seen["batch"])
    np.testing.assert_allclose(wb, 1.0 / (1e-3 * xb.max(axis=(1, 2))) ** 2, rtol=1e-5)
