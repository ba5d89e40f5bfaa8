"""The transpose of the factored draw's tangent map, written by hand (value_and_grad's pass).

The factored draw's tangent (:mod:`jaxsky.render._factored_grad`) is a linear map L from
the scalar tangents p = (c', o', M_i', p_i') to the image. JAX's own transpose of it costs
one multiply-reduce over the k-grid per scalar, each over materialised grid operands. By
the factorisation (see :mod:`jaxsky.render._factored`) every cotangent is a weighted grid
sum

    dchi/dtheta = Re sum_k Q(k) dK/dtheta(k),   Q = (adjoint of the crop, inverse FFT and
                                                     zone fold) x phases,

with dK/dtheta one of a few *base* grids W_j times a monomial kx^a ky^b (a + b <= 2):

    W_c = Re Q R0,  W_i = Re Q c prod_{j != i} F_j dF_i/dq,  W_pi = ... dF_i/dp,
    W_o = Im Q c R0   (o' turns the phase: dK/do = -i k K).

So :func:`tangent_transpose` needs one FFT (the adjoint of the inverse FFT) and, per pair
of base grids (the real and imaginary parts of one complex grid), one fused pass over the
k-grid and one matrix product against [1, ky, ky^2] (then the kx moments on the small
result): 3 passes for Sersic x Moffat, instead of JAX's ~2 per scalar parameter (11-13) over
written-out grids. Closed-form profiles (Gaussians and at most one Exponential, e.g. the
paper's Exponential x Gaussian) need ONE pass: all their bases are polynomials in k times a
single grid (:func:`_closed_form_transpose`).
How XLA CPU (jaxlib 0.10) is steered, measured on the paper plan (n_fft 96, k_fold 4):
the bases are not stacked (a concatenation is emitted as branchy scalar code, ~5x slower);
closed-form radial grids are recomputed in every base's pass on a k grid XLA cannot merge
with the forward's or another base's (:func:`_fresh`; shared, XLA writes them out and
value_and_grad costs 6.5x the forward instead of 3.7x); table look-ups are evaluated once,
in the forward draw, and passed in (``tables``, written out by
``_factored_grad._value_and_tables``; recomputing their gathers per base costs ~3x more);
the 1-D phases are kept as complex arrays before
:func:`~jaxsky.render._factored._materialise` (a real sum there would be taken over by a
YNNPACK fusion that also absorbs the consumer's broadcast and writes it out grid-sized; a
complex sum is a fusion boundary).
:func:`solve_pair` wraps L and this transpose in ``jax.lax.custom_linear_solve`` (the only
JAX primitive with a user-supplied transpose that also has JVP and batching rules): the
block map A = I - N, N = [[0, 0], [L, 0]] on (p, image), has N^2 = 0, so A^{-1} = I + N and
A^{-T} = I + N^T: solving A x = (p, 0) gives (p, L p), and its transpose calls N^T, i.e.
this module. Second derivatives stay exact: the JVP of the solve in its parameters uses
JAX's own derivative of ``matvec`` (the plain, autodiff-able L).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.render._factored import (
    _TABLES,
    _grid,
    _materialise,
    _phases,
    _quad,
    image_from_folded,
    separable_gaussians,
)

__all__ = ["flat_size", "pack", "solve_pair", "tangent_transpose", "unpack"]


def flat_size(kinds, ps):
    """Length of the flat tangent vector: c (1), offset (2), per component M (4) and p."""
    return 3 + sum(4 + (p is not None) for p in ps)


def pack(c, off, ps, ms, dtype):
    """The scalar tangents (c', o', ps', ms') as one flat vector (see :func:`flat_size`)."""
    parts = [jnp.reshape(c, (1,)), jnp.reshape(off, (2,))]
    for p, m in zip(ps, ms):
        parts.append(jnp.reshape(m, (4,)))
        if p is not None:
            parts.append(jnp.reshape(p, (1,)))
    return jnp.concatenate([x.astype(dtype) for x in parts])


def unpack(v, ps, like):
    """Inverse of :func:`pack`; ``like`` = (c, off, ps, ms) primals whose dtypes it restores."""
    c0, off0, ps0, ms0 = like
    c, off, i = v[0].astype(jnp.result_type(c0)), v[1:3].astype(off0.dtype), 3
    out_p, out_m = [], []
    for p, m in zip(ps, ms0):
        out_m.append(v[i : i + 4].reshape(2, 2).astype(m.dtype))
        i += 4
        if p is None:
            out_p.append(None)
        else:
            out_p.append(v[i].astype(jnp.result_type(p)))
            i += 1
    return c, off, tuple(out_p), tuple(out_m)


def _folded_adjoint(plan, img_ct, dtype):
    """Cotangent (n/2+1, n) complex of the folded array, for the pairing Re sum(ct x)."""
    n = plan.n_fft
    spec = jax.ShapeDtypeStruct((n // 2 + 1, n), jnp.result_type(dtype, jnp.complex64))
    (ct,) = jax.linear_transpose(functools.partial(image_from_folded, plan), spec)(img_ct)
    return ct


def _unfold_rows(plan, ct):
    """(n/2+1, n) in FFT order -> (n/2+1, m) on the grid rows (row y: ky bin (y - h) mod n)."""
    n, kf = plan.n_fft, plan.k_fold
    if kf == 1:
        return ct  # rows already in FFT order (see _factored._grid)
    h = kf * n // 2
    return jnp.tile(jnp.roll(ct, h % n, axis=1), (1, kf))


def _fresh(kx, ky, off, j):
    """kx, ky unchanged, but distinct values for XLA (a runtime zero, ``0 * (o_x + j)``).

    XLA CSE would otherwise merge the radial grids of every base with each other and with
    the forward draw's, and then write them out grid-sized (it does not fuse an expensive
    op, exp or a divide, into several consumers): recomputing them in each fused pass is
    cheaper for closed forms (paper plan: value_and_grad 6.7x -> 3.8x the forward, loaded).
    """
    zero = 0.0 * (off[0] + (j + 1.0))
    return kx + zero, ky + zero


def tangent_transpose(plan, kinds, primals, img_ct, tables=None, rounds=()):
    """Transpose of the tangent map: image cotangent (ny, nx) -> flat scalar cotangent.

    Args:
      plan, kinds: as for :func:`~jaxsky.render._factored.factored_image` (static).
      primals: (c, off, ps, ms) at which the tangent map is linearised.
      img_ct: float[ny, nx] cotangent of the image.
      tables: optional {component index: (F, dF/dq, dF/dp)} of the table components on the
        k-grid, shared with the forward draw (see ``_factored_grad.factored_jvp``);
        evaluated here when None.
      rounds: static bools as for ``factored_image``: a round Gaussian's two 1-D factors
        go into the 1-D phases (no exp per grid point and base).

    Returns:
      float[flat_size] cotangent of the :func:`pack` ed scalar tangents.
    """
    from jaxsky.render._factored_grad import radial_derivs

    c, off, ps, ms = primals
    kx, ky, cols, rows = _grid(plan)
    dtype = kx.dtype
    sep = separable_gaussians(kinds, ms, rounds)
    exr, exi, eyr, eyi = _phases(plan, off, kx, ky, cols, rows, tuple(sep.values()))
    # P = folded cotangent (unfolded onto the rows) x the ky phases: (n/2+1, m), and the kx
    # phases (kf, n/2+1, 1), both complex and computed once (complex: see the docstring).
    f = _unfold_rows(plan, _folded_adjoint(plan, img_ct.astype(dtype), dtype))
    p = f * _materialise(jax.lax.complex(eyr, eyi))
    one_pass = _one_pass_ok(kinds)
    if one_pass:
        # P written out first: as the one pass's only grid operand XLA would fuse the
        # unfolding (a roll, i.e. a concatenation, emitted as branchy scalar code) into the
        # pass (plan (64, 2), 32 galaxies: value_and_grad 3.32 -> 3.13 ms).
        p = _materialise(p)
    e = _materialise(jax.lax.complex(exr, exi))
    pr, pi, er, ei = jnp.real(p), jnp.imag(p), jnp.real(e), jnp.imag(e)
    # Q = P x the kx phases on the grid (kf, n/2+1, m): the cotangent of K for Re(Q K').
    qr, qi = pr * er - pi * ei, pr * ei + pi * er

    def evaluate(i, grid):
        if i in sep:  # in the phases already; dF/dq = -F/2 is used as -c/2 W_c below
            return (1.0, None, None)
        return radial_derivs(kinds[i], ps[i], _quad(ms[i], *grid))

    if one_pass:
        return _closed_form_transpose(kinds, c, ms, sep, qr, qi, kx, ky, off, evaluate, dtype)
    # Table look-ups (gathers) are evaluated once for all the bases (recomputing them per
    # base costs more than XLA writing them out); closed forms once per base.
    if tables is None:
        shared = _fresh(kx, ky, off, 0)
        tables = {i: evaluate(i, shared) for i, k in enumerate(kinds) if k in _TABLES}
    shape = kx.shape[:2] + ky.shape
    vy = jnp.stack([jnp.ones_like(ky), ky, ky * ky], axis=-1)  # (m, 3)
    kx2 = kx[..., 0]
    vx = jnp.stack([jnp.ones_like(kx2), kx2, kx2 * kx2], axis=-1)  # (kf, n/2+1, 3)

    def moments(w):
        """mom[a, b] = sum_k w kx^a ky^b: one GEMM against [1, ky, ky^2], then the kx side."""
        return jnp.einsum("abq,abp->pq", jnp.broadcast_to(w, shape) @ vy, vx)

    def components(j):
        grid = _fresh(kx, ky, off, j)
        return [tables[i] if i in tables else evaluate(i, grid) for i in range(len(kinds))]

    prod = lambda xs: functools.reduce(jnp.multiply, xs, 1.0)  # noqa: E731
    # Two bases per pass, as the real and imaginary parts of one complex grid (and one
    # complex GEMM): (W_c, W_o), then per component (W_qi, W_pi). Half the passes over the
    # grid of one base each (random-n Sersic x Moffat 64, plan (128, 1): value_and_grad
    # 575 -> 520 us per image, single core); a stacked real pair would be a concatenation.
    ev = components(1)
    r0 = prod([e[0] for e in ev])
    m = moments(jax.lax.complex(qr * r0, qi * (c * r0)))
    m_c, m_o = jnp.real(m), jnp.imag(m)
    out = [m_c[0, 0], m_o[1, 0], m_o[0, 1]]  # c, o_x, o_y
    for i, (kind, p_i) in enumerate(zip(kinds, ps)):
        m_p = None
        if kind == "gaussian":  # dF/dq = -F/2: W_q = -c/2 W_c
            m_q = -0.5 * c * m_c
        else:
            ev = components(i + 2)
            w = qr * (c * prod([e[0] for j, e in enumerate(ev) if j != i]))
            if p_i is None:
                m_q = moments(w * ev[i][1])
            else:
                m = moments(jax.lax.complex(w * ev[i][1], w * ev[i][2]))
                m_q, m_p = jnp.real(m), jnp.imag(m)
        out += [m_q[2, 0], m_q[1, 1], m_q[1, 1], m_q[0, 2]]  # M_00, M_01, M_10, M_11
        if p_i is not None:
            out.append(m_p[0, 0])
    return jnp.stack(out).astype(dtype)


def _one_pass_ok(kinds):
    """Closed-form components only, at most one of them an Exponential (see below)."""
    return all(k in ("gaussian", "exponential") for k in kinds) and kinds.count("exponential") <= 1


def _closed_form_transpose(kinds, c, ms, sep, qr, qi, kx, ky, off, evaluate, dtype):
    """:func:`tangent_transpose` for closed-form components in ONE pass over the k-grid.

    Every base is a polynomial in k times one grid u = Q G s^5 (G: the product of the
    Gaussians not in the phases; s = (1 + q_e)^(-1/2) of the Exponential e, s = 1 without
    one), since F_e = s^3 = s^5 (1 + q_e) and dF_e/dq = -3/2 s^5 (Exponential transform,
    e.g. GalSim's ``Exponential._kValue``), and a Gaussian's dF/dq = -F/2:

        W_c = Re u (1 + q_e),  W_o = c Im u (1 + q_e),  W_qe = -3/2 c Re u,
        W_qg = -c/2 W_c  (every Gaussian, in the phases or not),

    with q_e = k^T M_e k a quadratic in kx, ky. So their moments up to order 2 (what the
    tangent needs) are moments of u up to order 4: one complex grid, one GEMM against
    [1, ky, .., ky^4], instead of a pass (grid write and GEMM) per pair of bases. Per point,
    u (1 + q_e) = u + u q_e splits into terms of one sign up to the shear's cross term
    (|e| <= 0.6: at most ~4x the size of the sum), so float32 loses little.
    """
    exps = [i for i, k in enumerate(kinds) if k == "exponential"]
    gauss = "gaussian" in kinds  # in the phases (sep) or not
    order = (2 if gauss else 1) + (2 if exps else 0)  # highest moment of u needed
    grid = _fresh(kx, ky, off, 1)
    base = 1.0
    for i, kind in enumerate(kinds):
        if kind == "gaussian" and i not in sep:
            base = base * evaluate(i, grid)[0]
    if exps:
        s = jax.lax.rsqrt(1.0 + _quad(ms[exps[0]], *grid))
        base = base * (s * s) * (s * s) * s
    shape = kx.shape[:2] + ky.shape
    z = jnp.broadcast_to(jax.lax.complex(qr * base, qi * base), shape)
    pw = lambda x: jnp.stack([x**j for j in range(order + 1)], axis=-1)  # noqa: E731
    u = jnp.einsum("abq,abp->pq", z @ pw(ky).astype(z.dtype), pw(kx[..., 0]).astype(z.dtype))
    ur, ui = jnp.real(u), jnp.imag(u)

    def with_q(m_u, a, b):
        """Moment (a, b) of m_u (1 + q_e) from the moments of m_u."""
        if not exps:
            return m_u[a, b]
        m = ms[exps[0]]
        return (
            m_u[a, b]
            + m[0, 0] * m_u[a + 2, b]
            + (m[0, 1] + m[1, 0]) * m_u[a + 1, b + 1]
            + m[1, 1] * m_u[a, b + 2]
        )

    out = [with_q(ur, 0, 0), c * with_q(ui, 1, 0), c * with_q(ui, 0, 1)]  # c, o_x, o_y
    for kind in kinds:
        if kind == "gaussian":
            mq = lambda a, b: -0.5 * c * with_q(ur, a, b)  # noqa: E731
        else:
            mq = lambda a, b: -1.5 * c * ur[a, b]  # noqa: E731
        m11 = mq(1, 1)
        out += [mq(2, 0), m11, m11, mq(0, 2)]  # M_00, M_01, M_10, M_11
    return jnp.stack(out).astype(dtype)


def solve_pair(tangent_map, transpose_map, p_flat, img_shape):
    """(p, L p) through ``custom_linear_solve``, so that reverse mode calls ``transpose_map``.

    Args:
      tangent_map: L, flat (T,) -> image ``img_shape`` (differentiable JAX code).
      transpose_map: L^T, image -> flat (T,).
      p_flat: the (T,) tangent vector.

    Returns:
      The image tangent L p_flat.
    """
    t = p_flat.shape[0]
    size = int(np.prod(img_shape))
    dtype = p_flat.dtype

    def split(v):
        return v[:t], v[t:]

    def n_map(v):  # N (p, y) = (0, L p)
        p, _ = split(v)
        return jnp.concatenate([jnp.zeros((t,), dtype), tangent_map(p).reshape(size)])

    def matvec(v):  # A = I - N
        return v - n_map(v)

    def solve(_, b):  # A^{-1} = I + N (N^2 = 0)
        return b + n_map(b)

    def transpose_solve(_, b):  # A^{-T} = I + N^T, N^T (p, y) = (L^T y, 0)
        _, y = split(b)
        return b + jnp.concatenate([transpose_map(y.reshape(img_shape)), jnp.zeros((size,), dtype)])

    # The image half of b starts at 0: concatenated to p, so the whole of b is a tangent
    # (the transpose rule of custom_linear_solve requires every leaf of b to be linear).
    b = jnp.concatenate([p_flat, jnp.zeros((size,), dtype)])
    x = jax.lax.custom_linear_solve(matvec, b, solve, transpose_solve)
    return x[t:].reshape(img_shape)
