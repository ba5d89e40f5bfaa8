"""Batching: vmap / draw_batch agree with one-at-a-time drawing; no silent recompiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsky
from jaxsky.render import drawing


def make(n, hlr, g1, flux):
    gal = jaxsky.Sersic(n, half_light_radius=hlr, flux=flux).shear(g1=g1, g2=0.05)
    return jaxsky.Convolve(gal, jaxsky.Moffat(2.5, fwhm=0.7))


def test_draw_batch_matches_single_draws():
    rng = np.random.default_rng(3)
    n = rng.uniform(0.5, 6, 7)
    hlr = rng.uniform(0.2, 1.0, 7)
    g1 = rng.uniform(-0.3, 0.3, 7)
    flux = rng.uniform(1e3, 1e4, 7)
    batch = make(n, hlr, g1, flux)
    plan = jaxsky.make_plan(batch, 32, 32, 0.2)
    imgs = np.asarray(jaxsky.draw_batch(batch, nx=32, ny=32, scale=0.2, plan=plan, chunk_size=3))
    assert imgs.shape == (7, 32, 32)
    for i in range(7):
        one = np.asarray(
            jaxsky.draw(make(n[i], hlr[i], g1[i], flux[i]), nx=32, ny=32, scale=0.2, plan=plan)
        )
        np.testing.assert_allclose(imgs[i], one, rtol=0, atol=1e-5 * one.max())
    vm = jax.vmap(
        lambda a, b, c, d: jaxsky.draw(make(a, b, c, d), nx=32, ny=32, scale=0.2, plan=plan)
    )
    np.testing.assert_allclose(
        np.asarray(vm(n, hlr, g1, flux)), imgs, rtol=0, atol=1e-5 * imgs.max()
    )


def test_no_recompile_for_same_shapes():
    plan = jaxsky.make_plan(make(2.0, 0.5, 0.1, 1.0), 16, 16, 0.2)
    f = jax.jit(lambda a: jaxsky.draw(make(a, 0.5, 0.1, 1.0), nx=16, ny=16, scale=0.2, plan=plan))
    f(jnp.float32(2.0)).block_until_ready()
    before = f._cache_size()
    f(jnp.float32(3.5)).block_until_ready()
    assert f._cache_size() == before == 1


def test_flux_and_centroid_of_even_and_odd_stamps():
    for nx in (32, 33):
        img = np.asarray(
            jaxsky.draw(jaxsky.Gaussian(sigma=0.4, flux=10.0), nx=nx, ny=nx, scale=0.2)
        )
        assert np.isclose(img.sum(), 10.0, rtol=1e-4)
        c = (nx - 1) / 2
        y, x = np.mgrid[:nx, :nx]
        assert abs((img * x).sum() / img.sum() - c) < 1e-4
        assert abs((img * y).sum() / img.sum() - c) < 1e-4


def test_streamed_planning_draws_every_galaxy_with_a_plan_that_fits(monkeypatch):
    """Planned block by block (chunks start while later blocks are planned), every galaxy is
    drawn once, with FFT sizes at least those it needs, in whole chunks and one remainder
    per plan and block, and matches its own draw."""

    monkeypatch.setattr(drawing, "_PLAN_BLOCK", 8)
    rng = np.random.default_rng(5)
    b = 29  # not a multiple of the block or the chunk
    n, hlr = rng.uniform(0.5, 6, b), rng.uniform(0.1, 1.2, b)
    g1, flux = rng.uniform(-0.3, 0.3, b), rng.uniform(1e3, 1e4, b)
    batch = make(n, hlr, g1, flux)
    need = drawing.plan_sizes_rings(batch, 32, 32, 0.2)
    seen = np.zeros(b, int)
    host = jax.tree_util.tree_map(np.asarray, batch)
    prev, remainders = 0, set()
    for plan, idx in drawing._stream_groups(host, 32, 32, 0.2, "auto", None, b, 4):
        seen[idx] += 1
        assert np.all(plan.n_fft >= need[0][idx]) and np.all(plan.k_fold >= need[1][idx])
        assert np.all(plan.alias_rings >= need[3][idx])
        (blk,) = set(idx // 8)  # one block per group: a block is done before the next starts
        assert blk >= prev
        prev = blk
        if len(idx) % 4:  # at most one remainder per plan and block
            assert (plan, blk) not in remainders
            remainders.add((plan, blk))
    np.testing.assert_array_equal(seen, 1)
    imgs = np.asarray(jaxsky.draw_batch(batch, nx=32, ny=32, scale=0.2, chunk_size=4))
    for i in range(0, b, 7):
        one = np.asarray(jaxsky.draw(make(n[i], hlr[i], g1[i], flux[i]), nx=32, ny=32, scale=0.2))
        np.testing.assert_allclose(imgs[i], one, rtol=0, atol=2e-5 * one.max())


@pytest.mark.parametrize("n_fft,k_fold", [(36, 1), (64, 2), (128, 2), (192, 2), (2048, 4)])
def test_grid_chunk_is_the_largest_power_of_two_within_the_budget(n_fft, k_fold):
    # Large grids run in smaller chunks (per-image cost grows once a chunk leaves the caches).
    plan = drawing.DrawPlan(64, 64, 0.2, n_fft, k_fold)
    points = k_fold**2 * (n_fft // 2 + 1) * n_fft
    c = drawing._grid_chunk(plan)
    assert c >= 1 and c & (c - 1) == 0
    assert c == 1 or c * points <= drawing._GRID_BUDGET < 2 * c * points
