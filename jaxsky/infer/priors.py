"""Bijections between physical parameters and an unconstrained space, and simple priors.

A :class:`Bijection` maps an unconstrained vector ``u`` (float[size]) to physical values
``x = forward(u)`` and back; ``log_det_jacobian(u)`` is ``log |det dx/du|``, which a sampler
working in ``u`` adds to the log density (MAP fits in jaxsky find the mode in the physical
parameters and do not need it). A :class:`ParameterSpace` stacks named bijections into one map
``float[P] <-> float[P]`` so that optimisers and samplers see a flat vector.

All transforms are gradient-safe at their edges (no NaN at u = 0 for the disc, or at large |u|).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "Bijection",
    "ParameterSpace",
    "identity",
    "positive",
    "interval",
    "log_interval",
    "unit_disk",
    "flat_prior",
    "normal_prior",
]


class Bijection(NamedTuple):
    """A smooth invertible map from R^size to a constrained set (pure functions)."""

    forward: Callable[[jax.Array], jax.Array]
    inverse: Callable[[jax.Array], jax.Array]
    log_det_jacobian: Callable[[jax.Array], jax.Array]
    size: int = 1
    name: str = ""


def identity() -> Bijection:
    """x = u (positions, or any unbounded parameter)."""
    return Bijection(lambda u: u, lambda x: x, lambda u: jnp.zeros(()), 1, "identity")


def positive() -> Bijection:
    """x = exp(u) > 0 (fluxes, sizes): errors are then naturally relative."""
    return Bijection(jnp.exp, jnp.log, lambda u: jnp.sum(u), 1, "positive")


def interval(lo: float, hi: float) -> Bijection:
    """x = lo + (hi - lo) sigmoid(u), in the open interval (lo, hi)."""
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        raise ValueError(f"interval needs hi > lo, got lo={lo}, hi={hi}")

    def fwd(u):
        return lo + (hi - lo) * jax.nn.sigmoid(u)

    def inv(x):
        t = jnp.clip((x - lo) / (hi - lo), 1e-6, 1 - 1e-6)
        return jnp.log(t) - jnp.log1p(-t)

    def ldj(u):  # d sigmoid = sigmoid (1 - sigmoid); log form avoids underflow
        return jnp.sum(jnp.log(hi - lo) - jax.nn.softplus(u) - jax.nn.softplus(-u))

    return Bijection(fwd, inv, ldj, 1, f"interval({lo:g}, {hi:g})")


def log_interval(lo: float, hi: float) -> Bijection:
    """x = exp(a + (b - a) sigmoid(u)) with a = log lo, b = log hi: a positive size in a box."""
    lo, hi = float(lo), float(hi)
    if not (hi > lo > 0):
        raise ValueError(f"log_interval needs hi > lo > 0, got lo={lo}, hi={hi}")
    inner = interval(jnp.log(lo), jnp.log(hi))

    def ldj(u):
        return inner.log_det_jacobian(u) + jnp.sum(inner.forward(u))

    return Bijection(
        lambda u: jnp.exp(inner.forward(u)),
        lambda x: inner.inverse(jnp.log(x)),
        ldj,
        1,
        f"log_interval({lo:g}, {hi:g})",
    )


def unit_disk(radius: float = 0.95) -> Bijection:
    """(g1, g2) = radius tanh(r) u / r with r = |u|: a reduced shear inside |g| < radius.

    tanh(r) / r is written as a series near r = 0 so value and gradient stay finite there.
    """
    radius = float(radius)
    if not 0 < radius < 1:
        raise ValueError(f"unit_disk radius={radius} must lie in (0, 1)")

    def _ratio(r2):
        small = r2 < 1e-6
        r = jnp.sqrt(jnp.where(small, 1.0, r2))
        return jnp.where(small, 1.0 - r2 / 3.0, jnp.tanh(r) / r)

    def fwd(u):
        return radius * u * _ratio(jnp.sum(u * u, axis=-1, keepdims=True))

    def inv(x):
        rho2 = jnp.sum(x * x, axis=-1, keepdims=True) / radius**2
        small = rho2 < 1e-12
        rho = jnp.sqrt(jnp.where(small, 1.0, rho2))
        rho_c = jnp.minimum(rho, 1 - 1e-6)
        scale = jnp.where(small, 1.0, jnp.arctanh(rho_c) / rho)
        return x / radius * scale

    def ldj(u):
        # radial map x = f(r) u/r in 2-D: det = f'(r) f(r) / r, f = radius tanh
        r2 = jnp.sum(u * u)
        ratio = _ratio(r2)
        t2 = r2 * ratio * ratio  # tanh(r)^2
        return 2 * jnp.log(radius) + jnp.log1p(-t2) + jnp.log(ratio)

    return Bijection(fwd, inv, ldj, 2, f"unit_disk({radius:g})")


class ParameterSpace:
    """Named parameters, each block with its bijection, as one flat float[P] vector.

    Args:
      blocks: sequence of (names, bijection) with ``len(names) == bijection.size``.
    """

    def __init__(self, blocks: Sequence[tuple[Sequence[str], Bijection]]):
        names, self._blocks, i = [], [], 0
        for bnames, bij in blocks:
            bnames = (bnames,) if isinstance(bnames, str) else tuple(bnames)
            if len(bnames) != bij.size:
                raise ValueError(f"block {bnames} has {len(bnames)} names for size {bij.size}")
            self._blocks.append((slice(i, i + bij.size), bij))
            names.extend(bnames)
            i += bij.size
        self.names: tuple[str, ...] = tuple(names)
        self.size = i

    def _apply(self, v, which):
        parts = []
        for sl, bij in self._blocks:
            seg = v[..., sl]
            f = getattr(bij, which)
            out = f(seg) if bij.size > 1 else f(seg[..., 0])[..., None]
            parts.append(out)
        return jnp.concatenate(parts, axis=-1)

    def to_physical(self, u: jax.Array) -> jax.Array:
        """float[P] unconstrained -> float[P] physical (one point; vmap for batches)."""
        return self._apply(u, "forward")

    def to_unconstrained(self, x: jax.Array) -> jax.Array:
        """float[P] physical -> float[P] unconstrained (values at a bound are nudged inside)."""
        return self._apply(x, "inverse")

    def log_det_jacobian(self, u: jax.Array) -> jax.Array:
        """log |det d to_physical / du| at one point u: float[P] -> scalar."""
        total = jnp.zeros(())
        for sl, bij in self._blocks:
            seg = u[sl]
            total = total + bij.log_det_jacobian(seg if bij.size > 1 else seg[0])
        return total

    def as_dict(self, x: jax.Array) -> dict[str, jax.Array]:
        """Split float[..., P] into {name: float[...]}."""
        return {k: x[..., i] for i, k in enumerate(self.names)}

    def from_dict(self, d: Mapping[str, jax.Array]) -> jax.Array:
        """Stack {name: float[...]} into float[..., P] in this space's order."""
        missing = [k for k in self.names if k not in d]
        if missing:
            raise ValueError(f"missing parameters {missing}; expected {list(self.names)}")
        return jnp.stack([jnp.asarray(d[k], float) for k in self.names], axis=-1)


def flat_prior() -> Callable[[jax.Array], jax.Array]:
    """log p(x) = 0: MAP is then the maximum-likelihood point inside the bijections' box."""
    return lambda x: jnp.zeros(())


def normal_prior(mean, sigma) -> Callable[[jax.Array], jax.Array]:
    """Independent Gaussian log prior (up to a constant) on the physical vector float[P]."""
    mean, sigma = jnp.asarray(mean, float), jnp.asarray(sigma, float)
    return lambda x: -0.5 * jnp.sum(((x - mean) / sigma) ** 2)
