"""Drawing profiles into pixel stamps that match ``galsim.GSObject.drawImage``.

Method (as GalSim's FFT drawing, Rowe et al. 2015 sec. 6): sample the profile's Fourier
transform (times the pixel's ``sinc(kx p/2) sinc(ky p/2)`` for ``method='auto'``) on a
grid with spacing ``dk = 2 pi / (n_fft p)`` out to ``k_fold`` Nyquist zones, fold the
zones onto one (aliasing is exactly what sampling at pixel centres does), and inverse-FFT.
The result is flux per pixel at pixel centres; the profile centre sits at the stamp's true
centre ``((nx-1)/2, (ny-1)/2)`` in 0-indexed pixels (between pixels for even sizes).

Profiles made of radial profiles by transforms and convolutions (every built-in profile
but sums) are drawn by ``_factored.factored_image``, whose hand-written JVP makes
``value_and_grad`` cost a few grid passes more than the forward draw (and keeps forward
mode). Sums take the general complex path with plain autodiff.

Array sizes must be static under ``jit``: they live in a :class:`DrawPlan`, computed from
concrete parameter values (or a batch / the extremes of the parameter ranges) by
:func:`make_plan`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky._cpu_pool import register_render_client, render_device
from jaxsky.render import _factored
from jaxsky.render._alias import alias_correction as _alias_correction
from jaxsky.render._base import GSObject
from jaxsky.render._checks import check_int, check_static_positive, is_concrete
from jaxsky.render._planning import GSParams, plan_sizes, plan_sizes_rings

# draw_batch renders on a CPU client of its own on small machines (see register_render_client).
register_render_client()

__all__ = [
    "DrawPlan",
    "GSParams",
    "make_plan",
    "plan_sizes",
    "draw",
    "draw_batch",
    "batch_axes",
]

_METHODS = ("auto", "fft", "no_pixel")


class DrawPlan(NamedTuple):
    """Static array sizes for :func:`draw` (hashable, so it can be a jit static argument)."""

    nx: int
    ny: int
    scale: float
    n_fft: int
    k_fold: int
    pixel: bool = True
    alias_rings: int = 3


def _check_method(method):
    if method not in _METHODS:
        raise ValueError(f"method={method!r} is not one of {_METHODS}")


def make_plan(
    obj: GSObject,
    nx: int,
    ny: int,
    scale: float,
    method: str = "auto",
    gsparams: GSParams | None = None,
) -> DrawPlan:
    """Choose static FFT sizes for ``obj`` (concrete values; a batched object plans for all).

    See :func:`plan_sizes` for the criteria. Warns when a profile needs more than the
    caps in ``gsparams`` allow (e.g. a galaxy far larger than its stamp).
    """
    check_int("nx", nx)
    check_int("ny", ny)
    scale = check_static_positive("scale", scale)
    _check_method(method)
    if not all(is_concrete(x) for x in jax.tree_util.tree_leaves(obj)):
        raise ValueError(
            "make_plan needs concrete parameter values: call it outside jit/vmap on an example "
            "(or batched) profile and pass plan= to draw"
        )
    n_fft, k_fold, ok, rings = plan_sizes_rings(obj, nx, ny, scale, gsparams)
    _warn_caps(ok, gsparams)
    return DrawPlan(
        nx=nx,
        ny=ny,
        scale=scale,
        n_fft=int(n_fft.max()),
        k_fold=int(k_fold.max()),
        pixel=method != "no_pixel",
        alias_rings=int(rings.max()),  # fewer rings suffice at a larger period: conservative
    )


def _warn_caps(ok, gsparams):
    bad = int(np.size(ok) - np.count_nonzero(ok))
    if bad:
        gsp = gsparams or GSParams()
        warnings.warn(
            f"jaxsky.draw: {bad} profile(s) need a larger FFT than max_fft_size="
            f"{gsp.max_fft_size} / max_k_fold={gsp.max_k_fold} allow (a galaxy far larger than "
            "its stamp, or no PSF to bound k); their stamps may miss the 1e-4 accuracy target. "
            "Use a larger stamp, convolve with a PSF, or raise the caps in GSParams.",
            stacklevel=3,
        )


def _fold(a, n, axis):
    """Sum the Nyquist zones of a centred axis of length k*n onto n bins in FFT order."""
    m = a.shape[axis]
    k = m // n
    shape = a.shape[:axis] + (k, n) + a.shape[axis + 1 :]
    s = a.reshape(shape).sum(axis=axis)
    return jnp.roll(s, -((m // 2) % n), axis=axis)


def _fold_columns(n, kf):
    """Integer kx of the columns that fold onto bins b = 0 .. n/2: shape (kf, n/2 + 1).

    Zone a holds kx = b + a n; the zones are those whose kx lie within [-h, h], h = kf n/2.
    Exactly kf of them do for every b (one of them at |kx| = h for b = 0 or n/2, which is
    beyond maxk and set to zero, as is the row ky = -h).
    """
    b = np.arange(n // 2 + 1)
    return b[None, :] + (np.arange(kf) - kf // 2)[:, None] * n


def _fold_rows(n, kf):
    """Integer ky of the rows that fold onto FFT bins b = 0 .. n-1: shape (kf, n).

    Row (a, b) holds the a-th of the kf values in [-h, h) congruent to b mod n, so summing
    over a folds the Nyquist zones straight into FFT order (no roll, one consumer).
    """
    h = kf * n // 2
    q0 = (np.arange(n) + h) % n - h
    return q0[None, :] + np.arange(kf)[:, None] * n


@functools.partial(jax.jit, static_argnums=1)
def _draw_core(obj, plan: DrawPlan):
    n, kf, p = plan.n_fft, plan.k_fold, plan.scale
    m = kf * n  # n is even (a size class), so m is even
    h = m // 2
    dtype = jnp.result_type(float)
    dk = 2.0 * jnp.pi / (n * p)
    terms = obj._kterms()
    if terms is not None:
        # Radial profiles, transformed and convolved: the factored draw whose JVP
        # transposes into a few grid passes (see _factored and _transpose).
        c, off, comps = terms
        kinds = tuple(t[0] for t in comps)
        img = _factored.factored_image(
            plan,
            kinds,
            c,
            off,
            tuple(t[1] for t in comps),
            tuple(t[2] for t in comps),
            tuple(t[3] for t in comps),
        )
        if plan.alias_rings:
            img = img - _alias_correction(obj, plan)
        return img.astype(dtype)
    # General (complex) path.
    k = (jnp.arange(m, dtype=dtype) - h) * dk  # -h .. h-1
    kpos = k[h:]  # 0 .. h-1
    # Output pixel i sits at x = (i - (nx-1)/2) p: a separable phase; times the pixel's sinc.
    ex = jnp.exp(-1j * kpos * (0.5 * (plan.nx - 1) * p))
    ey = jnp.exp(-1j * k * (0.5 * (plan.ny - 1) * p))
    if plan.pixel:
        ex = ex * jnp.sinc(kpos * (0.5 * p / jnp.pi))  # jnp.sinc(x) = sin(pi x)/(pi x)
        ey = ey * jnp.sinc(k * (0.5 * p / jnp.pi))
    # The image is real, so its transform is Hermitian: evaluate kx >= 0 only and mirror,
    # G(-kx, -ky) = conj G(kx, ky). The outermost row/column (k = -h dk, beyond maxk) is 0.
    half = obj.kvalue(kpos[None, :], k[:, None]) * ex[None, :] * ey[:, None]
    half = half.at[0, :].set(0.0)
    rows = (m - jnp.arange(m)) % m  # row of -ky
    neg = jnp.conj(half[rows, 1:][:, ::-1])
    full = jnp.concatenate([jnp.zeros((m, 1), half.dtype), neg, half], axis=1)
    folded = _fold(_fold(full, n, 0), n, 1)
    img = _factored.inverse_fft_crop(folded[:, : n // 2 + 1], n, plan.ny, plan.nx, ky_axis=0)
    if plan.alias_rings:
        img = img - _alias_correction(obj, plan)
    return img.astype(dtype)


def draw(
    obj: GSObject,
    *,
    nx: int,
    ny: int,
    scale: float,
    method: str = "auto",
    plan: DrawPlan | None = None,
    gsparams: GSParams | None = None,
):
    """Render ``obj`` as a float array (ny, nx) of flux per pixel; matches GalSim's ``drawImage``.

    Args:
      obj: any jaxsky profile (sums, convolutions and transforms included).
      nx, ny: stamp size in pixels (static).
      scale: pixel scale in arcsec/pixel (static).
      method: ``'auto'``/``'fft'`` (convolve with the pixel, as GalSim does) or ``'no_pixel'``.
      plan: static FFT sizes; required when ``obj`` holds traced values (inside jit/vmap):
        build it outside with :func:`make_plan` on an example or on a batch of profiles.
      gsparams: accuracy settings used when the plan is made here.
    """
    _check_method(method)
    if plan is None:
        if not all(is_concrete(x) for x in jax.tree_util.tree_leaves(obj)):
            raise ValueError(
                "jaxsky.draw inside jit/vmap needs a static plan: build it outside with "
                "plan = jaxsky.make_plan(example_or_batched_profile, nx, ny, scale) "
                "and pass plan=plan"
            )
        plan = make_plan(obj, nx, ny, scale, method, gsparams)
    else:
        if (plan.nx, plan.ny) != (nx, ny) or not math.isclose(plan.scale, float(scale)):
            raise ValueError(
                f"plan is for nx={plan.nx}, ny={plan.ny}, scale={plan.scale}; "
                f"got nx={nx}, ny={ny}, scale={scale}"
            )
        if plan.pixel != (method != "no_pixel"):
            raise ValueError(f"plan.pixel={plan.pixel} does not match method={method!r}")
    return _draw_core(obj, plan)


_CORE_NDIM = {"jac": 2, "offset": 1}


def batch_flags(obj) -> tuple[bool, ...]:
    """For each leaf (flatten order): does it carry a leading batch axis?"""
    flags = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(obj)[0]:
        name = getattr(path[-1], "name", "")
        flags.append(bool(np.ndim(leaf) > _CORE_NDIM.get(name, 0)))
    return tuple(flags)


def batch_axes(obj):
    """``in_axes`` for ``jax.vmap`` over a batched profile: 0 for batched leaves, else None."""
    return jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(obj), [0 if f else None for f in batch_flags(obj)]
    )


def draw_batch(
    objs: GSObject,
    *,
    nx: int,
    ny: int,
    scale: float,
    method: str = "auto",
    plan: DrawPlan | None = None,
    gsparams: GSParams | None = None,
    chunk_size: int = 32,
):
    """Render a batch: ``objs`` is one profile whose leaves carry a leading batch axis.

    Leaves without the batch axis (e.g. a fixed PSF) are shared. Returns (B, ny, nx).
    Without ``plan``, each galaxy gets the FFT sizes it needs (:func:`plan_sizes`) and the
    batch is drawn in groups of equal sizes, so small galaxies do not pay for large ones.
    Each group runs in fixed-size chunks of ``chunk_size`` (one compiled program per
    distinct plan), so the per-image cost does not grow with the batch size.
    """
    _check_method(method)
    check_int("chunk_size", chunk_size)
    flags = batch_flags(objs)
    leaves, tree = jax.tree_util.tree_flatten(objs)
    sizes = {np.shape(x)[0] for x, f in zip(leaves, flags) if f}
    if len(sizes) != 1:
        raise ValueError(f"batched leaves must share one leading size, got {sorted(sizes)}")
    (nbatch,) = sizes
    # Batched leaves go to the host once; every chunk is dispatched before any result is
    # read back, so host-side planning and slicing overlap the asynchronous device work.
    leaves = [np.asarray(x) if f else x for x, f in zip(leaves, flags)]
    device = render_device()
    if device is not None:  # shared leaves moved once; numpy chunks follow (default_device)
        leaves = [x if f else jax.device_put(x, device) for x, f in zip(leaves, flags)]
    if plan is not None:
        groups = [(plan, np.arange(nbatch))]
    else:
        host = jax.tree_util.tree_unflatten(tree, leaves)
        groups = _stream_groups(host, nx, ny, scale, method, gsparams, nbatch, chunk_size)
    dtype = jnp.result_type(float)
    out = np.empty((nbatch, ny, nx), dtype=dtype)
    pending = []
    # XLA CPU programs get their own compile options (see _draw_chunk_cpu).
    on_cpu = device is not None or jax.default_backend() == "cpu"
    draw_chunk = _draw_chunk_cpu if on_cpu else _draw_chunk_other
    with jax.default_device(device) if device is not None else contextlib.nullcontext():
        for gplan, idx in groups:
            # Small groups use a smaller power-of-two chunk (less padding, a few more
            # programs), and so do large grids (see _grid_chunk).
            chunk = min(
                chunk_size, 1 << max(0, int(np.ceil(np.log2(len(idx))))), _grid_chunk(gplan)
            )
            for start in range(0, len(idx), chunk):
                sel = idx[start : start + chunk]
                pad = np.concatenate([sel, np.full(chunk - len(sel), sel[-1])])
                sub = [x[pad] if f else x for x, f in zip(leaves, flags)]
                imgs = draw_chunk(jax.tree_util.tree_unflatten(tree, sub), flags, gplan)
                pending.append((sel, imgs))
    for sel, imgs in pending:
        out[sel] = np.asarray(imgs)[: len(sel)]
    return jnp.asarray(out)


# Wave-number grid points per compiled chunk (all its galaxies together). Beyond ~2^18 the
# chunk's grids leave the CPU caches and the per-image cost grows with the chunk: single
# core, random-n Sersic x Moffat 64, plan (n_fft 192, k_fold 2, 74.5k points per image):
# 1.17 / 1.27 / 2.42 ms per image at 1 / 4 / 32 per chunk; (128, 2): 0.54 / 0.63 / 1.00 ms at
# 1 / 8 / 32; (64, 2), 8.4k points: flat from 1 to 32.
_GRID_BUDGET = 1 << 18


def _grid_chunk(plan):
    """Largest power-of-two chunk whose grids total at most ``_GRID_BUDGET`` points (>= 1)."""
    points = plan.k_fold**2 * (plan.n_fft // 2 + 1) * plan.n_fft
    return 1 << max(0, int(np.floor(np.log2(_GRID_BUDGET / points))))


# Galaxies planned per block when streaming: the host plans one block while the device
# draws the one before, so a block's drawing should take about as long as planning the next
# (paper Exponential x Gaussian 33, 1,024 stamps, NPROC=1: blocks of 256 / 512 / 1,024 ->
# 30.5 / 27.7 / 39 ms per call; random-n Sersic x Moffat 64 with 512: 155-161 ms).
_PLAN_BLOCK = 512


def _stream_groups(objs, nx, ny, scale, method, gsparams, nbatch, chunk, block=None):
    """Yield (plan, indices) as blocks of the batch are planned (numpy leaves).

    Every galaxy of a block is yielded before the next block is planned, so the device draws
    a block while the host plans the next. Within a block, a plan needed by fewer than
    ``chunk`` galaxies joins the next larger one (:func:`_merge_groups`); each group comes in
    whole chunks of ``chunk`` and one remainder (drawn in a power-of-two chunk). Holding
    remainders back across blocks to fill chunks (session 8) left the device idle while the
    host planned, then a long tail of chunks after it (1,024 stamps, NPROC=1, measured with
    exact per-galaxy plans: paper 34.8 -> 28.5 ms, random-n 170 -> 155 ms).
    """
    scale = check_static_positive("scale", scale)
    block = block or _PLAN_BLOCK
    flags = batch_flags(objs)
    leaves, tree = jax.tree_util.tree_flatten(objs)
    ok_all = np.ones(nbatch, bool)
    for start in range(0, nbatch, block):
        ids = np.arange(start, min(nbatch, start + block))
        sub = jax.tree_util.tree_unflatten(
            tree, [x[ids] if f else x for x, f in zip(leaves, flags)]
        )
        n_fft, k_fold, ok, rings = plan_sizes_rings(sub, nx, ny, scale, gsparams)
        ok_all[ids] = ok
        n_fft, k_fold, rings = (np.broadcast_to(a, ids.shape) for a in (n_fft, k_fold, rings))
        # Plans with fewer than ``chunk`` galaxies in the block join the next larger size
        # class (as _group_by_plan): fewer compiled programs. Demo (512 random-n stamps at
        # tight accuracy): first call 36 -> 12 s, then 1,800 -> 1,560 images/s; 1,024 paper
        # or random-n stamps: no change beyond the noise (24-30 / 167 ms).
        merged = _merge_groups(nx, ny, scale, method, n_fft, k_fold, rings, ids, chunk)
        for plan, mine in merged.items():
            full = len(mine) - len(mine) % chunk
            if full:
                yield plan, mine[:full]
            if full < len(mine):
                yield plan, mine[full:]
    _warn_caps(ok_all, gsparams)


def _group_by_plan(objs, nx, ny, scale, method, gsparams, nbatch, min_group):
    scale = check_static_positive("scale", scale)
    n_fft, k_fold, ok, rings = plan_sizes_rings(objs, nx, ny, scale, gsparams)
    _warn_caps(ok, gsparams)
    n_fft, k_fold, rings = (np.broadcast_to(a, (nbatch,)) for a in (n_fft, k_fold, rings))
    return _merge_groups(nx, ny, scale, method, n_fft, k_fold, rings, np.arange(nbatch), min_group)


def _merge_groups(nx, ny, scale, method, n_fft, k_fold, rings, ids, min_group):
    """{plan: indices} for galaxies ``ids`` with the given sizes, small groups merged."""
    # Positions into ``ids`` while merging; the galaxies' own indices at the end.
    pos = np.arange(len(ids))
    # A size class with fewer than ``min_group`` galaxies joins the next larger one.
    merged = []
    for kf in np.unique(k_fold):
        members = [(c, pos[(n_fft == c) & (k_fold == kf)]) for c in np.unique(n_fft)]
        merged += [(int(c), int(kf), idx) for c, idx in _merge_small(members, min_group)]
    # Split each group by the rings of copies its members need corrected (fewer rings,
    # cheaper draws); a ring count with fewer than ``min_group`` members joins the next
    # larger one. Merged members needed their rings at a smaller period: conservative.
    groups = {}
    for c, kf, idx in merged:
        for r, sub in _merge_small(
            [(r, idx[rings[idx] == r]) for r in range(int(rings.max()) + 1)], min_group
        ):
            groups[DrawPlan(nx, ny, scale, c, kf, method != "no_pixel", r)] = ids[sub]
    return groups


def _merge_small(members, min_group):
    """[(key, idx)] in increasing key order -> merged so each has >= min_group (but the last)."""
    members = [(k, idx) for k, idx in members if len(idx)]
    out, carry = [], np.array([], dtype=int)
    for i, (k, idx) in enumerate(members):
        idx = np.concatenate([carry, idx])
        if len(idx) < min_group and i < len(members) - 1:
            carry = idx
            continue
        out.append((k, np.sort(idx)))
        carry = np.array([], dtype=int)
    return out


def _chunk_images(objs, flags, plan):
    axes = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(objs), [0 if f else None for f in flags]
    )  # flags, not batch_axes(objs): inside jit the padded leaves are tracers
    return jax.vmap(lambda o: _draw_core(o, plan), in_axes=(axes,))(objs)


# XLA CPU spreads each FFT (and Eigen matrix product) over its whole thread pool unless
# xla_cpu_multi_thread_eigen is off. A chunk's FFTs are short (paper plans: 800 of length
# 36-72), and the hand-offs cost more than they gain: a batched ifft of (32, 25, 48) took
# 119 us with NPROC=8 on 2 cores and 69 us with the option off (64 us with NPROC=1); paper
# draw_batch 27.6 -> 25.5 and 27.8 -> 26.0 ms per 1,024, random-n Sersic x Moffat 64 165 ->
# 164 ms (in-process A/B, session 11). Given on CPU only (other backends have no such pool).
_draw_chunk_cpu = jax.jit(
    _chunk_images, static_argnums=(1, 2), compiler_options={"xla_cpu_multi_thread_eigen": False}
)
_draw_chunk_other = jax.jit(_chunk_images, static_argnums=(1, 2))
