"""Batched MAP fits on problems with analytic optima and covariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsky.infer import MapConfig, ParameterSpace, fit_map, identity, positive
from jaxsky.infer import map as map_module

RNG = np.random.default_rng(0)
A = RNG.normal(size=(30, 3))


def _nlp(theta, y, w):
    return 0.5 * jnp.sum(w * (y - A @ theta) ** 2)


def _res(theta, y, w):
    return jnp.sqrt(w) * (y - A @ theta)


def _problem(nb=5):
    theta = RNG.normal(size=(nb, 3))
    w = RNG.uniform(0.5, 4.0, size=(nb, 30))
    y = theta @ A.T + RNG.normal(size=(nb, 30)) / np.sqrt(w)
    ref, cov = [], []
    for b in range(nb):
        fisher = A.T @ (w[b][:, None] * A)
        cov.append(np.linalg.inv(fisher))
        ref.append(np.linalg.solve(fisher, A.T @ (w[b] * y[b])))
    return y, w, np.array(ref), np.array(cov)


@pytest.mark.parametrize(
    "config,residuals",
    [
        (MapConfig(adam_steps=200, adam_lr=0.1, lbfgs_steps=30, newton_steps=0), None),
        (MapConfig(adam_steps=0, lbfgs_steps=0, newton_steps=10), _res),
    ],
    ids=["adam-lbfgs-hessian", "gauss-newton"],
)
def test_linear_gaussian_exact(config, residuals, x64):
    y, w, ref, cov = _problem()
    res = fit_map(_nlp, np.zeros((5, 3)), (y, w), residuals=residuals, config=config)
    # the damped-Newton stage stops at a Newton decrement < 1e-4: within 0.01 sigma
    assert np.all(np.abs(res.x - ref) < 0.01 * res.err)
    np.testing.assert_allclose(res.cov, cov, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(res.err, np.sqrt(np.diagonal(cov, axis1=1, axis2=2)), rtol=1e-6)
    assert res.converged.all() and res.hess_ok.all()
    assert np.all(res.decrement < 1e-4)


def test_transformed_covariance_and_chunks(x64):
    """A positive() parameter: Cov_x = J Cov_u J^T equals the physical-space inverse Hessian."""
    space = ParameterSpace([("a", positive()), ("b", identity()), ("c", identity())])
    y, w, ref, cov = _problem(nb=7)
    y = y + (3.0 - ref[:, :1]) * A[:, 0]  # shift so the first parameter's optimum is ~3 > 0
    ref = ref.copy()
    ref[:, 0] = 3.0

    def nlp(u, y, w):
        return _nlp(space.to_physical(u), y, w)

    cfg = MapConfig(adam_steps=100, lbfgs_steps=40, newton_steps=3, chunk_size=4)
    res = fit_map(nlp, np.zeros((7, 3)), (y, w), to_physical=space.to_physical, config=cfg)
    assert np.all(np.abs(res.x - ref) < 0.01 * res.err)
    np.testing.assert_allclose(res.cov, cov, rtol=1e-5, atol=1e-10)
    assert res.x.shape == (7, 3) and res.converged.all()


def test_bad_shapes_and_nonconvergence():
    y, w, _, _ = _problem()
    with pytest.raises(ValueError, match="u0 must have shape"):
        fit_map(_nlp, np.zeros(3), (y, w))
    with pytest.raises(ValueError, match=r"data\[1\]"):
        fit_map(_nlp, np.zeros((5, 3)), (y, w[:2]))
    # one Adam step from far away: not converged, and flagged as such
    cfg = MapConfig(adam_steps=1, lbfgs_steps=0, newton_steps=0)
    res = fit_map(_nlp, np.full((5, 3), 50.0), (y, w), config=cfg)
    assert not res.converged.any() and np.all(res.decrement > 1.0)


def _pos_problem(nb):
    """First parameter positive(): a non-linear problem in u (Newton needs several steps)."""
    space = ParameterSpace([("a", positive()), ("b", identity()), ("c", identity())])
    y, w, ref, _ = _problem(nb=nb)
    shift = 3.0 - ref[:, :1]
    y = y + shift * A[:, 0]

    def nlp(u, y, w):
        return _nlp(space.to_physical(u), y, w)

    def res(u, y, w):
        return _res(space.to_physical(u), y, w)

    return space, y, w, nlp, res


def test_pool_scheduling_is_invisible_and_compiles_once(x64):
    """Galaxies at different distances finish at different iterations: pooling them through
    2-wide chunks, one iteration per call, gives the answers of one 8-wide chunk, and a second
    call with the same shapes reuses the compiled kernel."""
    space, y, w, nlp, res = _pos_problem(7)
    u0 = np.zeros((7, 3))
    u0[:, 0] = np.log(3.0) + np.linspace(-6, 6, 7)  # from 0.007 to 1200 for a true 3
    cfg = MapConfig(adam_steps=0, lbfgs_steps=0, newton_steps=40, chunk_size=2, pool_steps=1)
    kw = dict(to_physical=space.to_physical, residuals=res)
    a = fit_map(nlp, u0, (y, w), config=cfg, **kw)
    assert a.converged.all() and len(np.unique(a.n_steps)) > 2
    n_compiled = map_module._LM._cache_size()
    fit_map(nlp, u0[::-1].copy(), (y[::-1], w[::-1]), config=cfg, **kw)
    assert map_module._LM._cache_size() == n_compiled
    b = fit_map(nlp, u0, (y, w), config=cfg._replace(chunk_size=8, pool_steps=50), **kw)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.err, b.err, rtol=1e-6)
    np.testing.assert_array_equal(a.n_steps, b.n_steps)


def test_stalled_fit_stops_early_and_is_flagged(x64):
    """A positive() parameter whose optimum lies below 0: the fit runs into the bound, its
    loss stops improving, and it stops long before newton_steps, not converged."""
    space, y, w, nlp, res = _pos_problem(3)
    y = y - 6.0 * A[:, 0]  # optimum of a at about -3
    cfg = MapConfig(adam_steps=0, lbfgs_steps=0, newton_steps=200, chunk_size=4)
    out = fit_map(
        nlp, np.zeros((3, 3)), (y, w), to_physical=space.to_physical, residuals=res, config=cfg
    )
    assert np.all(out.n_steps < 60) and not out.converged.any()
    assert np.all(out.x[:, 0] < 1e-2) and np.all(np.isfinite(out.x))


@jax.custom_vjp
def _linear_vjp_only(theta):
    """A @ theta with a custom VJP: no forward-mode rule (like some fast renderer kernels)."""
    return A @ theta


_linear_vjp_only.defvjp(lambda t: (A @ t, None), lambda _, ct: (A.T @ ct,))


def test_model_without_forward_mode(x64):
    """Residuals that cannot be pushed forward: the fitter falls back to the exact Hessian by
    reverse-over-reverse and still finds the analytic optimum and covariance."""
    y, w, ref, cov = _problem()

    def nlp(theta, y, w):
        return 0.5 * jnp.sum(w * (y - _linear_vjp_only(theta)) ** 2)

    def res(theta, y, w):
        return jnp.sqrt(w) * (y - _linear_vjp_only(theta))

    cfg = MapConfig(adam_steps=0, lbfgs_steps=0, newton_steps=10)
    out = fit_map(nlp, np.zeros((5, 3)), (y, w), residuals=res, config=cfg)
    assert out.converged.all() and np.all(np.abs(out.x - ref) < 0.01 * out.err)
    np.testing.assert_allclose(out.cov, cov, rtol=1e-6, atol=1e-10)
