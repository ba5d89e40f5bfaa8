"""The renderer's fast paths agree with the general ones they replace."""

import jax
import numpy as np
import pytest

import jaxsky
from jaxsky.render import drawing
from jaxsky.render._planning import plan_sizes_rings


def _galaxy(n=2.5, g1=0.2, g2=-0.1, dx=0.07, dy=-0.04):
    gal = jaxsky.Sersic(n, half_light_radius=0.6, flux=3.0).shear(g1=g1, g2=g2).shift(dx, dy)
    return jaxsky.Convolve(gal, jaxsky.Moffat(3.0, fwhm=0.7).shift(0.02, 0.01))


@pytest.mark.parametrize("k_fold", [1, 2, 3])
def test_factored_real_path_matches_complex_path(x64, k_fold):
    # Add([obj]) has no real factorisation, so it takes the general complex-valued path.
    obj = _galaxy()
    plan = jaxsky.DrawPlan(33, 32, 0.2, n_fft=48, k_fold=k_fold, alias_rings=0)
    assert obj._kfactor(np.zeros((1, 1)), np.zeros((1, 1))) is not None
    assert jaxsky.Add([obj])._kfactor(np.zeros((1, 1)), np.zeros((1, 1))) is None
    fast = np.asarray(drawing._draw_core(obj, plan))
    slow = np.asarray(drawing._draw_core(jaxsky.Add([obj]), plan))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12 * np.abs(slow).max())


def test_singular_values_closed_form():
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(200, 2, 2))
    t = jaxsky.Gaussian(sigma=1.0).transform(*(jac[:, i, j] for i in (0, 1) for j in (0, 1)))
    ref = np.linalg.svd(np.asarray(t.jac, float), compute_uv=False)
    np.testing.assert_allclose(t._singular_values(), ref, rtol=1e-6, atol=1e-7)


def test_planned_rings_keep_the_alias_budget(x64):
    # The planner picks the fewest rings of copies to correct; the image then differs from
    # the fully corrected one by no more than the budget (1e-5 of peak by default).
    rng = np.random.default_rng(5)
    b = 4
    gal = jaxsky.Sersic(rng.uniform(0.5, 6, b), half_light_radius=rng.uniform(0.1, 1.5, b))
    obj = jaxsky.Convolve(gal.shear(g1=0.1, g2=0.0), jaxsky.Moffat(3.0, fwhm=0.8))
    n_fft, k_fold, ok, rings = plan_sizes_rings(obj, 32, 32, 0.2)
    assert ok.all() and (rings <= jaxsky.GSParams().alias_rings).all()
    assert len(set(rings.tolist())) > 1  # the workload exercises more than one ring count
    leaves, tree = jax.tree_util.tree_flatten(obj)
    flags = drawing.batch_flags(obj)
    for i in range(b):
        one = jax.tree_util.tree_unflatten(
            tree, [np.asarray(x)[i] if f else x for x, f in zip(leaves, flags)]
        )
        plan = jaxsky.DrawPlan(32, 32, 0.2, int(n_fft[i]), int(k_fold[i]), True, int(rings[i]))
        few = np.asarray(drawing._draw_core(one, plan))
        full = np.asarray(drawing._draw_core(one, plan._replace(alias_rings=3)))
        assert np.abs(few - full).max() <= 1e-5 * full.max()


def test_draw_batch_groups_by_rings_match_single_draws():
    rng = np.random.default_rng(7)
    b = 5
    gal = jaxsky.Sersic(rng.uniform(0.5, 6, b), half_light_radius=rng.uniform(0.1, 1.5, b))
    obj = jaxsky.Convolve(gal, jaxsky.Moffat(3.0, fwhm=0.8))
    imgs = np.asarray(jaxsky.draw_batch(obj, nx=32, ny=32, scale=0.2, chunk_size=2))
    for i in (0, 4):
        one = jaxsky.Convolve(
            jaxsky.Sersic(float(gal.n[i]), half_light_radius=float(gal.half_light_radius[i])),
            jaxsky.Moffat(3.0, fwhm=0.8),
        )
        ref = np.asarray(jaxsky.draw(one, nx=32, ny=32, scale=0.2))
        np.testing.assert_allclose(imgs[i], ref, rtol=0, atol=2e-5 * ref.max())
