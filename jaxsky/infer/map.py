"""Batched maximum-a-posteriori fits: optax Adam, then L-BFGS, then Newton polishing, with
Laplace errors, for many galaxies at once.

The kernel is written for ONE galaxy (``neg_log_post(u, *data, *shared) -> scalar`` with ``u``
the unconstrained parameters) and vmapped over the batch; the batch is cut into fixed-size
chunks (the last one padded) so memory stays bounded and the kernel compiles once.

Uncertainties are the Laplace approximation: ``Cov_u = H_u^-1`` with ``H_u`` the Hessian (or,
given whitened residuals, the Gauss-Newton / Fisher matrix ``J^T J``) of the negative log
posterior in the unconstrained space at the optimum, carried to the physical parameters with
the Jacobian ``J = dx/du``: ``Cov_x = J Cov_u J^T`` (exact to first order; at a stationary
point this equals the inverse Hessian in x, since the gradient term vanishes).
For a Gaussian likelihood with a flat prior this is the inverse Fisher matrix at the MLE.

Convergence is judged by the Newton decrement ``lambda^2 = g^T H^-1 g`` (twice the predicted
remaining decrease of -log p; Boyd & Vandenberghe 2004, sec. 9.5.1): it is scale-free, so
``lambda^2 < 0.01`` means the optimum is within ~0.1 sigma of the reported point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["MapConfig", "MapResult", "fit_map"]


class MapConfig(NamedTuple):
    """Optimiser settings (static: changing them recompiles).

    adam_steps / adam_lr: Adam warm-up in the unconstrained space (robust far from the optimum).
    lbfgs_steps / gtol: at most this many L-BFGS iterations (optax zoom line search); a galaxy
      stops when its gradient norm falls below ``gtol``.
    newton_steps / lm_damping: Levenberg-Marquardt-damped Newton iterations with the exact
      Hessian or J^T J at the end (kept only if they lower the loss; the damping starts at
      ``lm_damping`` and adapts; no unconstrained coordinate moves by more than ``max_step``
      per iteration). Alone (adam_steps = lbfgs_steps = 0) they make a fast
      least-squares fitter; after L-BFGS they polish the optimum to a fraction of its error.
    decrement_tol: converged when the Newton decrement lambda^2 is below this.
    chunk_size: galaxies per vmapped call (memory bound; the last chunk is padded).
    """

    adam_steps: int = 150
    adam_lr: float = 0.05
    lbfgs_steps: int = 40
    gtol: float = 1e-3
    newton_steps: int = 3
    lm_damping: float = 1e-3
    max_step: float = 0.5
    decrement_tol: float = 1e-2
    chunk_size: int = 128


class MapResult(NamedTuple):
    """Per-galaxy results, leading axis B.

    u, x: float[B, P] unconstrained / physical optimum; cov: float[B, P, P] physical covariance
    (NaN where the Hessian is not positive definite); err: float[B, P] = sqrt(diag(cov));
    loss: float[B] -log posterior at the optimum; decrement: float[B] Newton decrement lambda^2;
    hess_ok: bool[B]; n_steps: int[B] L-BFGS plus damped-Newton iterations used; converged: bool[B].
    """

    u: jax.Array
    x: jax.Array
    cov: jax.Array
    err: jax.Array
    loss: jax.Array
    decrement: jax.Array
    hess_ok: jax.Array
    n_steps: jax.Array
    converged: jax.Array


def _newton_info(f, u, res=None):
    """Gradient, curvature and its Cholesky factor at u (loss value too, when cheap)."""
    if res is None:
        val, g = jax.value_and_grad(f)(u)
        h = jax.hessian(f)(u)
    else:  # Gauss-Newton / Fisher: J^T J of the whitened residuals, forward mode only
        eye = jnp.eye(u.shape[0], dtype=u.dtype)
        r, jac = jax.vmap(lambda t: jax.jvp(res, (u,), (t,)), out_axes=(None, 1))(eye)
        val, g, h = 0.5 * jnp.sum(r * r), jac.T @ r, jac.T @ jac
    h = 0.5 * (h + h.T)
    chol = jnp.linalg.cholesky(h)
    ok = jnp.all(jnp.isfinite(chol))
    chol_s = jnp.where(ok, chol, jnp.eye(u.shape[0], dtype=u.dtype))
    return val, g, h, chol_s, ok


def _fit_one(u0, args, shared, neg_log_post, to_physical, residuals, cfg: MapConfig):
    def f(u):
        return neg_log_post(u, *args, *shared)

    res = None if residuals is None else (lambda u: residuals(u, *args, *shared).reshape(-1))

    # 1. Adam warm-up: robust when the start is far off.
    adam = optax.adam(cfg.adam_lr)

    def adam_step(carry, _):
        u, st = carry
        g = jax.grad(f)(u)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        upd, st = adam.update(g, st)
        return (optax.apply_updates(u, upd), st), None

    u = u0
    if cfg.adam_steps:
        (u, _), _ = jax.lax.scan(adam_step, (u0, adam.init(u0)), None, length=cfg.adam_steps)

    # 2. L-BFGS with optax's zoom line search, per galaxy until ||g|| < gtol.
    lbfgs = optax.lbfgs()
    vg = optax.value_and_grad_from_state(f)

    def cond(c):
        _, _, i, gn = c
        return (i < cfg.lbfgs_steps) & (gn > cfg.gtol)

    def body(c):
        u, st, i, _ = c
        val, g = vg(u, state=st)
        upd, st = lbfgs.update(g, st, u, value=val, grad=g, value_fn=f)
        u_new = optax.apply_updates(u, upd)
        u_new = jnp.where(jnp.all(jnp.isfinite(u_new)), u_new, u)
        return u_new, st, i + 1, jnp.linalg.norm(g)

    if cfg.lbfgs_steps:
        init = (u, lbfgs.init(u), jnp.asarray(0), jnp.asarray(jnp.inf, u.dtype))
        u, _, n_steps, _ = jax.lax.while_loop(cond, body, init)
    else:
        n_steps = jnp.asarray(0)

    # 3. Levenberg-Marquardt-damped Newton steps with the exact Hessian or J^T J (Marquardt
    # 1963: H + lam diag(H)); a step is kept only if it lowers the loss. A galaxy stops once
    # its Newton decrement is 100x below decrement_tol; the last pass (i == newton_steps) only
    # evaluates the curvature, so (g, chol) always belong to the final u.
    p = u.shape[0]
    eye = jnp.eye(p, dtype=u.dtype)

    def lm_cond(c):
        i, *_, done = c
        return (i <= cfg.newton_steps) & ~done

    def lm_body(c):
        i, u, lam, *_ = c
        fu, g, h, chol, ok = _newton_info(f, u, res)
        dec = jnp.dot(g, jax.scipy.linalg.cho_solve((chol, True), g))
        done = ok & (dec < 1e-2 * cfg.decrement_tol)
        cd = jnp.linalg.cholesky(h + lam * jnp.diag(jnp.diagonal(h)) + 1e-12 * eye)
        okd = jnp.all(jnp.isfinite(cd))
        step = jax.scipy.linalg.cho_solve((jnp.where(okd, cd, eye), True), g)
        # trust region: no coordinate moves more than max_step (keeps logistic boxes unsaturated)
        step = step * jnp.minimum(1.0, cfg.max_step / (jnp.max(jnp.abs(step)) + 1e-30))
        u_new = u - step
        f_new = f(u_new)
        take = (i < cfg.newton_steps) & ~done & okd & (f_new <= fu)
        take = take & jnp.all(jnp.isfinite(u_new))
        u2 = jnp.where(take, u_new, u)
        lam2 = jnp.where(take, lam * 0.3, lam * 4.0)
        return i + 1, u2, lam2, jnp.where(take, f_new, fu), g, chol, ok, done

    init = (0, u, jnp.asarray(cfg.lm_damping, u.dtype), f(u), jnp.zeros_like(u), eye, False, False)
    n_lm, u, _, loss, g, chol, ok, _ = jax.lax.while_loop(lm_cond, lm_body, init)
    n_steps = n_steps + n_lm
    # 4. Laplace covariance at the final point, carried to physical parameters.
    step = jax.scipy.linalg.cho_solve((chol, True), g)
    decrement = jnp.dot(g, step)
    cov_u = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(p, dtype=u.dtype))
    jac = jax.jacfwd(to_physical)(u)
    cov = jac @ cov_u @ jac.T
    cov = jnp.where(ok, cov, jnp.nan)
    err = jnp.sqrt(jnp.where(jnp.diagonal(cov) >= 0, jnp.diagonal(cov), jnp.nan))
    finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(u))
    converged = finite & ok & (decrement < cfg.decrement_tol) & jnp.all(jnp.isfinite(err))
    return MapResult(u, to_physical(u), cov, err, loss, decrement, ok, n_steps, converged)


def _identity(u):
    return u


_ENGINE = jax.jit(
    jax.vmap(_fit_one, in_axes=(0, 0, None, None, None, None, None)),
    static_argnums=(3, 4, 5, 6),
)


def fit_map(
    neg_log_post: Callable,
    u0,
    data=(),
    shared=(),
    *,
    to_physical: Callable = _identity,
    residuals: Callable | None = None,
    config: MapConfig | None = None,
) -> MapResult:
    """Minimise ``neg_log_post(u, *data_b, *shared)`` for every galaxy b of a batch.

    Args:
      neg_log_post: -log posterior for ONE galaxy in unconstrained parameters (pure; pass the
        same function object on every call to reuse the compiled kernel).
      u0: float[B, P] starting points in the unconstrained space.
      data: tuple of arrays with leading axis B (e.g. stamps and inverse variances).
      shared: tuple of pytrees used by every galaxy (e.g. the PSF profile).
      to_physical: pure map float[P] -> float[P] (hashable; e.g. ``ParameterSpace.to_physical``).
      residuals: optional ``residuals(u, *data_b, *shared) -> float[...]``, whitened so that
        ``neg_log_post = 0.5 sum(residuals**2)`` (+ a prior, whose curvature is then ignored):
        curvature is then the Gauss-Newton / Fisher matrix ``J^T J`` (first derivatives only,
        always positive semi-definite) instead of the exact Hessian.
      config: :class:`MapConfig`.
    Returns:
      :class:`MapResult` with NumPy arrays, leading axis B.
    """
    config = MapConfig() if config is None else config
    u0 = jnp.asarray(u0, jnp.result_type(float))
    if u0.ndim != 2:
        raise ValueError(f"u0 must have shape (B, P), got {u0.shape}")
    nb = u0.shape[0]
    data = tuple(jnp.asarray(a) for a in data)
    for i, a in enumerate(data):
        if a.shape[:1] != (nb,):
            raise ValueError(f"data[{i}] has shape {a.shape}; its leading axis must be B={nb}")
    # chunk size: config.chunk_size, or the next power of two for smaller batches (few compiles)
    chunk = int(config.chunk_size) if nb >= config.chunk_size else 1 << (nb - 1).bit_length()
    out = []
    for start in range(0, nb, chunk):
        idx = np.minimum(np.arange(start, start + chunk), nb - 1)  # pad with the last galaxy
        res = _ENGINE(
            u0[idx],
            tuple(a[idx] for a in data),
            tuple(shared),
            neg_log_post,
            to_physical,
            residuals,
            config,
        )
        keep = min(chunk, nb - start)
        out.append(jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a[:k]), res))
    return MapResult(*(np.concatenate(parts) for parts in zip(*out)))
