"""Hybrid emulator: analytic render + learned residual; exact on the paper-like set."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _emu_data import gaussian_set
from jax.test_util import check_grads

from jaxsky.emulators import fit, hybrid, load
from jaxsky.testing import paper_like_dataset

TINY_VAE = dict(
    mode="conditional",
    decoder="dense",
    dec_features=[16],
    mlp_features=[16],
    latent_dim=4,
    steps=20,
    val_every=10,
    batch_size=16,
)


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
