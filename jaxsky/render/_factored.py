"""The k-space draw of a factored profile, with a hand-written JVP that transposes cheaply.

A profile built from radial profiles by affine transforms and convolutions has the transform
(see ``GSObject._kterms``)

    K(k) = c exp(-i k.o) prod_i F_i(p_i, q_i),   q_i = k^T M_i k,

so its drawn image is a fixed linear map L (phases, pixel, zone fold, inverse FFT, crop) of
``r(k) = c prod_i F_i`` and its tangent is

    r' = c' R0 + sum_i c prod_{j != i} F_j (dF_i/dq k^T M_i' k + dF_i/dp p_i'),
    K' = (r' - i r (kx o_x' + ky o_y')) exp(-i k.o),   R0 = prod_i F_i.

Every term is a grid array times a scalar tangent (times a monomial in kx, ky). The JVP
(``_factored_grad``) keeps forward mode (jvp, jacfwd) working; in reverse mode every profile
uses the hand-written transpose of ``_transpose`` (one FFT adjoint, then one fused grid pass
and one small matrix product per pair of base grids; table look-ups evaluated once, shared
with the value): value_and_grad never differentiates through every intermediate of the
table look-ups. The forward fold is written
as adds of zone slices for closed-form profiles (XLA CPU then fuses the whole grid into one
loop) and as one zone product for table profiles (where re-evaluating the gathers in fused
consumers costs more than materialising the grid once). The tangent always folds with reductions
(their transpose is a broadcast; that of the slice adds is a pad of the whole grid per
zone), its 1-D phases are computed once (:func:`_materialise`), and its table derivatives
come from :func:`~jaxsky.render._tables.eval_table_derivs` (scalar gathers).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.render import _tables
from jaxsky.render.profiles import _log_k

__all__ = ["factored_image", "radial_value"]
_TABLES = ("sersic", "moffat")


def _quad(m, kx, ky):
    """k^T M k for a 2 x 2 ``m`` (any symmetry) on broadcastable kx, ky."""
    return m[0, 0] * kx * kx + (m[0, 1] + m[1, 0]) * kx * ky + m[1, 1] * ky * ky


def closed_form(kind, q):
    """(F, dF/dq) of a closed-form radial transform ('gaussian', 'exponential'), F(0) = 1."""
    if kind == "gaussian":
        f = jnp.exp(-0.5 * q)
        return f, -0.5 * f
    # F = x^(-3/2), dF/dq = -3/2 x^(-5/2), x = 1 + q: powers of one rsqrt (no divides,
    # which XLA CPU evaluates at several times the cost of a multiply).
    s = jax.lax.rsqrt(1.0 + q)
    f = s * s * s
    return f, -1.5 * f * (s * s)


def radial_value(kind, p, q):
    """F(p, q) normalised to F(0) = 1 (q = (k r)^2 in the profile's own radius r)."""
    if kind not in _TABLES:
        return closed_form(kind, q)[0]
    u, pos = _log_k(q)
    tail = "power" if kind == "sersic" else None
    return jnp.where(pos, _tables.eval_table(kind, p, u, tail), 1.0)


def _grid(plan):
    """kx (kf, n/2+1, 1) and ky (m,) in 1/arcsec, and the integer columns / rows."""
    from jaxsky.render.drawing import _fold_columns, _fold_rows

    n, kf, p = plan.n_fft, plan.k_fold, plan.scale
    m, h = kf * n, kf * n // 2
    dtype = jnp.result_type(float)
    dk = 2.0 * np.pi / (n * p)
    cols = _fold_columns(n, kf)
    # kf == 1: rows already in FFT order (no fold); kf > 1: -h .. h-1, folded after.
    rows = _fold_rows(n, 1)[0] if kf == 1 else np.arange(m) - h
    kx = jnp.asarray(cols * dk, dtype)[:, :, None]
    ky = jnp.asarray(rows * dk, dtype)
    return kx, ky, cols, rows


def separable_gaussians(kinds, ms, rounds):
    """{component index: s^2} of the round Gaussians (``rounds[i]``: ``ms[i]`` = s^2 I).

    exp(-s^2 k^2 / 2) = exp(-s^2 kx^2 / 2) exp(-s^2 ky^2 / 2): :func:`_phases` takes such a
    component into its 1-D factors, so no grid pass evaluates an exp for it.
    """
    rounds = rounds or (False,) * len(kinds)
    return {
        i: m[0, 0] for i, (k, m, rd) in enumerate(zip(kinds, ms, rounds)) if rd and k == "gaussian"
    }


def _phases(plan, off, kx, ky, cols, rows, gauss=()):
    """Separable phase x pixel factors: (exr, exi) (kf, n/2+1, 1) and (eyr, eyi) (m,).

    ``gauss``: s^2 of round Gaussian components, folded in as exp(-s^2 kx^2 / 2) and
    exp(-s^2 ky^2 / 2) (see :func:`separable_gaussians`).
    """
    n, kf, p = plan.n_fft, plan.k_fold, plan.scale
    h = kf * n // 2
    # Output pixel i sits at x = (i - (nx-1)/2) p: the centring joins the profile's offset.
    px = kx * (off[0] + 0.5 * (plan.nx - 1) * p)
    py = ky * (off[1] + 0.5 * (plan.ny - 1) * p)
    wx = jnp.asarray((np.abs(cols) < h)[:, :, None], kx.dtype)  # |kx| = h dk: beyond maxk
    wy = jnp.asarray(rows > -h, ky.dtype)  # the row ky = -h likewise
    if plan.pixel:
        wx = wx * jnp.sinc(kx * (0.5 * p / jnp.pi))  # jnp.sinc(x) = sin(pi x)/(pi x)
        wy = wy * jnp.sinc(ky * (0.5 * p / jnp.pi))
    for s2 in gauss:
        wx, wy = wx * jnp.exp(-0.5 * s2 * kx * kx), wy * jnp.exp(-0.5 * s2 * ky * ky)
    return wx * jnp.cos(px), -wx * jnp.sin(px), wy * jnp.cos(py), -wy * jnp.sin(py)


def _materialise(tree):
    """The (small) arrays of ``tree`` unchanged, but computed once by XLA CPU.

    XLA CPU fuses small producers (the 1-D phases: cosines, sines) into every grid-sized
    consumer and re-evaluates them per grid point (in the transposed tangent: per grid
    point and per parameter); ``jax.lax.optimization_barrier`` is removed before fusion on
    CPU. A reduction is a fusion boundary it keeps: a sum over a stacked zero. (Not for
    grid-sized arrays: there the extra pass costs more than the re-evaluation.)
    """
    return jax.tree_util.tree_map(lambda x: jnp.stack([x, jnp.zeros_like(x)], -1).sum(-1), tree)


def _linear(plan, tr, ti, ph, fuse=True):
    """The image (ny, nx) of the k-grid array tr + i ti (kf, n/2+1, m) times the phases."""
    n, kf = plan.n_fft, plan.k_fold
    h = kf * n // 2
    exr, exi, eyr, eyi = ph
    if kf == 1:
        # No zones to fold: one complex elementwise product, the grid's only consumer (with
        # several, XLA re-evaluates the grid inside each consumer's fusion).
        e = jax.lax.complex(eyr * exr[0] - eyi * exi[0], eyr * exi[0] + eyi * exr[0])
        t = tr[0] if ti is None else jax.lax.complex(tr[0], ti[0])
        folded = t * e
    else:
        if fuse:
            # Cheap closed forms: fold by adding the kf slices (no reduce op), so XLA CPU
            # fuses the whole grid evaluation into the adds; the grid's only consumer is one
            # complex product (with several, XLA re-evaluates the grid in each).
            add = lambda xs: functools.reduce(jnp.add, xs)  # noqa: E731
            t = tr if ti is None else jax.lax.complex(tr, ti)
            tc = t * jax.lax.complex(exr, exi)
            g = add([tc[a] for a in range(kf)]) * jax.lax.complex(eyr, eyi)
            folded = add([g[:, z * n : (z + 1) * n] for z in range(kf)])
        else:
            # Table look-ups: reductions, which materialise the grid once (re-evaluating the
            # gathers in fused consumers costs more). (A stacked (2, kf, n/2+1, m)
            # multiply-reduce fold was miscompiled by XLA CPU in float32 under vmap with
            # batch 1: test_render_speedpaths::test_vmap_batch_of_one_kfold.)
            if ti is None:
                # The zone sum as one batched matrix product (kf-long contractions): XLA
                # CPU's fused multiply-reductions of the grid cost ~9x more (128 x 2 plan:
                # 152 -> 17 us per image).
                e = jnp.stack([exr[..., 0], exi[..., 0]], -1)  # (kf, n/2+1, 2)
                cr, ci = jnp.einsum("aby,abk->kby", tr, e)
            else:
                cr = (tr * exr - ti * exi).sum(axis=0)
                ci = (tr * exi + ti * exr).sum(axis=0)
            g = jax.lax.complex(cr * eyr - ci * eyi, cr * eyi + ci * eyr)
            folded = g.reshape(g.shape[0], kf, n).sum(axis=1)
        # The ky zones are folded onto n bins; roll rows ky = -h .. onto FFT order.
        folded = jnp.roll(folded, -(h % n), axis=1)
    return image_from_folded(plan, folded)


def image_from_folded(plan, folded):
    """Image (ny, nx) of the folded k array (n/2+1, n) in FFT order (columns: ky bins)."""
    return inverse_fft_crop(folded, plan.n_fft, plan.ny, plan.nx)


def inverse_fft_crop(folded, n, ny, nx, ky_axis=1):
    """The image ``[:ny, :nx]`` of ``folded``, the half-plane k array (n/2+1 kx bins by n ky
    bins, or n by n/2+1 for ``ky_axis=0``), i.e. ``irfft2`` with kx as the real axis, computed
    in two 1-D stages: the ky transform along ``ky_axis`` (no transpose of the grid-sized
    input), then the real kx transform only for the ny rows kept. Paper Exponential x
    Gaussian 33 (n_fft 36-72): draw_batch 24.9 -> 22.6 ms per 1,024 (one XLA thread), random-n
    Sersic x Moffat 64: 175 -> 159 ms (in-process A/B, session 10).
    """
    rows = jnp.fft.ifft(folded, n, axis=ky_axis)
    rows = rows[:, :ny].T if ky_axis == 1 else rows[:ny]  # (ny, n/2+1)
    return jnp.fft.irfft(rows, n, axis=1)[:, :nx]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 6))
