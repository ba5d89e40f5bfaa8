"""Batched MAP fits on problems with analytic optima and covariances."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsky.infer import MapConfig, ParameterSpace, fit_map, identity, positive

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
