"""The hand-written transpose of the factored draw's tangent (render/_transpose.py).

value_and_grad uses it for every factored profile; with a table profile the JVP shares the
table look-ups between the value and the transpose (compared with plain autodiff here).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsky
from jaxsky.render import _factored, _factored_grad, _transpose, drawing

# (kinds, k_fold, pixel): closed forms and tables; no fold, even and odd folds (the odd fold
# rolls the rows by n/2); with and without the pixel.
CASES = [
    (("exponential", "gaussian"), 4, True),
    (("sersic", "gaussian"), 3, True),
    (("sersic", "moffat"), 1, True),
    (("exponential",), 2, False),
    (("moffat", "sersic"), 2, False),
    (("gaussian",), 2, True),
    (("gaussian", "exponential", "gaussian"), 3, False),
]


def _primals(kinds):
    rng = np.random.default_rng(len(kinds))
    ps = tuple({"sersic": 1.713, "moffat": 3.1}.get(k) for k in kinds)
    ms = tuple(
        jnp.asarray(np.diag(rng.uniform(0.01, 0.2, 2)) + rng.uniform(-0.01, 0.01, (2, 2)))
        for _ in kinds
    )
    return 2.0, jnp.array([0.013, -0.021]), ps, ms


@pytest.mark.parametrize("kinds,k_fold,pixel", CASES)
def test_transpose_is_adjoint_of_tangent(x64, kinds, k_fold, pixel):
    # <Y, L p> = <L^T Y, p> for random p and image cotangents Y, with L the tangent map
    # (plain JAX code, independent of the transpose) and L^T the hand-written transpose.
    plan = jaxsky.DrawPlan(12, 11, 0.25, n_fft=24, k_fold=k_fold, pixel=pixel, alias_rings=0)
    _check_adjoint(plan, kinds, _primals(kinds), (), np.random.default_rng(5))


def _check_adjoint(plan, kinds, primals, rounds, rng):
    """<Y, L p> = <L^T Y, p> for 3 random p and image cotangents Y (11 x 12)."""
    ps = primals[2]
    tangent = jax.jit(
        lambda p: _factored_grad.tangent_image(
            plan, kinds, primals, _transpose.unpack(p, ps, primals)
        )
    )
    transpose = jax.jit(
        lambda y: _transpose.tangent_transpose(plan, kinds, primals, y, rounds=rounds)
    )
    for _ in range(3):
        p = jnp.asarray(rng.normal(size=_transpose.flat_size(kinds, ps)))
        y = jnp.asarray(rng.normal(size=(11, 12)))
        lp, lty = tangent(p), transpose(y)
        lhs, rhs = float(jnp.sum(y * lp)), float(jnp.dot(lty, p))
        np.testing.assert_allclose(lhs, rhs, rtol=1e-11, atol=1e-13 * float(jnp.abs(lp).max()))


@pytest.mark.parametrize(
    "kinds", [("exponential", "gaussian"), ("gaussian",), ("sersic", "gaussian")]
)
def test_transpose_is_adjoint_with_round_gaussians_in_the_phases(x64, kinds):
    # A round Gaussian (M = s^2 I) goes into the 1-D phases (rounds=True); the one-pass
    # closed-form transpose then takes its M-cotangent from W_c's second moments.
    plan = jaxsky.DrawPlan(12, 11, 0.25, n_fft=24, k_fold=3, pixel=True, alias_rings=0)
    c, off, ps, ms = _primals(kinds)
    ms = tuple(0.07 * jnp.eye(2) if k == "gaussian" else m for k, m in zip(kinds, ms))
    rounds = tuple(k == "gaussian" for k in kinds)
    _check_adjoint(plan, kinds, (c, off, ps, ms), rounds, np.random.default_rng(11))


@pytest.mark.parametrize(
    "kinds,k_fold,pixel", [c for c in CASES if set(c[0]) & {"sersic", "moffat"}]
)
def test_shared_tables_value_and_transpose(x64, kinds, k_fold, pixel):
    # The JVP's shared table look-ups: the value drawn from them equals the forward draw
    # (eval_table), and the transpose fed with them equals the one evaluating its own and
    # satisfies <Y, L p> = <L^T Y, p> with the plain tangent map L.
    plan = jaxsky.DrawPlan(12, 11, 0.25, n_fft=24, k_fold=k_fold, pixel=pixel, alias_rings=0)
    primals = _primals(kinds)
    c, off, ps, ms = primals
    img, tables = jax.jit(lambda: _factored_grad._value_and_tables(plan, kinds, primals))()
    ref = _factored.factored_image.fun(plan, kinds, c, off, ps, ms)
    np.testing.assert_allclose(img, ref, rtol=0, atol=1e-12 * float(jnp.abs(ref).max()))
    assert sorted(tables) == [i for i, k in enumerate(kinds) if k in ("sersic", "moffat")]
    rng = np.random.default_rng(7)
    y = jnp.asarray(rng.normal(size=(11, 12)))
    p = jnp.asarray(rng.normal(size=_transpose.flat_size(kinds, ps)))
    shared = _transpose.tangent_transpose(plan, kinds, primals, y, tables=tables)
    own = _transpose.tangent_transpose(plan, kinds, primals, y)
    np.testing.assert_allclose(shared, own, rtol=1e-12, atol=1e-14 * float(jnp.abs(own).max()))
    lp = _factored_grad.tangent_image(plan, kinds, primals, _transpose.unpack(p, ps, primals))
    lhs, rhs = float(jnp.sum(y * lp)), float(jnp.dot(shared, p))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-11, atol=1e-13 * float(jnp.abs(lp).max()))


@pytest.mark.parametrize("kinds,k_fold,pixel", CASES)
def test_grad_matches_plain_autodiff(x64, kinds, k_fold, pixel):
    # Reverse mode through the custom transpose equals JAX's autodiff of the same forward
    # (the undecorated function), argument by argument; forward mode too.
    plan = jaxsky.DrawPlan(12, 11, 0.25, n_fft=24, k_fold=k_fold, pixel=pixel, alias_rings=0)
    w = jnp.asarray(np.random.default_rng(6).normal(size=(11, 12)))
    c, off, ps, ms = _primals(kinds)

    def loss(c, off, ps, ms, plain):
        fn = _factored.factored_image.fun if plain else _factored.factored_image
        return jnp.sum(w * fn(plan, kinds, c, off, ps, ms) ** 2)

    args = (c, off, ps, ms)
    fast = jax.jit(jax.grad(lambda *a: loss(*a, False), argnums=(0, 1, 2, 3)))(*args)
    slow = jax.jit(jax.grad(lambda *a: loss(*a, True), argnums=(0, 1, 2, 3)))(*args)
    for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(slow)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * float(jnp.abs(b).max() + 1))
    tangents = jax.tree_util.tree_map(lambda x: jnp.full(jnp.shape(x), 0.3), args)
    jf = jax.jit(lambda a, t: jax.jvp(lambda *a: loss(*a, False), a, t)[1])(args, tangents)
    js = jax.jit(lambda a, t: jax.jvp(lambda *a: loss(*a, True), a, t)[1])(args, tangents)
    np.testing.assert_allclose(jf, js, rtol=1e-10)


def test_grad_of_some_arguments_only(x64):
    # Arguments held fixed reach the transpose as instantiated zero tangents, concatenated
    # with the others (custom_linear_solve needs the whole right-hand side to be linear).
    plan = jaxsky.DrawPlan(10, 10, 0.25, n_fft=20, k_fold=2, alias_rings=0)
    kinds = ("exponential", "gaussian")
    c, off, ps, ms = _primals(kinds)

    def loss(m0, plain):
        fn = _factored.factored_image.fun if plain else _factored.factored_image
        return jnp.sum(fn(plan, kinds, c, off, ps, (m0, ms[1])) ** 2)

    g = jax.jit(jax.grad(lambda m: loss(m, False)))(ms[0])
    np.testing.assert_allclose(g, jax.jit(jax.grad(lambda m: loss(m, True)))(ms[0]), rtol=1e-10)


@pytest.mark.parametrize(
    "n,beta,g1,dx",
    [(0.3, 1.1001, 0.0, 0.0), (6.2, 10.0, 0.0, 0.1), (2.5, 1.5, 0.3, 0.05)],
)
def test_no_nan_at_domain_edges(n, beta, g1, dx):
    # float32 value_and_grad under vmap with a batch of one, at n and beta near their
    # bounds, zero shear, zero offset and half a pixel: finite everywhere.
    plan = jaxsky.DrawPlan(16, 16, 0.2, n_fft=32, k_fold=3, alias_rings=0)

    def loss(theta):
        n, beta, g1, dx = theta
        obj = jaxsky.Convolve(
            jaxsky.Sersic(n, half_light_radius=0.4).shear(g1=g1, g2=0.0).shift(dx, 0.0),
            jaxsky.Moffat(beta, fwhm=0.6),
        )
        return jnp.sum(drawing._draw_core(obj, plan) ** 2)

    theta = jnp.asarray([[n, beta, g1, dx]], jnp.float32)
    val, grad = jax.jit(jax.vmap(jax.value_and_grad(loss)))(theta)
    assert np.all(np.isfinite(val)) and np.all(np.isfinite(grad))