def factored_image(plan, kinds, c, off, ps, ms, rounds=()):
    """Image (ny, nx) of ``c exp(-i k.off) prod_i F_kinds[i](ps[i], k^T ms[i] k)``.

    Args:
      plan: the static :class:`~jaxsky.render.drawing.DrawPlan`.
      kinds: static tuple of radial kinds ('gaussian', 'exponential', 'sersic', 'moffat').
      c: scalar amplitude (flux units); off: (2,) offset in arcsec.
      ps: per component shape parameter (Sersic n, Moffat beta) or None.
      ms: per component (2, 2) quadratic form in arcsec^2.
      rounds: static bools, True where ``ms[i]`` is a multiple of the identity (then a
        table component is looked up on the rows ky >= 0 only: :func:`table_values`).
    """
    grid = _grid(plan)
    rounds = rounds or (False,) * len(kinds)
    gauss = separable_gaussians(kinds, ms, rounds)
    r = c
    for i, (kind, p, m) in enumerate(zip(kinds, ps, ms)):
        if i not in gauss:  # those go into the 1-D phases
            r = r * table_values(plan, grid, kind, m, rounds[i], p)[0]
    fuse = not any(k in _TABLES for k in kinds)
    return image_of_grid(plan, grid, off, r, fuse, tuple(gauss.values()))


