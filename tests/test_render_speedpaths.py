"""The renderer's speed rewrites agree with the straightforward forms they replace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxsky
from jaxsky.render import _planning, _tables, drawing


def _reference_table(name, p, u, tail):
    """The plain composition (autodiff goes through the gathers)."""
    tab = _tables.load_table(name, jnp.result_type(float).name)
    return _tables.eval_u(tab, *_tables.slice_p(tab, p), u, p, tail)


# Shape parameters at both ends of the tables, on and off the grid nodes.
CASES = [("sersic", "power", p) for p in (0.3, 2.345, 6.2)] + [
    ("moffat", None, p) for p in (1.1, 3.33, 10.0)
]


@pytest.mark.parametrize("name,tail,p", CASES)
def test_eval_table_matches_plain_composition(x64, name, tail, p):
    u = jnp.linspace(-13.0, 13.0, 801)  # beyond both ends of the u-grid and of its knots
    w = jnp.sin(3.0 * u)
    ref = _reference_table(name, p, u, tail)
    new = _tables.eval_table(name, p, u, tail)
    np.testing.assert_allclose(new, ref, rtol=0, atol=1e-14)
    loss_ref = lambda q, v: jnp.sum(w * _reference_table(name, q, v, tail))  # noqa: E731
    loss_new = lambda q, v: jnp.sum(w * _tables.eval_table(name, q, v, tail))  # noqa: E731
    g_ref = jax.grad(loss_ref, argnums=(0, 1))(p, u)
    g_new = jax.grad(loss_new, argnums=(0, 1))(p, u)
    assert np.all(np.isfinite(g_new[0])) and np.all(np.isfinite(g_new[1]))
    np.testing.assert_allclose(g_new[0], g_ref[0], rtol=1e-9)  # sums of 801 terms
    np.testing.assert_allclose(g_new[1], g_ref[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,tail,p", [("sersic", "power", 1.713), ("moffat", None, 2.613)])
def test_eval_table_check_grads(x64, name, tail, p):
    # Off grid nodes in p and u (the bicubic is C1: finite differences across a node jump).
    u = jnp.linspace(-10.5, 9.5, 23) + 0.0013
    check_grads(lambda q, v: _tables.eval_table(name, q, v, tail), (p, u), 1, modes=["fwd", "rev"])


@pytest.mark.parametrize("n,kf", [(8, 1), (12, 2), (16, 3), (10, 4)])
def test_fold_rows_cover_each_bin_once(n, kf):
    rows = drawing._fold_rows(n, kf)
    h = kf * n // 2
    assert sorted(rows.ravel().tolist()) == list(range(-h, h))
    assert np.all(rows % n == np.arange(n)[None, :])


@pytest.mark.parametrize("nx,ny", [(33, 33), (64, 48)])
def test_unique_alias_points_match_all_400(nx, ny):
    # The deduplicated (copy, stamp point) pairs give the planner's sums over all 400 pairs.
    scale, period = 0.2, 96 * 0.2
    cx, cy = 0.5 * nx * scale, 0.5 * ny * scale
    js = _planning._JS
    sb = lambda d: np.exp(-d / 0.7) * (1 + 0.1 * d)  # noqa: E731  any radial profile
    d_worst = np.hypot(
        js[:, 0] * period - cx * np.sign(js[:, 0]), js[:, 1] * period - cy * np.sign(js[:, 1])
    )
    worst = sb(d_worst).sum()
    mean = sum(
        w * sb(np.hypot(js[:, 0] * period - g[0] * cx, js[:, 1] * period - g[1] * cy)).sum()
        for g, w in zip(_planning._GRID, _planning._GRID_W)
    )
    jx, jy, px, py, ring, weights = _planning._unique_points(cx, cy)
    vals = sb(np.hypot(jx * period - px, jy * period - py))[:, 0]
    assert len(vals) <= (120 if nx == ny else 220)  # of 400
    np.testing.assert_allclose(weights @ vals, [worst, mean], rtol=1e-12)
    np.testing.assert_allclose(weights.sum(axis=1), [80.0, 80.0])
    assert set(ring[:, 0].tolist()) == {1.0, 2.0, 3.0, 4.0}


@pytest.mark.parametrize(
    "kind,k_fold", [("sersic_moffat", 1), ("sersic_moffat", 2), ("exponential_gaussian", 3)]
)
def test_factored_gradients_match_complex_path(x64, kind, k_fold):
    # The factored draw's hand-written JVP (reverse mode: its transpose) gives the general
    # (complex, plain autodiff) path's gradients and forward-mode tangents.
    if kind == "sersic_moffat":
        gal = jaxsky.Sersic(2.3, half_light_radius=0.5, flux=3.0)
        psf = jaxsky.Moffat(3.2, fwhm=0.7)
    else:  # closed forms: the fused (slice-add) fold
        gal = jaxsky.Exponential(scale_radius=0.3, flux=3.0)
        psf = jaxsky.Gaussian(fwhm=0.5, flux=1.3)
    gal = gal.shear(g1=0.2, g2=-0.1).rotate(0.3).dilate(1.1).shift(0.03, -0.02)
    obj = jaxsky.Convolve(gal, psf.shift(0.01, 0.02))
    plan = jaxsky.DrawPlan(24, 24, 0.2, n_fft=48, k_fold=k_fold, alias_rings=1)
    w = jnp.asarray(np.random.default_rng(0).normal(size=(24, 24)))

    def loss(o, general):
        o = jaxsky.Add([o]) if general else o
        return jnp.sum(w * drawing._draw_core(o, plan))

    assert obj._kterms() is not None and jaxsky.Add([obj])._kterms() is None
    np.testing.assert_allclose(loss(obj, False), loss(obj, True), rtol=1e-10)
    fast = jax.grad(loss)(obj, False)
    slow = jax.grad(loss)(obj, True)
    for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(slow)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)
    tangent = jax.tree_util.tree_map(lambda x: 0.1 + 0.0 * x, obj)
    t_fast = jax.jvp(lambda o: loss(o, False), (obj,), (tangent,))[1]
    t_slow = jax.jvp(lambda o: loss(o, True), (obj,), (tangent,))[1]
    np.testing.assert_allclose(t_fast, t_slow, rtol=1e-8)


@pytest.mark.parametrize("k_fold", [3])
def test_factored_image_check_grads(x64, k_fold):
    # Every argument of the factored draw (amplitude, offset, shape parameters, quadratic
    # forms), both modes, against finite differences.
    from jaxsky.render import _factored

    plan = jaxsky.DrawPlan(16, 16, 0.2, n_fft=32, k_fold=k_fold, alias_rings=0)
    kinds = ("sersic", "moffat", "gaussian")
    w = jnp.asarray(np.random.default_rng(1).normal(size=(16, 16)))
    ms = (
        jnp.array([[0.16, 0.03], [0.03, 0.12]]),
        jnp.array([[0.09, 0.0], [0.0, 0.09]]),
        jnp.array([[0.01, 0.002], [0.001, 0.012]]),
    )

    def f(c, off, ps, ms):
        ps = (ps[0], ps[1], None)
        return jnp.sum(w * _factored.factored_image(plan, kinds, c, off, ps, ms))

    args = (2.0, jnp.array([0.013, -0.021]), (1.713, 2.613), ms)
    check_grads(f, args, order=1, modes=["fwd", "rev"], eps=1e-5, rtol=2e-4)


@pytest.mark.parametrize("k_fold", [1, 2, 3])
def test_float32_draw_matches_float64(k_fold):
    # Guards the compiled float32 fast path (XLA CPU once miscompiled a fold layout in f32).
    plan = jaxsky.DrawPlan(32, 32, 0.2, n_fft=64, k_fold=k_fold, alias_rings=2)

    def draw():
        gal = jaxsky.Sersic(4.0, half_light_radius=0.5).shear(g1=0.2, g2=-0.1).shift(0.03, 0.01)
        obj = jaxsky.Convolve(gal, jaxsky.Moffat(3.2, fwhm=0.7))
        return np.asarray(jaxsky.draw(obj, nx=32, ny=32, scale=0.2, plan=plan), float)

    img32 = draw()
    with jax.enable_x64(True):
        img64 = draw()
    assert np.abs(img32 - img64).max() <= 1e-5 * img64.max()


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_vmap_batch_of_one_kfold(batch):
    # XLA CPU miscompiled the k_fold > 1 zone fold in float32 under vmap with batch 1 (the
    # galaxy below came out 0.64 of peak off GalSim in a `paper` training set). Reference:
    # GalSim at its default accuracy, computed here.
    import galsim

    r0, flux, g1, g2, fwhm = 0.9383, 74869.5, 0.4760, 0.2638, 0.3194
    ref = (
        galsim.Convolve(
            galsim.Exponential(scale_radius=r0, flux=flux).shear(g1=g1, g2=g2),
            galsim.Gaussian(fwhm=fwhm),
        )
        .drawImage(nx=33, ny=33, scale=0.2)
        .array
    )
    full = lambda v: np.full(batch, v)  # noqa: E731
    obj = jaxsky.Convolve(
        jaxsky.Exponential(scale_radius=full(r0), flux=full(flux)).shear(g1=full(g1), g2=full(g2)),
        jaxsky.Gaussian(fwhm=full(fwhm)),
    )
    plan = jaxsky.DrawPlan(33, 33, 0.2, n_fft=108, k_fold=3, alias_rings=1)
    imgs = np.asarray(jaxsky.draw_batch(obj, nx=33, ny=33, scale=0.2, plan=plan, chunk_size=batch))
    assert np.abs(imgs - ref).max() <= 2e-4 * ref.max()


@pytest.mark.parametrize(
    "name,tail,p", [("sersic", "power", 0.8), ("sersic", "power", 6.2), ("moffat", None, 3.3)]
)
def test_table_continuation_knots_follow_the_analytic_laws(x64, name, tail, p):
    # Beyond the u-grid the spline runs over knots that hold 1 - F ~ k^2 below and the
    # Sersic cusp's power law F ~ k^-(2 + 1/n) above (no exp per wave-number); past them
    # F = 1 and 0 (where the laws are below ~1e-9 and ~1.4e-8 of the flux).
    tab = _tables.load_table(name, "float64")
    u0, u_last = tab.u0, tab.u0 + (tab.n_u - 1) * tab.du
    lo, hi = u0 - _tables._LOW * tab.du, u_last + _tables._HIGH * tab.du
    f0, f_last = (float(_tables.eval_table(name, p, jnp.asarray(v), tail)) for v in (u0, u_last))
    u = jnp.linspace(lo + 1e-3, u0, 301)
    law = (1.0 - f0) * np.exp(2.0 * (u - u0))
    got = 1.0 - _tables.eval_table(name, p, u, tail)
    np.testing.assert_allclose(got, law, rtol=1e-6, atol=1e-15)  # 1 - F: float64 rounding
    # Above: the law from the second interval on (the first joins the table's own slope).
    u = jnp.linspace(u_last + tab.du, hi - 1e-3, 301)
    got = _tables.eval_table(name, p, u, tail)
    if tail == "power":
        np.testing.assert_allclose(got, f_last * np.exp(-(2.0 + 1.0 / p) * (u - u_last)), rtol=1e-6)
        assert abs(f_last) * np.exp(-(2.0 + 1.0 / p) * (hi - u_last)) < 1.5e-8
    else:
        np.testing.assert_allclose(got, 0.0, atol=1e-25)
    past = _tables.eval_table(name, p, jnp.array([lo - 1.0, hi + 1.0]), tail)
    np.testing.assert_array_equal(past, [1.0, 0.0])


@pytest.mark.parametrize("k_fold", [1, 2, 3])
def test_round_components_match_full_grid(x64, k_fold):
    # A round table component is looked up on the rows ky >= 0 and mirrored, a round
    # Gaussian becomes two 1-D factors: same image, same gradients as the full-grid forms
    # (with the sheared Sersic evaluated in full).
    from jaxsky.render import _factored

    plan = jaxsky.DrawPlan(16, 16, 0.2, n_fft=32, k_fold=k_fold, alias_rings=0)
    kinds = ("sersic", "moffat", "gaussian")
    rounds = (False, True, True)
    w = jnp.asarray(np.random.default_rng(2).normal(size=(16, 16)))
    ms = (
        jnp.array([[0.16, 0.03], [0.03, 0.12]]),
        jnp.array([[0.09, 0.0], [0.0, 0.09]]),
        jnp.array([[0.012, 0.0], [0.0, 0.012]]),
    )
    args = (2.0, jnp.array([0.013, -0.021]), (1.713, 2.613, None), ms)

    def f(rounds, c, off, ps, ms):
        return jnp.sum(w * _factored.factored_image(plan, kinds, c, off, ps, ms, rounds))

    full = _factored.factored_image(plan, kinds, *args[:3], ms)
    fast = _factored.factored_image(plan, kinds, *args[:3], ms, rounds)
    np.testing.assert_allclose(fast, full, rtol=0, atol=1e-14 * float(jnp.max(full)))
    g_full = jax.grad(f, argnums=(1, 2, 3, 4))((False,) * 3, *args)
    g_fast = jax.grad(f, argnums=(1, 2, 3, 4))(rounds, *args)
    for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_full)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)

    # Finite differences must stay on round quadratic forms (the flag's promise): the round
    # forms are s^2 I with s the variable.
    def g(c, off, ps, m0, s1, s2):
        ps = (*ps, None)
        return f(rounds, c, off, ps, (m0, s1 * s1 * jnp.eye(2), s2 * s2 * jnp.eye(2)))

    check_grads(
        g,
        (*args[:2], (1.713, 2.613), ms[0], 0.3, 0.11),
        order=1,
        modes=["fwd", "rev"],
        eps=1e-5,
        rtol=2e-4,
    )


def test_round_flag_only_for_untransformed_profiles():
    psf = jaxsky.Moffat(beta=3.0, fwhm=0.7)
    gal = jaxsky.Sersic(n=2.0, half_light_radius=0.5)
    rounds = [t[3] for t in jaxsky.Convolve([gal.shear(g1=0.2, g2=0.0), psf])._kterms()[2]]
    assert rounds == [False, True]
    assert [t[3] for t in psf.rotate(0.3)._kterms()[2]] == [False]  # transformed: not assumed
