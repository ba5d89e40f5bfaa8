"""The JVP of the factored draw: its tangent map and the radial derivatives it needs.

See :mod:`jaxsky.render._factored` for the factorisation. The rule (registered there as
``factored_image``'s custom JVP) returns the forward draw and the tangent L p; L goes through
:func:`jaxsky.render._transpose.solve_pair`, so reverse mode (value_and_grad) runs the
hand-written transpose of :mod:`jaxsky.render._transpose` rather than JAX's transpose of
:func:`tangent_image`, while forward mode and second order use :func:`tangent_image` itself.
"""

from __future__ import annotations

import functools

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


def factored_jvp(plan, kinds, primals, tangents):
    """JVP of :func:`~jaxsky.render._factored.factored_image` (see that module's docstring).

    Closed forms only: the value is the forward draw itself and the tangent L p goes through
    :func:`~jaxsky.render._transpose.solve_pair`, so reverse mode runs the hand-written
    transpose (one grid pass and one matrix product per base grid, not per scalar). With a
    table profile the radial grids (gathers) are written out anyway and JAX's own transpose
    of :func:`tangent_image` (a multiply-reduce per scalar over them) measured faster
    (Sersic n=4 x Moffat, 288 x 3 plan: value_and_grad 3.3x the forward vs 4.0x).
    """
    from jaxsky.render._factored import factored_image

    c, off, ps, ms = primals
    if any(k in _TABLES for k in kinds):
        return tangent_image(plan, kinds, primals, tangents, with_value=True)
    out = factored_image.fun(plan, kinds, c, off, ps, ms)
    p_flat = _transpose.pack(*tangents, out.dtype)
    tmap = functools.partial(_tangent_flat, plan, kinds, primals)
    tt = functools.partial(_transpose.tangent_transpose, plan, kinds, primals)
    return out, _transpose.solve_pair(tmap, tt, p_flat, out.shape)


def _tangent_flat(plan, kinds, primals, p_flat):
    """:func:`tangent_image` of the flat tangent vector (see :func:`_transpose.pack`)."""
    return tangent_image(plan, kinds, primals, _transpose.unpack(p_flat, primals[2], primals))


def tangent_image(plan, kinds, primals, tangents, with_value=False):
    """The image tangent L p (ny, nx) at ``primals`` for scalar ``tangents`` (c', o', p', M').

    With ``with_value``: (image, tangent), the image from the same radial grids.
    """
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
    tangent = _linear(plan, jnp.broadcast_to(tr, shape), ti, ph, fuse=False)
    if not with_value:
        return tangent
    fuse = not any(k in _TABLES for k in kinds)
    return _linear(plan, r, None, ph, fuse), tangent