def table_values(plan, grid, kind, m, round_, p, fn=None):
    """``fn(kind, p, k^T m k)`` on the grid (default :func:`radial_value`), as a tuple.

    A round table component (``round_``: ``m`` = s I, no cross term) has F(kx, -ky) =
    F(kx, ky), bit for bit: it is evaluated on the rows |ky| = 0 .. h only, written out
    once, and mirrored onto the grid's rows. Random-n Sersic x Moffat 64 (the PSF is round):
    one of the two look-ups at half the points.
    """
    fn = fn or (lambda kind, p, q: (radial_value(kind, p, q),))
    kx, ky, _, rows = grid
    if not (round_ and kind in _TABLES):
        return fn(kind, p, _quad(m, kx, ky))
    h = plan.k_fold * plan.n_fft // 2
    ky_half = jnp.asarray(np.arange(h + 1) * (2.0 * np.pi / (plan.n_fft * plan.scale)), ky.dtype)
    half = fn(kind, p, _quad(m, kx, ky_half))
    # Written out once: a reduction is a fusion boundary XLA CPU keeps (see _materialise;
    # x + x = 2x exactly). Without it XLA fuses the look-ups into the mirrored reads.
    half = [None if a is None else jnp.real(_materialise(jax.lax.complex(a, a))) for a in half]
    if plan.k_fold == 1:  # rows 0 .. h-1, then -h .. -1 (FFT order)
        mirror = lambda a: jnp.concatenate([a[..., :h], a[..., h:0:-1]], -1)  # noqa: E731
    else:  # rows -h .. h-1
        mirror = lambda a: jnp.concatenate([a[..., h:0:-1], a[..., :h]], -1)  # noqa: E731
    return tuple(None if a is None else mirror(a) for a in half)


def image_of_grid(plan, grid, off, r, fuse, gauss=()):
    """The image of the real k-grid array ``r`` (broadcast to the grid) at offset ``off``,
    times the round Gaussians ``gauss`` (s^2 each, see :func:`separable_gaussians`)."""
    kx, ky, cols, rows = grid
    r = jnp.broadcast_to(r, kx.shape[:2] + ky.shape)
    # The 1-D phases computed once: XLA CPU otherwise re-evaluates their cosines and sines at
    # every grid point (paper plans: 25 -> 15 us per image at n_fft 36, k_fold 2).
    ph = _materialise(_phases(plan, off, kx, ky, cols, rows, gauss))
    return _linear(plan, r, None, ph, fuse)


@factored_image.defjvp
def _factored_image_jvp(plan, kinds, rounds, primals, tangents):
    # The rule lives in _factored_grad (the tangent and the cost of its transpose).
    from jaxsky.render._factored_grad import factored_jvp

    return factored_jvp(plan, kinds, primals, tangents, rounds)
