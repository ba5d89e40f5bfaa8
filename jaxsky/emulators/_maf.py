"""Conditional masked autoregressive flow (Papamakarios et al. 2017) on distrax bijectors.

distrax ships coupling layers but no MAF, so the autoregressive affine layer is written here as
a ``distrax.Bijector`` whose shift and log-scale come from a flax :class:`~._nn.MADE`
conditioned on a vector ``cond``. Direction convention (as in the paper): the density direction
``inverse: z -> u`` is one MADE pass, ``u_i = (z_i - m_i(z_<i)) exp(-a_i(z_<i))``; sampling
``forward: u -> z`` needs ``dim`` passes. Layers alternate with order reversals.
"""

from __future__ import annotations

from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp

from jaxsky.emulators._nn import MADE

__all__ = ["MAFSpec", "MaskedAutoregressiveAffine", "Reverse", "maf_init", "maf_dist"]

_MAX_LOG_SCALE = 5.0


class MAFSpec(NamedTuple):
    """Static sizes: event ``dim``, condition ``cond_dim``, ``n_layers``, MADE ``hidden``."""

    dim: int
    cond_dim: int
    n_layers: int = 4
    hidden: tuple = (64, 64)


class MaskedAutoregressiveAffine(distrax.Bijector):
    """Affine autoregressive bijector on float[..., dim] given cond float[cond_dim]."""

    def __init__(self, made: MADE, params, cond):
        super().__init__(event_ndims_in=1)
        self._made, self._params, self._cond = made, params, cond

    def _shift_log_scale(self, z):
        cond = jnp.broadcast_to(self._cond, (*z.shape[:-1], self._cond.shape[-1]))
        out = self._made.apply(self._params, z, cond)
        # soft bound on the log-scale keeps early training stable
        a = _MAX_LOG_SCALE * jnp.tanh(out[..., 1] / _MAX_LOG_SCALE)
        return out[..., 0], a

    def forward_and_log_det(self, u):
        def body(_, z):
            m, a = self._shift_log_scale(z)
            return u * jnp.exp(a) + m

        # after i passes the first i coordinates are exact; dim passes give all of them
        z = jax.lax.fori_loop(0, self._made.dim, body, jnp.zeros_like(u))
        _, a = self._shift_log_scale(z)
        return z, jnp.sum(a, axis=-1)

    def inverse_and_log_det(self, z):
        m, a = self._shift_log_scale(z)
        return (z - m) * jnp.exp(-a), -jnp.sum(a, axis=-1)


class Reverse(distrax.Bijector):
    """Reverse the order of the event coordinates (volume preserving)."""

    def __init__(self):
        super().__init__(event_ndims_in=1, is_constant_jacobian=True)

    def forward_and_log_det(self, x):
        return x[..., ::-1], jnp.zeros(x.shape[:-1], x.dtype)

    def inverse_and_log_det(self, y):
        return self.forward_and_log_det(y)


def _made(spec: MAFSpec) -> MADE:
    return MADE(spec.dim, tuple(spec.hidden), 2)


def maf_init(spec: MAFSpec, *, key) -> list:
    """Parameters of the ``n_layers`` MADEs (identity flow at initialisation)."""
    made = _made(spec)
    z, c = jnp.zeros((1, spec.dim)), jnp.zeros((1, spec.cond_dim))
    return [made.init(k, z, c) for k in jax.random.split(key, spec.n_layers)]


def maf_dist(spec: MAFSpec, params: list, cond) -> distrax.Transformed:
    """The flow's distribution of z float[dim] given cond float[cond_dim] (standard-normal base)."""
    made = _made(spec)
    layers = []
    for p in params:
        layers += [MaskedAutoregressiveAffine(made, p, cond), Reverse()]
    dtype = jnp.result_type(cond.dtype, float)
    base = distrax.MultivariateNormalDiag(jnp.zeros(spec.dim, dtype), jnp.ones(spec.dim, dtype))
    return distrax.Transformed(base, distrax.Chain(layers[:-1]))
