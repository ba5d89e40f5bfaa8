"""Drawing profiles into pixel stamps that match ``galsim.GSObject.drawImage``.

Method (as GalSim's FFT drawing, Rowe et al. 2015 sec. 6): sample the profile's Fourier
transform (times the pixel's ``sinc(kx p/2) sinc(ky p/2)`` for ``method='auto'``) on a
grid with spacing ``dk = 2 pi / (n_fft p)`` out to ``k_fold`` Nyquist zones, fold the
zones onto one (aliasing is exactly what sampling at pixel centres does), and inverse-FFT.
The result is flux per pixel at pixel centres; the profile centre sits at the stamp's true
centre ``((nx-1)/2, (ny-1)/2)`` in 0-indexed pixels (between pixels for even sizes).

Array sizes must be static under ``jit``: they live in a :class:`DrawPlan`, computed from
concrete parameter values (or a batch / the extremes of the parameter ranges) by
:func:`make_plan`.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.render._base import GSObject
from jaxsky.render._checks import check_int, check_static_positive, is_concrete

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


class GSParams(NamedTuple):
    """Accuracy knobs for planning the static FFT sizes (jaxsky's own meanings).

    alias_threshold: light from the periodic copies of the profile (FFT wrap-around) allowed
      in any stamp pixel, as a fraction of the stamp's peak.
    alias_flux_threshold: the same light summed over the stamp, as a fraction of its flux.
    maxk_threshold: |F(k)| / flux below which wave-numbers are dropped (GalSim's meaning).
    far_field_error: coefficient k of the assumed relative error k (size / distance)^2 of the
      real-space (far-field) estimate of the wrap-around light from the nearest periodic
      copies, which :func:`draw` subtracts (size: the profile's summed squared sizes).
    alias_rings: how many rings of periodic copies (8, 24, 48 copies for 1, 2, 3) to subtract.
    max_fft_size: largest FFT period in pixels; larger needs are capped with a warning.
    max_k_fold: largest number of Nyquist zones folded per axis; capped with a warning.
    """

    alias_threshold: float = 1e-5
    alias_flux_threshold: float = 1e-5
    maxk_threshold: float = 1e-5
    far_field_error: float = 1.0
    alias_rings: int = 3
    max_fft_size: int = 4096
    max_k_fold: int = 16


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


# FFT sizes 2^a 3^b with a >= 1 (even, steps of ~12%, fast for FFT libraries): plans use
# only these, so that few distinct programs get compiled.
_SIZE_CLASSES = np.array(
    sorted({2**a * 3**b for a in range(1, 15) for b in range(0, 9) if 2**a * 3**b <= 2**15})
)


def _peak_sb(obj, scale):
    """Estimate of the stamp's peak surface brightness (for relative error budgets)."""
    from jaxsky.render.compound import Convolution

    if isinstance(obj, Convolution):
        a, rest = obj.objs[0], obj.objs[1:]
        b = rest[0] if len(rest) == 1 else Convolution(list(rest))
        # (A * B)(0) = int A(y) B(y) d^2y for a symmetric B, on circularised profiles.
        r = np.geomspace(1e-6, 1e4, 1200)[:, None]
        integrand = a._sb_np(r, False) * b._sb_np(r, False) * 2 * np.pi * r * r
        return np.trapezoid(integrand, np.log(r[:, 0]), axis=0)
    rp = scale / math.sqrt(math.pi)  # disk with the area of one pixel
    return np.abs(np.asarray(obj.flux, float)) * obj._enclosed_np(rp) / (math.pi * rp * rp)


def plan_sizes(obj, nx, ny, scale, gsparams=None):
    """Per-profile static sizes: (n_fft, k_fold, ok) arrays over the batch (or scalars).

    ``n_fft`` is the smallest FFT period (pixels, one of the size classes) whose wrap-around
    light stays below ``alias_threshold`` of the peak pixel and ``alias_flux_threshold`` of
    the stamp flux. That light is estimated from the profile's real-space wings at the 80
    nearest periodic copies (the ``alias_rings`` nearest rings counted only by the error of
    the far-field correction that :func:`draw` subtracts) plus the flux beyond them.
    ``k_fold`` covers wave-numbers out to where ``|F| / flux < maxk_threshold``.
    ``ok`` is False where the caps in ``gsparams`` were hit.
    """
    gsp = gsparams or GSParams()
    # Candidate periods: the size classes from the stamp up to the cap (at least one).
    above = _SIZE_CLASSES[_SIZE_CLASSES >= max(nx, ny)]
    cand = np.concatenate([above[:1], above[1:][above[1:] <= gsp.max_fft_size]])
    cx, cy = 0.5 * nx * scale, 0.5 * ny * scale
    js = np.array([(i, j) for i in range(-4, 5) for j in range(-4, 5) if (i, j) != (0, 0)])
    corrected = (np.max(np.abs(js), axis=1) <= gsp.alias_rings)[:, None]
    size2 = np.asarray(obj._size2_np(), float).reshape(-1)
    flux = np.abs(np.asarray(obj.flux, float)).reshape(-1)
    with np.errstate(all="ignore"):
        peak = np.asarray(_peak_sb(obj, scale)).reshape(-1)
        stamp_flux = flux * np.asarray(obj._enclosed_np(np.array([[min(cx, cy)]]))).reshape(-1)
    grid = [(a * cx, b * cy) for a in (-0.7, 0, 0.7) for b in (-0.7, 0, 0.7)]

    def residual(period, px, py):
        """Wrap-around SB left after the correction, seen from stamp point (px, py)."""
        d = np.hypot(np.abs(js[:, :1] * period - px), np.abs(js[:, 1:] * period - py))  # (80, B)
        sb = np.asarray(obj._sb_np(d, True))
        # Subtracted copies leave the far-field approximation's error, ~ (size / distance)^2.
        eps = np.minimum(1.0, gsp.far_field_error * size2 / np.maximum(d, 1e-12) ** 2)
        return (np.where(corrected, eps, 1.0) * sb).sum(axis=0)

    def ok(period):
        with np.errstate(all="ignore"):
            far = 4.5 * period - max(cx, cy)
            beyond = flux * np.clip(1.0 - np.asarray(obj._enclosed_np(far)), 0, 1) / period**2
            # Peak: each copy at its closest approach to the stamp (an upper bound).
            worst = residual(period, cx * np.sign(js[:, :1]), cy * np.sign(js[:, 1:]))
            # Flux: the mean over a 3 x 3 grid of stamp points.
            mean = sum(residual(period, gx, gy) for gx, gy in grid) / len(grid)
            return ((worst + beyond) <= gsp.alias_threshold * peak) & (
                (mean + beyond) * (4 * cx * cy) <= gsp.alias_flux_threshold * stamp_flux
            )

    # The residual falls with the period: bisect over the candidate sizes, per profile.
    nb = max(len(peak), len(size2), len(flux))
    lo, hi = np.zeros(nb, int), np.full(nb, len(cand) - 1)
    fits = ok(np.broadcast_to(cand[hi] * scale, (nb,)))
    for _ in range(int(np.ceil(np.log2(len(cand)))) + 1):
        mid = (lo + hi) // 2
        good = ok(cand[mid] * scale)
        hi = np.where(good, mid, hi)
        lo = np.where(good, lo, np.minimum(mid + 1, hi))
    n_fft = cand[hi]
    maxk = np.asarray(obj._maxk_np(gsp.maxk_threshold), float).reshape(-1)
    k_fold = np.maximum(1, np.ceil(maxk * scale / math.pi)).astype(int)
    k_ok = k_fold <= gsp.max_k_fold
    k_fold = np.minimum(k_fold, gsp.max_k_fold)
    return np.broadcast_arrays(n_fft, k_fold, fits & k_ok)


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
    n_fft, k_fold, ok = plan_sizes(obj, nx, ny, scale, gsparams)
    _warn_caps(ok, gsparams)
    return DrawPlan(
        nx=nx,
        ny=ny,
        scale=scale,
        n_fft=int(n_fft.max()),
        k_fold=int(k_fold.max()),
        pixel=method != "no_pixel",
        alias_rings=(gsparams or GSParams()).alias_rings,
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


@functools.partial(jax.jit, static_argnums=1)
def _draw_core(obj, plan: DrawPlan):
    n, kf, p = plan.n_fft, plan.k_fold, plan.scale
    m = kf * n  # n is even (a size class), so m is even
    h = m // 2
    dtype = jnp.result_type(float)
    dk = 2.0 * jnp.pi / (n * p)
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
    img = jnp.fft.irfft2(folded[:, : n // 2 + 1], s=(n, n))[: plan.ny, : plan.nx]
    if plan.alias_rings:
        img = img - _alias_correction(obj, plan)
    return img.astype(dtype)


def _alias_correction(obj, plan: DrawPlan):
    """Light the FFT wraps into the stamp from the nearest periodic copies (flux/pixel).

    The FFT image is the periodic sum  sum_j I(x + j L);  the copies are far from the
    stamp, where the profile is smooth, so their surface brightness (times the pixel area)
    comes from the profile's real-space far field. It is smooth across the stamp, so it is
    evaluated on a coarse grid and interpolated (Catmull-Rom, in log space).
    """
    p, period = plan.scale, plan.n_fft * plan.scale
    dtype = jnp.result_type(float)
    wx, xc = _coarse_interp(plan.nx, p)
    wy, yc = _coarse_interp(plan.ny, p)
    r = plan.alias_rings
    shifts = np.array([(i, j) for i in range(-r, r + 1) for j in range(-r, r + 1) if i or j])
    xs = jnp.asarray(xc[None, None, :] + shifts[:, :1, None] * period, dtype)  # (C, 1, mx)
    ys = jnp.asarray(yc[None, :, None] + shifts[:, 1:, None] * period, dtype)  # (C, my, 1)
    total = obj.far_xvalue(xs, ys).sum(axis=0)
    tiny = jnp.finfo(dtype).tiny
    log_a = jnp.log(jnp.maximum(total, tiny))
    fine = jnp.asarray(wy, dtype) @ log_a @ jnp.asarray(wx, dtype).T
    return jnp.exp(fine) * (p * p)


@functools.lru_cache(maxsize=64)
def _coarse_interp(n: int, p: float, step: int = 6):
    """Coarse pixel-centre positions and the (n, m) Catmull-Rom matrix onto all n pixels."""
    x = (np.arange(n) - 0.5 * (n - 1)) * p
    m = max(2, int(np.ceil((n - 1) / step)) + 1)
    if m >= n:
        return np.eye(n), x
    xc = np.linspace(x[0], x[-1], m)
    t = (x - xc[0]) / (xc[1] - xc[0])
    i0 = np.clip(np.floor(t).astype(int), 0, m - 2)
    u = t - i0
    w = np.zeros((n, m))
    # Catmull-Rom weights for nodes i0-1, i0, i0+1, i0+2 (ends clamped).
    coeffs = [
        -0.5 * u**3 + u**2 - 0.5 * u,
        1.5 * u**3 - 2.5 * u**2 + 1,
        -1.5 * u**3 + 2 * u**2 + 0.5 * u,
        0.5 * u**3 - 0.5 * u**2,
    ]
    for off, c in zip((-1, 0, 1, 2), coeffs):
        np.add.at(w, (np.arange(n), np.clip(i0 + off, 0, m - 1)), c)
    return w, xc


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
    if plan is not None:
        groups = {plan: np.arange(nbatch)}
    else:
        groups = _group_by_plan(objs, nx, ny, scale, method, gsparams, nbatch, chunk_size)
    dtype = jnp.result_type(float)
    out = np.empty((nbatch, ny, nx), dtype=dtype)
    for gplan, idx in groups.items():
        # Small groups use a smaller power-of-two chunk (less padding, a few more programs).
        chunk = min(chunk_size, 1 << max(0, int(np.ceil(np.log2(len(idx))))))
        for start in range(0, len(idx), chunk):
            sel = idx[start : start + chunk]
            pad = np.concatenate([sel, np.full(chunk - len(sel), sel[-1])])
            sub = [np.asarray(x)[pad] if f else x for x, f in zip(leaves, flags)]
            imgs = _draw_chunk(jax.tree_util.tree_unflatten(tree, sub), flags, gplan)
            out[sel] = np.asarray(imgs)[: len(sel)]
    return jnp.asarray(out)


def _group_by_plan(objs, nx, ny, scale, method, gsparams, nbatch, min_group):
    scale = check_static_positive("scale", scale)
    n_fft, k_fold, ok = plan_sizes(objs, nx, ny, scale, gsparams)
    _warn_caps(ok, gsparams)
    n_fft = np.broadcast_to(n_fft, (nbatch,))
    k_fold = np.broadcast_to(k_fold, (nbatch,))
    # A size class with fewer than ``min_group`` galaxies joins the next larger one.
    merged = []
    for kf in np.unique(k_fold):
        members = [(c, np.flatnonzero((n_fft == c) & (k_fold == kf))) for c in np.unique(n_fft)]
        members = [(c, idx) for c, idx in members if len(idx)]
        carry = np.array([], dtype=int)
        for i, (c, idx) in enumerate(members):
            idx = np.concatenate([carry, idx])
            if len(idx) < min_group and i < len(members) - 1:
                carry = idx
                continue
            merged.append((int(c), int(kf), np.sort(idx)))
            carry = np.array([], dtype=int)
    rings = (gsparams or GSParams()).alias_rings
    return {
        DrawPlan(nx, ny, scale, c, kf, method != "no_pixel", rings): idx for c, kf, idx in merged
    }


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw_chunk(objs, flags, plan):
    axes = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(objs), [0 if f else None for f in flags]
    )  # flags, not batch_axes(objs): inside jit the padded leaves are tracers
    return jax.vmap(lambda o: _draw_core(o, plan), in_axes=(axes,))(objs)
