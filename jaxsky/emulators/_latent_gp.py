"""Latent regression with independent tinygp GPs (one per output dimension), ARD kernels.

Hyper-parameters (amplitude, per-input length scales, noise) of each output are fitted by
maximising the exact marginal likelihood with optax (Rasmussen & Williams 2006, eq. 2.30);
the state keeps the training inputs and ``alpha = K^-1 y`` so the predictive mean
``k(x*, X) alpha`` (eq. 2.25) is a cheap, differentiable function of x*.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tinygp

__all__ = ["GPState", "gp_fit", "gp_mean", "KERNELS"]

KERNELS = ("matern52", "rbf")
_JITTER = 1e-6  # relative noise floor (in units of amp^2) that keeps the Cholesky stable


class GPState(NamedTuple):
    """x: float[N, P] inputs; alpha: float[N, D]; log_amp: float[D]; log_scale: float[D, P]."""

    x: jax.Array
    alpha: jax.Array
    log_amp: jax.Array
    log_scale: jax.Array


class _ARDKernel(tinygp.kernels.Kernel):
    """amp^2 k(r), r^2 = sum_i ((x_i - y_i) / l_i)^2 with k Matern-5/2 or exp(-r^2 / 2).

    Written here (not tinygp's Matern52, whose default metric is L1) with a gradient-safe
    sqrt: d r / d l is finite at r = 0 (the diagonal), which the marginal likelihood needs.
    """

    amp2: jax.Array
    inv_scale: jax.Array
    matern: bool = True

    def evaluate(self, x1, x2):
        r2 = jnp.sum(((x1 - x2) * self.inv_scale) ** 2)
        if not self.matern:
            return self.amp2 * jnp.exp(-0.5 * r2)
        pos = r2 > 0
        r = jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)  # double where
        s5 = jnp.sqrt(5.0) * r
        return self.amp2 * (1.0 + s5 + 5.0 * r2 / 3.0) * jnp.exp(-s5)


def _kernel(name: str, log_amp, log_scale):
    return _ARDKernel(jnp.exp(2 * log_amp), jnp.exp(-log_scale), name == "matern52")


def gp_fit(x, y, *, kernel: str = "matern52", steps: int = 200, lr: float = 0.05) -> GPState:
    """Fit one GP per column of ``y`` float[N, D] on inputs ``x`` float[N, P] (~unit scale)."""
    if kernel not in KERNELS:
        raise ValueError(f"gp kernel={kernel!r} is not one of {KERNELS}")
    dtype = jnp.result_type(float)
    with jax.enable_x64(True):  # the Cholesky of a smooth kernel needs float64
        out = _fit64(np.asarray(x, np.float64), np.asarray(y, np.float64), kernel, steps, lr)
    return GPState(*(jnp.asarray(np.asarray(a), dtype) for a in out))


def _fit64(x, y, kernel, steps, lr):
    x, y = jnp.asarray(x), jnp.asarray(y)
    n_out, n_in = y.shape[1], x.shape[1]
    init = {
        "log_amp": jnp.zeros(n_out),
        "log_scale": jnp.full((n_out, n_in), jnp.log(0.5)),
        "log_noise": jnp.full(n_out, jnp.log(1e-2)),  # relative to the amplitude
    }

    def nll_one(p, col):
        gp = tinygp.GaussianProcess(
            _kernel(kernel, p["log_amp"], p["log_scale"]),
            x,
            diag=jnp.exp(2 * p["log_amp"]) * (jnp.exp(2 * p["log_noise"]) + _JITTER),
        )
        return -gp.log_probability(col)

    def loss(p):
        return jnp.sum(jax.vmap(nll_one, in_axes=(0, 1))(p, y)) / y.size

    opt = optax.adam(lr)

    @jax.jit
    def step(p, s):
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s)
        return optax.apply_updates(p, u), s

    p, s = init, opt.init(init)
    for _ in range(steps):
        p, s = step(p, s)

    def alpha_one(la, ls, ln, col):
        k = _kernel(kernel, la, ls)(x, x) + jnp.exp(2 * la) * (jnp.exp(2 * ln) + _JITTER) * jnp.eye(
            x.shape[0]
        )
        return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(k, lower=True), col)

    alpha = jax.vmap(alpha_one, in_axes=(0, 0, 0, 1), out_axes=1)(
        p["log_amp"], p["log_scale"], p["log_noise"], y
    )
    return x, alpha, p["log_amp"], p["log_scale"]


def gp_mean(state: GPState, xs, *, kernel: str = "matern52"):
    """Predictive means float[D] at one input ``xs`` float[P]."""

    def one(la, ls, a):
        return _kernel(kernel, la, ls)(xs[None, :], state.x)[0] @ a

    return jax.vmap(one, in_axes=(0, 0, 1))(state.log_amp, state.log_scale, state.alpha)
