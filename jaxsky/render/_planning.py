"""Planning the static FFT sizes of a draw (numpy, on the host, per profile of a batch).

The wrap-around criteria are those of :func:`plan_sizes`; this module evaluates them fast:
the profile's leaves are turned into numpy once, every stamp point and periodic copy of
one candidate period is evaluated in a single vectorised call, and the search over the
candidate periods only re-tests the profiles that are still undecided (a linear then
galloping scan from the smallest period, then a bisection inside the bracket). The copies'
distances are computed once per call, the light at each profile's chosen period is kept
for the (costly) saddle-light test, and per-object constants (singular values, shifts,
Sersic b_n) are memoised on the profile objects and carried into sub-batches.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import numpy as np

from jaxsky.render._base import GSObject
from jaxsky.render.profiles import _inplace

__all__ = ["GSParams", "plan_sizes", "plan_sizes_rings", "SIZE_CLASSES"]

# FFT sizes 2^a 3^b with a >= 1 (even, steps of ~12%, fast for FFT libraries): plans use
# only these, so that few distinct programs get compiled.
SIZE_CLASSES = np.array(
    sorted({2**a * 3**b for a in range(1, 15) for b in range(0, 9) if 2**a * 3**b <= 2**15})
)

# The 80 nearest periodic copies (4 rings), and
_JS = np.array([(i, j) for i in range(-4, 5) for j in range(-4, 5) if (i, j) != (0, 0)])
# the 3 x 3 grid of stamp points (in units of the stamp's half-sizes) over which the wrapped
# light is averaged. The copies are symmetric under x -> -x and y -> -y and the residual
# depends only on distance, so the grid reduces to 4 points with weights 1, 2, 2, 4 (of 9).
_GRID = np.array([(0.0, 0.0), (0.7, 0.0), (0.0, 0.7), (0.7, 0.7)])
_GRID_W = np.array([1.0, 2.0, 2.0, 4.0]) / 9.0


class GSParams(NamedTuple):
    """Accuracy knobs for planning the static FFT sizes (jaxsky's own meanings).

    alias_threshold: light from the periodic copies of the profile (FFT wrap-around) allowed
      in any stamp pixel, as a fraction of the stamp's peak.
    alias_flux_threshold: the same light summed over the stamp, as a fraction of its flux.
    maxk_threshold: |F(k)| / flux below which wave-numbers are dropped (GalSim's meaning).
    far_field_error: coefficient k of the assumed relative error k (size / distance)^2 of the
      real-space (far-field) estimate of the wrap-around light from the nearest periodic
      copies, which :func:`draw` subtracts (size: the profile's summed squared sizes).
    alias_rings: at most how many rings of periodic copies (8, 24, 48 copies for 1, 2, 3) to
      subtract; the planner uses the fewest rings that meet the two alias thresholds.
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


def _peak_sb(obj, scale):
    """Estimate of the stamp's peak surface brightness (for relative error budgets)."""
    from jaxsky.render.compound import Convolution

    if isinstance(obj, Convolution):
        a, rest = obj.objs[0], obj.objs[1:]
        b = rest[0] if len(rest) == 1 else Convolution(list(rest))
        # (A * B)(0) = int A(y) B(y) d^2y for a symmetric B, on circularised profiles.
        # Trapezoid in ln r converges fast here: 24 points per decade agree with 1200 to 1e-9,
        # 12 (used: it is only an error budget's scale) to ~1e-5.
        r = np.geomspace(1e-6, 1e4, 121)[:, None]
        y = b._sb_np(r, False)
        # Past B's last nonzero row (a wing underflowed to 0) the integrand is 0: A is only
        # evaluated up to the row after it (the trapezoid's last nonzero segment), and the sum
        # (row by row, in order) is unchanged. In place: the plain expressions' values.
        nonzero = np.flatnonzero(np.any(y != 0, axis=tuple(range(1, np.ndim(y)))))
        top = min(len(r), nonzero[-1] + 2 if len(nonzero) else 2)
        r, y = r[:top], y[:top]
        y = _inplace(np.multiply, y, a._sb_np(r, False), swap=True)  # A * B
        for f in (2, np.pi, r, r):
            y *= f
        # np.trapezoid(y, ln r, axis=0), written out
        seg = y[1:] + y[:-1]
        seg *= np.diff(np.log(r[:, 0])).reshape((-1,) + (1,) * (seg.ndim - 1))
        seg /= 2.0
        return seg.sum(axis=0)
    rp = scale / math.sqrt(math.pi)  # disk with the area of one pixel
    return np.abs(np.asarray(obj.flux, float)) * obj._enclosed_np(rp) / (math.pi * rp * rp)


def _batch_flags(obj):
    from jaxsky.render.drawing import batch_flags

    return batch_flags(obj)


def _take(obj, flags, idx):
    """The sub-batch ``idx`` of a numpy-leaved profile (shared leaves kept), with the planning
    constants memoised on its parts (``profiles._np_memo``) taken alike."""
    leaves, tree = jax.tree_util.tree_flatten(obj)
    sub = jax.tree_util.tree_unflatten(tree, [x[idx] if f else x for x, f in zip(leaves, flags)])
    _take_memos(obj, sub, idx)
    return sub


def _take_memos(src, dst, idx):
    memo = src.__dict__.get("_np_memo_")
    if memo:  # (value, core): batched values have dimensions before their core ones
        dst.__dict__["_np_memo_"] = {
            k: (v[idx] if np.ndim(v) > core else v, core) for k, (v, core) in memo.items()
        }
    for field in src._leaves:
        a, b = getattr(src, field), getattr(dst, field)
        for x, y in zip(a, b) if isinstance(a, (tuple, list)) else [(a, b)]:
            if isinstance(x, GSObject):
                _take_memos(x, y, idx)


@functools.lru_cache(maxsize=64)
def _unique_points(cx, cy):
    """The distinct (copy, stamp point) pairs of the alias test, with their weights.

    Pairs: each of the 80 copies at its closest approach to the stamp, and at the 4 grid
    points. The distance |j P - x| at every period P is unchanged by (jx, x) -> -(jx, x),
    likewise in y, and (for a square stamp) by swapping x and y, so the 400 pairs reduce
    to ~120 distinct ones (an exact rewrite: the sums are the same up to rounding).
    Returns jx, jy, px, py, ring as (U, 1) columns and weights (2, U) for the worst-case
    sum and the grid mean.
    """
    pts = [(cx * np.sign(_JS[:, 0]), cy * np.sign(_JS[:, 1]), 0, 1.0)]
    pts += [(np.full(80, g[0] * cx), np.full(80, g[1] * cy), 1, w) for g, w in zip(_GRID, _GRID_W)]
    table = {}
    for pxs, pys, row, w in pts:
        for (jx, jy), px, py in zip(_JS.tolist(), pxs.tolist(), pys.tolist()):
            ax, ay = _canon(jx, px), _canon(jy, py)
            key = tuple(sorted((ax, ay))) if cx == cy else (ax, ay)
            table.setdefault(key, np.zeros(2))[row] += w
    keys = list(table)
    cols = np.array([(a[0], b[0], a[1], b[1]) for a, b in keys], float)  # jx, jy, px, py
    ring = np.maximum(np.abs(cols[:, 0]), np.abs(cols[:, 1]))
    weights = np.stack([table[k] for k in keys], axis=1)
    # Grouped by ring, each ring one contiguous slice; the sort is stable, so the order within
    # a ring (and every sum over it) is unchanged.
    order = np.argsort(ring, kind="stable")
    cols, ring, weights = cols[order], ring[order], weights[:, order]
    return (*(c[:, None] for c in cols.T), ring[:, None], weights)


def _canon(j, x):
    return (-j, -x) if (j < 0 or (j == 0 and x < 0)) else (j, x)


def _no_saddle(saddle, d):
    """Columns of distances ``d`` (U, n) with no saddle light at any of them: bool (n,).

    ``saddle(d, True)`` is 0 where the maximum of the convolution integrand sits at an end
    of the segment (a core: the far field covers it). That is tested at each column's
    nearest, middle and farthest distance only, and a column with none at all three is taken
    to have none in between. Used only with Gaussian PSFs
    (:meth:`~jaxsky.render.compound.Convolution._saddle_gaussian_np`): a Moffat's power-law
    wing can put a saddle in a band of distances between two without one (1 Sersic x Moffat
    in 2,048 changed plan). Paper-like Exponential x Gaussian: ~97% of the profiles screened
    out; plans unchanged on 2 x 1,024 paper galaxies and 3 x 2,048 Sersic x Gaussian galaxies
    of the accuracy sweep's setups. The rest is evaluated exactly.
    """
    lo, hi = d.min(axis=0), d.max(axis=0)
    return np.all(saddle(np.stack([lo, 0.5 * (lo + hi), hi]), True) == 0, axis=0)


def _scan_positions(n):
    """Candidate indices tested in turn: 0, 1, 2, 3, then steps growing by half; ends at n-1."""
    pos, out = 0, []
    while pos < n - 1:
        out.append(pos)
        pos += max(1, pos // 2)
    return out + [n - 1]


def _k_folds(obj, scale, gsp):
    """Nyquist zones per axis: the fewest ``kf`` with |F(k)| / flux <= ``maxk_threshold`` at
    every |k| >= kf pi / scale (from the profile's bound :meth:`GSObject._kbound_np`), and
    never more than ``maxk`` (:meth:`GSObject._maxk_np`) asks for. (n,) ints."""
    thr, cap = gsp.maxk_threshold, gsp.max_k_fold + 1  # cap: "more than allowed"
    maxk = np.asarray(obj._maxk_np(thr), float).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        need = np.ceil(maxk * scale / math.pi)
    k_fold = np.clip(np.where(np.isnan(need), cap, need), 1, cap)
    top = int(k_fold.max())
    if top > 1:
        zones = np.arange(1, top)[:, None]  # the fold counts below ``top``, tested at once
        with np.errstate(all="ignore"):
            bound = np.asarray(obj._kbound_np(zones * (math.pi / scale), thr), float)
        ok = np.broadcast_to(bound, (top - 1, len(maxk))) <= thr
        k_fold = np.minimum(k_fold, np.where(ok.any(axis=0), np.argmax(ok, axis=0) + 1, top))
    return k_fold.astype(int)


def plan_sizes(obj, nx, ny, scale, gsparams=None):
    """Per-profile static sizes: (n_fft, k_fold, ok) arrays over the batch (or scalars).

    See :func:`plan_sizes_rings`, which also returns the rings of copies to correct.
    """
    return plan_sizes_rings(obj, nx, ny, scale, gsparams)[:3]


def plan_sizes_rings(obj, nx, ny, scale, gsparams=None):
    """Per-profile (n_fft, k_fold, ok, alias_rings) arrays over the batch.

    ``n_fft`` is the smallest FFT period (pixels, one of the size classes) whose wrap-around
    light stays below ``alias_threshold`` of the peak pixel and ``alias_flux_threshold`` of
    the stamp flux. That light is estimated from the profile's real-space wings at the 80
    nearest periodic copies (the ``alias_rings`` nearest rings counted only by the error of
    the far-field correction that :func:`draw` subtracts) plus the flux beyond them.
    ``k_fold`` covers wave-numbers out to where ``|F| / flux < maxk_threshold``.
    ``ok`` is False where the caps in ``gsparams`` were hit. ``alias_rings`` is the fewest
    rings of copies (at most ``gsparams.alias_rings``) whose correction meets the criteria.
    """
    gsp = gsparams or GSParams()
    obj = jax.tree_util.tree_map(lambda x: np.asarray(x, float), obj)
    flags = _batch_flags(obj)
    # Candidate periods: the size classes from the stamp up to the cap (at least one).
    above = SIZE_CLASSES[SIZE_CLASSES >= max(nx, ny)]
    cand = np.concatenate([above[:1], above[1:][above[1:] <= gsp.max_fft_size]])
    cx, cy = 0.5 * nx * scale, 0.5 * ny * scale
    jx, jy, px, py, ring, weights = _unique_points(cx, cy)
    # Ring q's points: the slice bounds[q - 1]:bounds[q] (sorted by ring).
    bounds = np.searchsorted(ring[:, 0], np.arange(1, max(gsp.alias_rings, 4) + 2))
    near = slice(0, bounds[1])
    size2 = np.asarray(obj._size2_np(), float).reshape(-1)
    flux = np.abs(np.asarray(obj.flux, float)).reshape(-1)
    with np.errstate(all="ignore"):
        peak = np.asarray(_peak_sb(obj, scale)).reshape(-1)
        stamp_flux = flux * np.asarray(obj._enclosed_np(np.array([[min(cx, cy)]]))).reshape(-1)
        # Distances of the copies at every candidate period (U, len(cand)), computed once.
        periods = cand * scale
        ax, ay = jx * periods - px, jy * periods - py
        dist = np.sqrt(ax * ax + ay * ay)  # np.hypot is several times slower
        dist2 = np.maximum(dist, 1e-12) ** 2
    nb = max(len(peak), len(size2), len(flux))
    per = {
        k: np.broadcast_to(v, (nb,))
        for k, v in dict(size2=size2, flux=flux, peak=peak, stamp_flux=stamp_flux).items()
    }

    n_rings = gsp.alias_rings
    nc = bounds[n_rings]  # the points of the rings that a correction can subtract

    def light(sub, idx, k):
        """The light of the profiles ``idx`` (``sub``) at the periods ``cand[k]`` (k: one index,
        or one per profile): the wing at the copies (U, n), and the light left by the
        correction of the rings <= n_rings where the light is the wing (nc, n)."""
        # One period: (U, 1) distances, broadcast against the profiles.
        cols = k if np.ndim(k) else slice(k, k + 1)
        with np.errstate(all="ignore"):
            # The wing as far_xvalue has it (what the correction subtracts).
            wing = np.asarray(sub._far_sb_np(dist[:, cols], True))
            wing = np.broadcast_to(wing, (len(jx), len(idx)))
            # Subtracted copies leave the far-field approximation's error, ~ (size / distance)^2;
            # left after the correction: those neglected terms, eps * wing (the general form,
            # with light the correction misses, is in with_saddle).
            left = gsp.far_field_error * per["size2"][idx] / dist2[:nc, cols]
            np.minimum(1.0, left, out=left)  # eps
            np.multiply(left, wing[:nc], out=left)
            np.minimum(wing[:nc], left, out=left)  # min(wing, eps * wing), in place
        return wing, left

    def light_beyond(sub, idx, k):
        """The flux beyond the copies (per unit area), (n,)."""
        period = periods[k]
        with np.errstate(all="ignore"):
            enclosed = np.asarray(sub._enclosed_np(4.5 * period - max(cx, cy)))
            return per["flux"][idx] * np.clip(1.0 - enclosed, 0, 1) / period**2

    def meets(idx, beyond, left, sb, rows):
        """Both criteria for the profiles ``idx`` with light ``sb`` (U, n) at the copies,
        ``left`` (nc, n) after the correction, for r rings corrected, r in ``rows``: bool
        (len(rows), n)."""
        # Per ring q: (light left, light) summed with the weights. Row 0: each copy at its
        # closest approach to the stamp (an upper bound); row 1: the mean over the 3 x 3 grid
        # of stamp points. Correcting r rings leaves sum_{q<=r} left_q + sum_{q>r} sb_q.
        ring_sl = [slice(bounds[q], bounds[q + 1]) for q in range(n_rings)]
        parts = [
            (weights[:, m] @ left[m], weights[:, m] @ sb[m] if min(rows) <= q else None)
            for q, m in enumerate(ring_sl)
        ]
        rest = weights[:, nc:] @ sb[nc:]
        pk, sf = per["peak"][idx], per["stamp_flux"][idx]
        out = []
        for r in rows:
            worst, mean = rest + sum(p[0] if q < r else p[1] for q, p in enumerate(parts))
            out.append(
                ((worst + beyond) <= gsp.alias_threshold * pk)
                & ((mean + beyond) * (4 * cx * cy) <= gsp.alias_flux_threshold * sf)
            )
        return np.stack(out)

    # The light at each profile's last passing period (the final one, as the searches below
    # only move down from a passing period), reused when the saddle light is added; a row per
    # profile (writing rows is several times faster than columns).
    stash = dict(beyond=np.empty(nb), wing=np.empty((nb, len(jx))), left=np.empty((nb, nc)))

    def passes(idx, k):
        """Do the profiles ``idx`` meet both criteria at the periods ``cand[k]`` with all
        ``n_rings`` rings corrected? bool (n,)."""
        sub = _take(obj, flags, idx) if nb > 1 else obj
        beyond = light_beyond(sub, idx, k)
        wing, left = light(sub, idx, k)
        good = meets(idx, beyond, left, wing, [n_rings])[0]
        g = np.flatnonzero(good)
        for key, v in dict(beyond=beyond, wing=wing, left=left).items():
            stash[key][idx[g]] = v.T[g]
        return good

    def with_saddle(idx, k, stashed):
        """As ``passes``, also counting the light between two light tails, for every number
        of corrected rings: bool (n_rings + 1, n) (only the last row where that fails).
        ``stashed``: the profiles passed ``passes`` at these periods (last in ``stash``)."""
        if stashed:
            beyond, wing, left = (stash[key][idx].T for key in ("beyond", "wing", "left"))
            test = np.arange(len(idx))
            good = np.ones((n_rings + 1, len(idx)), bool)
        else:
            sub = _take(obj, flags, idx) if nb > 1 else obj
            beyond = light_beyond(sub, idx, k)
            wing, left = light(sub, idx, k)
            good = np.zeros((n_rings + 1, len(idx)), bool)
            good[-1] = meets(idx, beyond, left, wing, [n_rings])[0]
            test = np.flatnonzero(good[-1])
        # Two light tails (Sersic n < ~1.5 or Gaussian, with a Gaussian PSF) put more light
        # between them than far_xvalue has (the saddle of the convolution integral; up to
        # 30x at the copies, issue 2's hst64 outlier). It only adds light, so only the
        # profiles that pass are re-tested with it, at the nearest ring of copies (at
        # >= 2.6x the distance such wings are nil).
        if not len(test):
            return good
        it, kt = idx[test], k[test]
        sub = _take(obj, flags, it) if nb > 1 else obj
        sb, lt = wing[:, test], left[:, test]  # copies (fancy indexing)
        w, dn = sb[near].copy(), dist[near][:, kt]
        with np.errstate(all="ignore"):
            # _sb_np is max(_far_sb_np, the saddle light); the former is the wing.
            if not hasattr(sub, "_saddle_np"):
                extra = sub._sb_np(dn, True)
            elif not sub._saddle_gaussian_np():
                extra = sub._saddle_np(dn, True)
            else:  # only the profiles with a saddle somewhere (see _no_saddle)
                extra = np.zeros_like(dn)
                some = np.flatnonzero(~_no_saddle(sub._saddle_np, dn))
                if len(some):
                    one = _take(obj, flags, it[some]) if nb > 1 and len(some) < len(it) else sub
                    extra[:, some] = one._saddle_np(dn[:, some], True)
            sb[near] = np.maximum(w, extra)
            if n_rings:  # left: the correction's neglected terms and the light it misses
                eps = np.minimum(1.0, gsp.far_field_error * per["size2"][it] / dist2[near][:, kt])
                lt[near] = np.minimum(sb[near], np.maximum(sb[near] - w, 0.0) + eps * w)
        good[:, test] = meets(it, beyond[test], lt, sb, range(n_rings + 1))
        return good

    # The residual falls with the period: scan up from the smallest period, re-testing only
    # the undecided profiles, then bisect inside each profile's bracket (lo, hi]. The saddle
    # light (costly to estimate) is added afterwards, at the chosen periods only.
    lo, hi = np.zeros(nb, int), np.full(nb, len(cand) - 1)
    fits = np.zeros(nb, bool)
    pending, prev = np.arange(nb), -1
    for pos in _scan_positions(len(cand)):
        good = passes(pending, pos)
        done = pending[good]
        lo[done], hi[done], fits[done] = prev + 1, pos, True
        pending, prev = pending[~good], pos
        if not len(pending):
            break
    lo[pending] = hi[pending]  # fit nowhere: capped at the largest period
    todo = np.flatnonzero(lo < hi)
    while len(todo):
        mid = (lo[todo] + hi[todo]) // 2
        good = passes(todo, mid)
        hi[todo] = np.where(good, mid, hi[todo])
        lo[todo] = np.where(good, lo[todo], mid + 1)
        todo = todo[lo[todo] < hi[todo]]
    # With the saddle light: step each period up until it passes, and take the fewest rings of
    # copies whose correction still meets the criteria there (the correction costs about as
    # much as the transform for small FFTs).
    rings = np.full(nb, n_rings)
    todo, stashed = np.flatnonzero(fits), True
    while len(todo):
        good = with_saddle(todo, hi[todo], stashed)
        ok_now = good[-1]
        rings[todo[ok_now]] = np.argmax(good[:, ok_now], axis=0)
        stuck = todo[~ok_now]
        capped = stuck[hi[stuck] >= len(cand) - 1]
        fits[capped] = False
        todo, stashed = stuck[hi[stuck] < len(cand) - 1], False
        hi[todo] += 1
    n_fft = cand[hi]
    k_fold = _k_folds(obj, scale, gsp)
    k_ok = k_fold <= gsp.max_k_fold
    k_fold = np.minimum(k_fold, gsp.max_k_fold)
    return np.broadcast_arrays(n_fft, k_fold, fits & k_ok, rings)
