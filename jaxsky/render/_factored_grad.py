"""The JVP of the factored draw: its tangent map and the radial derivatives it needs.

See :mod:`jaxsky.render._factored` for the factorisation. The rule (registered there as
``factored_image``'s custom JVP) returns the forward draw and the tangent L p; L goes through
:func:`jaxsky.render._transpose.solve_pair`, so reverse mode (value_and_grad) runs the
hand-written transpose of :mod:`jaxsky.render._transpose` rather than JAX's transpose of
:func:`tangent_image`, while forward mode and second order use :func:`tangent_image` itself.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxsky.render import _tables, _transpose
from jaxsky.render._factored import (
    _TABLES,
    _grid,
    _linear,
    _materialise,
    _phases,
    _quad,
    closed_form,
    image_of_grid,
    separable_gaussians,
    table_values,
)
from jaxsky.render.profiles import _log_k

__all__ = ["factored_jvp", "radial_derivs", "tangent_image"]


def radial_derivs(kind, p, q):
    """(F, dF/dq, dF/dp or None) on the grid; finite everywhere (q = 0 included)."""
    if kind not in _TABLES:
        return (*closed_form(kind, q), None)
    u, pos = _log_k(q)
    tail = "power" if kind == "sersic" else None
    f, f_u, f_p = _tables.eval_table_derivs(kind, p, u, tail)
    # dF/dq = dF/du / (2 q); at q = 0 (k = 0) the tangent k^T M' k vanishes anyway.
    f_q = jnp.where(pos, f_u / (2.0 * jnp.where(pos, q, 1.0)), 0.0)
    return jnp.where(pos, f, 1.0), f_q, jnp.where(pos, f_p, 0.0)


def factored_jvp(plan, kinds, primals, tangents, rounds=()):
    """JVP of :func:`~jaxsky.render._factored.factored_image` (see that module's docstring).

    The value is the forward draw and the tangent L p goes through
    :func:`~jaxsky.render._transpose.solve_pair`, so reverse mode runs the hand-written
    transpose (one grid pass and one matrix product per pair of base grids, not per
    scalar). With a table profile the value is drawn from the table derivatives' F, and
    the look-ups (F, dF/dq, dF/dp: the gathers) are evaluated once for the value and the
    transpose (:func:`_value_and_tables`). Against JAX's transpose of :func:`tangent_image`
    (which wrote out each gathered spline coefficient and re-evaluated the cubics per
    scalar), value_and_grad of random-n Sersic x Moffat 64 (plan (432, 3), 32 galaxies,
    single core): 83 -> 45 ms per image, 3.5x -> 1.9x the forward draw.
    """
    from jaxsky.render._factored import factored_image

    c, off, ps, ms = primals
    tables = None
    if any(k in _TABLES for k in kinds):
        out, tables = _value_and_tables(plan, kinds, primals, rounds)
    else:
        out = factored_image.fun(plan, kinds, c, off, ps, ms, rounds)
    p_flat = _transpose.pack(*tangents, out.dtype)
    tmap = functools.partial(_tangent_flat, plan, kinds, primals)
    tt = functools.partial(
        _transpose.tangent_transpose, plan, kinds, primals, tables=tables, rounds=rounds
    )
    return out, _transpose.solve_pair(tmap, tt, p_flat, out.shape)


def _value_and_tables(plan, kinds, primals, rounds=()):
    """The image, and {i: (F, dF/dq, dF/dp)} of the table components (shared residuals)."""
    c, off, ps, ms = primals
    grid = _grid(plan)
    rounds = rounds or (False,) * len(kinds)
    gauss = separable_gaussians(kinds, ms, rounds)  # in the 1-D phases, as in the forward
    ev = {
        i: table_values(plan, grid, k, m, rd, p, radial_derivs)
        for i, (k, p, m, rd) in enumerate(zip(kinds, ps, ms, rounds))
        if i not in gauss
    }
    for i, kind in enumerate(kinds):
        if kind in _TABLES:
            # Written out once, as complex grids F + i dF/dq and dF/dp + 0i (a complex sum is
            # a fusion boundary: see _materialise; a real one is taken over by a YNNPACK
            # fusion): XLA CPU otherwise writes out each gathered spline coefficient and
            # re-evaluates the cubics in every consumer. Random-n Sersic x Moffat 64,
            # value_and_grad per image, single core: plan (432, 3) 69 -> 45 ms, (128, 1)
            # 593 -> 467 us, (96, 2) 1374 -> 1030 us.
            f, f_q, f_p = ev[i]
            z = _materialise(jax.lax.complex(f, f_q))
            z_p = _materialise(jax.lax.complex(f_p, jnp.zeros_like(f_p)))
            ev[i] = (jnp.real(z), jnp.imag(z), jnp.real(z_p))
    r = c * functools.reduce(jnp.multiply, [e[0] for e in ev.values()], 1.0)
    tables = {i: e for i, e in ev.items() if kinds[i] in _TABLES}
    return image_of_grid(plan, grid, off, r, False, tuple(gauss.values())), tables


def _tangent_flat(plan, kinds, primals, p_flat):
    """:func:`tangent_image` of the flat tangent vector (see :func:`_transpose.pack`)."""
    return tangent_image(plan, kinds, primals, _transpose.unpack(p_flat, primals[2], primals))


def tangent_image(plan, kinds, primals, tangents):
    """The image tangent L p (ny, nx) at ``primals`` for scalar ``tangents`` (c', o', p', M')."""
    c, off, ps, ms = primals
    c_dot, off_dot, ps_dot, ms_dot = tangents
    kx, ky, cols, rows = _grid(plan)
    shape = kx.shape[:2] + ky.shape
    ph = _materialise(_phases(plan, off, kx, ky, cols, rows))  # 1-D: computed once
    ev = [radial_derivs(k, p, _quad(m, kx, ky)) for k, p, m in zip(kinds, ps, ms)]
    prod = lambda xs: functools.reduce(jnp.multiply, xs, 1.0)  # noqa: E731
    r0 = jnp.broadcast_to(prod([e[0] for e in ev]), shape)
    r = c * r0
    tr = r0 * c_dot
    for i, ((_, fq, fp), m_dot, p_dot) in enumerate(zip(ev, ms_dot, ps_dot)):
        others = c * prod([e[0] for j, e in enumerate(ev) if j != i])
        tr = tr + (others * fq) * _quad(m_dot, kx, ky)
        if fp is not None:
            tr = tr + (others * fp) * p_dot
    # The offset turns the phase: K' = -i (kx o_x' + ky o_y') K.
    ti = -r * (kx * off_dot[0] + ky * off_dot[1])
    # The tangent's fold uses reductions even for closed forms: JAX transposes them into
    # broadcasts, while the transpose of the slice-add fold (pads of the whole grid) costs
    # ~20x more on XLA CPU (paper plan: 4.1 ms vs 0.2 ms per image).
    return _linear(plan, jnp.broadcast_to(tr, shape), ti, ph, fuse=False)
