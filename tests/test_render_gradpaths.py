"""The factored draw's derivative paths: grid table derivatives, second order, float32 vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxsky
from jaxsky.render import _factored, _tables, drawing


@pytest.mark.parametrize(
    "name,tail,p", [("sersic", "power", 0.37), ("sersic", "power", 4.61), ("moffat", None, 2.3)]
)
def test_eval_table_derivs_match_eval_table(x64, name, tail, p):
    # The per-coefficient gathers give eval_table's value (its own stacked gather) to
    # rounding, and derivatives equal to central differences of eval_table, across all three
    # pieces (below the grid, inside, above it, past the continuation knots; the joins
    # themselves are left out).
    tab = _tables.load_table(name, "float64")
    u_last = tab.u0 + (tab.n_u - 1) * tab.du
    ends = (tab.u0 - _tables._LOW * tab.du, u_last + _tables._HIGH * tab.du)  # of the knots
    u = np.linspace(-14.0, 14.0, 3000)
    u = jnp.asarray(u[np.min(np.abs(u[:, None] - np.array([tab.u0, u_last, *ends])), 1) > 1e-3])
    f, f_u, f_p = _tables.eval_table_derivs(name, p, u, tail)
    ref = _tables.eval_table(name, p, u, tail)
    np.testing.assert_allclose(f, ref, rtol=1e-12, atol=1e-14 * float(jnp.abs(ref).max()))
    h = 1e-6
    fd_u = _tables.eval_table(name, p, u + h, tail) - _tables.eval_table(name, p, u - h, tail)
    fd_p = _tables.eval_table(name, p + h, u, tail) - _tables.eval_table(name, p - h, u, tail)
    for got, fd in ((f_u, fd_u / (2 * h)), (f_p, fd_p / (2 * h))):
        np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-7 * float(jnp.abs(fd).max()))


def _obj(kind):
    if kind == "sersic_moffat":
        gal = jaxsky.Sersic(2.3, half_light_radius=0.5, flux=3.0)
        psf = jaxsky.Moffat(3.2, fwhm=0.7)
    else:
        gal = jaxsky.Exponential(scale_radius=0.3, flux=3.0)
        psf = jaxsky.Gaussian(fwhm=0.5, flux=1.3)
    return gal, psf


# Sersic x Moffat second order is covered by check_grads(order=2) below (CI time).
@pytest.mark.parametrize("kind,k_fold", [("exponential_gaussian", 3)])
def test_hessian_matches_complex_path(x64, kind, k_fold):
    # Second order through the hand-written JVP (jacfwd of its transpose) equals plain
    # autodiff of the general complex path, for the parameters a fit varies.
    gal, psf = _obj(kind)
    plan = jaxsky.DrawPlan(16, 16, 0.2, n_fft=32, k_fold=k_fold, alias_rings=0)
    w = jnp.asarray(np.random.default_rng(2).normal(size=(16, 16)))

    def loss(theta, general):
        hlr, g1, dx, shape_p = theta
        if kind == "sersic_moffat":
            g = jaxsky.Sersic(shape_p, half_light_radius=hlr, flux=3.0)
        else:
            g = jaxsky.Exponential(half_light_radius=hlr, flux=3.0 * shape_p)
        o = jaxsky.Convolve(g.shear(g1=g1, g2=0.1).shift(dx, -0.02), psf)
        o = jaxsky.Add([o]) if general else o
        return jnp.sum(w * drawing._draw_core(o, plan) ** 2)

    theta = jnp.array([0.45, 0.15, 0.03, 2.3 if kind == "sersic_moffat" else 1.1])
    fast = jax.jit(jax.jacfwd(jax.grad(lambda t: loss(t, False))))(theta)
    slow = jax.jit(jax.hessian(lambda t: loss(t, True)))(theta)
    np.testing.assert_allclose(fast, slow, rtol=1e-7, atol=1e-9 * float(jnp.abs(slow).max()))
    assert np.all(np.isfinite(fast))


def test_factored_image_check_grads_second_order(x64):
    # Every argument of the factored draw, second order, both modes, against finite
    # differences: a table profile (eval_table_derivs) and a closed form (reduction fold).
    plan = jaxsky.DrawPlan(12, 12, 0.25, n_fft=24, k_fold=2, alias_rings=0)
    kinds = ("sersic", "gaussian")
    w = jnp.asarray(np.random.default_rng(3).normal(size=(12, 12)))

    @jax.jit
    def f(c, off, n, m0, m1):
        img = _factored.factored_image(plan, kinds, c, off, (n, None), (m0, m1))
        return jnp.sum(w * img)

    args = (
        2.0,
        jnp.array([0.013, -0.021]),
        1.713,
        jnp.array([[0.16, 0.03], [0.03, 0.12]]),
        jnp.array([[0.02, 0.0], [0.0, 0.02]]),
    )
    check_grads(f, args, order=2, modes=["fwd", "rev"], eps=1e-4, rtol=2e-3)


def test_closed_form_check_grads_second_order(x64):
    # Closed forms take the hand-written transpose (render/_transpose.py, through
    # custom_linear_solve): every argument, second order, both modes, odd k_fold.
    plan = jaxsky.DrawPlan(12, 12, 0.25, n_fft=24, k_fold=3, alias_rings=0)
    kinds = ("exponential", "gaussian")
    w = jnp.asarray(np.random.default_rng(4).normal(size=(12, 12)))

    @jax.jit
    def f(c, off, m0, m1):
        img = _factored.factored_image(plan, kinds, c, off, (None, None), (m0, m1))
        return jnp.sum(w * img**2)

    args = (
        2.0,
        jnp.array([0.013, -0.021]),
        jnp.array([[0.16, 0.03], [0.03, 0.12]]),
        jnp.array([[0.02, 0.0], [0.0, 0.02]]),
    )
    check_grads(f, args, order=2, modes=["fwd", "rev"], eps=1e-4, rtol=2e-3)


@pytest.mark.parametrize("batch", [1, 2])
def test_float32_vmap_gradient_kfold(batch):
    # The tangent folds the k_fold > 1 zones with reductions for closed forms too (XLA CPU
    # once miscompiled a stacked fold in float32 under vmap with batch 1): float32 batched
    # gradients agree with float64 ones.
    plan = jaxsky.DrawPlan(33, 33, 0.2, n_fft=108, k_fold=3, alias_rings=1)

    def grads(dtype):
        full = lambda v: jnp.full(batch, v, dtype)  # noqa: E731
        r0, g1 = full(0.5), full(0.3)
        w = jnp.asarray(np.random.default_rng(4).normal(size=(33, 33)), dtype)

        def loss(r0, g1):
            obj = jaxsky.Convolve(
                jaxsky.Exponential(scale_radius=r0, flux=1e4).shear(g1=g1, g2=0.1),
                jaxsky.Gaussian(fwhm=0.3),
            )
            imgs = jax.vmap(
                lambda o: drawing._draw_core(o, plan), in_axes=(jaxsky.render.batch_axes(obj),)
            )(obj)
            return jnp.sum(w * imgs)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(r0, g1)

    g32 = grads(jnp.float32)
    with jax.enable_x64(True):
        g64 = grads(jnp.float64)
    for a, b in zip(g32, g64):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3)
