"""Batched maximum-a-posteriori fits: optax Adam, then L-BFGS, then Newton polishing, with
Laplace errors, for many galaxies at once.

The kernel is written for ONE galaxy (``neg_log_post(u, *data, *shared) -> scalar`` with ``u``
the unconstrained parameters) and vmapped over fixed-size chunks (padded), so memory stays
bounded and each stage compiles once. The damped-Newton stage runs as a pool: every call
advances the first ``chunk_size`` unfinished galaxies by ``pool_steps`` iterations, then the
finished ones leave and waiting ones take their places (continuous batching). A vmapped
``while_loop`` runs until ALL its lanes stop, so plain chunks idle on their slowest member;
the pool cut the iterations executed for 512 benchmark stamps from 84 to 35 chunk-iterations.

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
    pool_steps: damped-Newton iterations per call; between calls finished galaxies leave the
      chunk and waiting ones take their places (smaller: less idle work, more host round trips).
    patience / ftol: a galaxy whose loss fell by less than ``ftol`` (in -log p) in each of
      ``patience`` consecutive iterations stops (flagged unless its decrement is small).
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
    pool_steps: int = 2
    patience: int = 3
    ftol: float = 1e-3


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
    """Gradient, curvature and its Cholesky factor at u (loss value too, when cheap).

    Curvature: J^T J of the whitened residuals by forward mode when ``res`` is given, else
    the exact Hessian; a model without forward-mode rules gets the exact Hessian by
    reverse-over-reverse (P reverse passes through the gradient: slower, same answer at the
    optimum of a least-squares problem up to the residual-curvature term).
    """
    # (a missing forward rule raises TypeError while tracing, so try/except picks the path)
    if res is not None:  # Gauss-Newton / Fisher: J^T J of the whitened residuals, forward mode
        eye = jnp.eye(u.shape[0], dtype=u.dtype)
        try:
            r, jac = jax.vmap(lambda t: jax.jvp(res, (u,), (t,)), out_axes=(None, 1))(eye)
        except TypeError:
            res = None
        else:
            val, g, h = 0.5 * jnp.sum(r * r), jac.T @ r, jac.T @ jac
    if res is None:
        val, g = jax.value_and_grad(f)(u)
        try:
            h = jax.hessian(f)(u)
        except TypeError:
            h = jax.jacrev(jax.grad(f))(u)
    h = 0.5 * (h + h.T)
    chol = jnp.linalg.cholesky(h)
    ok = jnp.all(jnp.isfinite(chol))
    chol_s = jnp.where(ok, chol, jnp.eye(u.shape[0], dtype=u.dtype))
    return val, g, h, chol_s, ok


class _LMState(NamedTuple):
    """Per-galaxy state of the damped-Newton stage (carried between pool rounds)."""

    u: jax.Array  # float[P]
    lam: jax.Array  # damping
    it: jax.Array  # iterations done (int)
    slow: jax.Array  # consecutive iterations that lowered the loss by < ftol (int)
    fin: jax.Array  # finished (bool)


def _warmup_one(u0, args, shared, neg_log_post, cfg: MapConfig):
    """Adam then L-BFGS for one galaxy: (u, number of L-BFGS iterations)."""

    def f(u):
        return neg_log_post(u, *args, *shared)

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

    if not cfg.lbfgs_steps:
        return u, jnp.asarray(0)
    init = (u, lbfgs.init(u), jnp.asarray(0), jnp.asarray(jnp.inf, u.dtype))
    u, _, n_steps, _ = jax.lax.while_loop(cond, body, init)
    return u, n_steps


def _lm_one(state, args, shared, neg_log_post, to_physical, residuals, cfg: MapConfig):
    """Up to ``cfg.pool_steps`` damped-Newton iterations for one galaxy, then its Laplace summary.

    Levenberg-Marquardt-damped Newton with the exact Hessian or J^T J (Marquardt 1963:
    H + lam diag(H)); a step is kept only if it lowers the loss. A galaxy finishes when its
    Newton decrement is 100x below ``decrement_tol``, when the loss has stalled (``patience``
    iterations each lowering it by < ``ftol``: a parameter running into its box, or no signal),
    or after ``newton_steps`` iterations. The finishing pass only evaluates the curvature, so
    the returned (g, chol) always belong to the returned u.
    """

    def f(u):
        return neg_log_post(u, *args, *shared)

    res = None if residuals is None else (lambda u: residuals(u, *args, *shared).reshape(-1))
    p = state.u.shape[0]
    eye = jnp.eye(p, dtype=state.u.dtype)

    def cond(c):
        k, st, *_ = c
        return (k < cfg.pool_steps) & ~st.fin

    def body(c):
        k, st, *_ = c
        u, lam = st.u, st.lam
        fu, g, h, chol, ok = _newton_info(f, u, res)
        dec = jnp.dot(g, jax.scipy.linalg.cho_solve((chol, True), g))
        fin = (ok & (dec < 1e-2 * cfg.decrement_tol)) | (st.it >= cfg.newton_steps)
        fin = fin | (st.slow >= cfg.patience) | ~jnp.isfinite(fu)
        cd = jnp.linalg.cholesky(h + lam * jnp.diag(jnp.diagonal(h)) + 1e-12 * eye)
        okd = jnp.all(jnp.isfinite(cd))
        step = jax.scipy.linalg.cho_solve((jnp.where(okd, cd, eye), True), g)
        # trust region: no coordinate moves more than max_step (keeps logistic boxes unsaturated)
        step = step * jnp.minimum(1.0, cfg.max_step / (jnp.max(jnp.abs(step)) + 1e-30))
        u_new = u - step
        f_new = f(u_new)
        take = ~fin & okd & (f_new <= fu) & jnp.all(jnp.isfinite(u_new))
        gain = jnp.where(take, fu - f_new, 0.0)
        st = _LMState(
            u=jnp.where(take, u_new, u),
            lam=jnp.where(take, lam * 0.3, lam * 4.0),
            it=st.it + jnp.where(fin, 0, 1),
            slow=jnp.where(gain < cfg.ftol, st.slow + 1, 0),
            fin=fin,
        )
        return k + 1, st, jnp.where(take, f_new, fu), g, chol, ok

    loss0 = jnp.zeros((), jax.eval_shape(f, state.u).dtype)
    init = (0, state, loss0, jnp.zeros_like(state.u), eye, jnp.asarray(False))
    _, state, loss, g, chol, ok = jax.lax.while_loop(cond, body, init)
    u = state.u
    # Laplace covariance at the final point, carried to physical parameters (meaningful once
    # the galaxy is finished: the last pass evaluated (g, chol) at u).
    decrement = jnp.dot(g, jax.scipy.linalg.cho_solve((chol, True), g))
    cov_u = jax.scipy.linalg.cho_solve((chol, True), eye)
    jac = jax.jacfwd(to_physical)(u)
    cov = jnp.where(ok, jac @ cov_u @ jac.T, jnp.nan)
    err = jnp.sqrt(jnp.where(jnp.diagonal(cov) >= 0, jnp.diagonal(cov), jnp.nan))
    finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(u))
    converged = finite & ok & (decrement < cfg.decrement_tol) & jnp.all(jnp.isfinite(err))
    out = MapResult(u, to_physical(u), cov, err, loss, decrement, ok, state.it, converged)
    return state, out


def _identity(u):
    return u


_WARMUP = jax.jit(jax.vmap(_warmup_one, in_axes=(0, 0, None, None, None)), static_argnums=(3, 4))
_LM = jax.jit(
    jax.vmap(_lm_one, in_axes=(0, 0, None, None, None, None, None)),
    static_argnums=(3, 4, 5, 6),
)


def _chunk_indices(todo, chunk):
    """Indices of one chunk of galaxies (padded by repeating the last) and how many are real."""
    idx = todo[:chunk]
    keep = len(idx)
    return np.concatenate([idx, np.full(chunk - keep, idx[-1])]), keep


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
    shared = tuple(shared)
    host_data = tuple(np.asarray(a) for a in data)
    u = np.array(u0)
    n_warm = np.zeros(nb, np.int32)
    if config.adam_steps or config.lbfgs_steps:
        for start in range(0, nb, chunk):
            idx, keep = _chunk_indices(np.arange(start, nb), chunk)
            uw, nw = _WARMUP(u[idx], tuple(a[idx] for a in host_data), shared, neg_log_post, config)
            u[start : start + keep], n_warm[start : start + keep] = np.asarray(uw)[:keep], nw[:keep]
    # Damped Newton in a pool: each round advances the first `chunk` unfinished galaxies by up
    # to `pool_steps` iterations, so a chunk never idles on its slowest member (a vmapped
    # while_loop runs until ALL its lanes stop) and every round reuses one compiled kernel.
    state = _LMState(
        u=u,
        lam=np.full(nb, config.lm_damping, u.dtype),
        it=np.zeros(nb, np.int32),
        slow=np.zeros(nb, np.int32),
        fin=np.zeros(nb, bool),
    )
    out = None
    while not state.fin.all():
        idx, keep = _chunk_indices(np.flatnonzero(~state.fin), chunk)
        new, res = _LM(
            jax.tree_util.tree_map(lambda a, i=idx: a[i], state),
            tuple(a[idx] for a in host_data),
            shared,
            neg_log_post,
            to_physical,
            residuals,
            config,
        )
        new, res = jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a)[:k], (new, res))
        if out is None:
            out = MapResult(*(np.zeros((nb, *a.shape[1:]), a.dtype) for a in res))
        for full, part in zip((*state, *out), (*new, *res)):
            full[idx[:keep]] = part
    return out._replace(n_steps=out.n_steps + n_warm)
