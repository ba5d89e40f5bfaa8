"""Planning the static FFT sizes of a draw (numpy, on the host, per profile of a batch).

The wrap-around criteria are those of :func:`plan_sizes`; this module evaluates them fast:
the profile's leaves are turned into numpy once, every stamp point and periodic copy of
one candidate period is evaluated in a single vectorised call, and the search over the
candidate periods only re-tests the profiles that are still undecided (a linear then
galloping scan from the smallest period, then a bisection inside the bracket).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import numpy as np

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
        integrand = a._sb_np(r, False) * b._sb_np(r, False) * 2 * np.pi * r * r
        return np.trapezoid(integrand, np.log(r[:, 0]), axis=0)
    rp = scale / math.sqrt(math.pi)  # disk with the area of one pixel
    return np.abs(np.asarray(obj.flux, float)) * obj._enclosed_np(rp) / (math.pi * rp * rp)


def _batch_flags(obj):
    from jaxsky.render.drawing import batch_flags

    return batch_flags(obj)


def _take(obj, flags, idx):
    """The sub-batch ``idx`` of a numpy-leaved profile (shared leaves kept)."""
    leaves, tree = jax.tree_util.tree_flatten(obj)
    return jax.tree_util.tree_unflatten(tree, [x[idx] if f else x for x, f in zip(leaves, flags)])


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
    return (*(c[:, None] for c in cols.T), ring[:, None], weights)


def _canon(j, x):
    return (-j, -x) if (j < 0 or (j == 0 and x < 0)) else (j, x)


def _scan_positions(n):
    """Candidate indices tested in turn: 0, 1, 2, 3, then steps growing by half; ends at n-1."""
    pos, out = 0, []
    while pos < n - 1:
        out.append(pos)
        pos += max(1, pos // 2)
    return out + [n - 1]


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
    near = ring[:, 0] == 1
    size2 = np.asarray(obj._size2_np(), float).reshape(-1)
    flux = np.abs(np.asarray(obj.flux, float)).reshape(-1)
    with np.errstate(all="ignore"):
        peak = np.asarray(_peak_sb(obj, scale)).reshape(-1)
        stamp_flux = flux * np.asarray(obj._enclosed_np(np.array([[min(cx, cy)]]))).reshape(-1)
    nb = max(len(peak), len(size2), len(flux))
    per = {
        k: np.broadcast_to(v, (nb,))
        for k, v in dict(size2=size2, flux=flux, peak=peak, stamp_flux=stamp_flux).items()
    }

    n_rings = gsp.alias_rings

    def passes(idx, period, saddle=False):
        """Do the profiles ``idx`` meet both criteria at ``period`` (arcsec, (len(idx),))?

        Returns bool (n_rings + 1, len(idx)): row r for a correction that subtracts the r
        nearest rings of copies. ``saddle``: also count the light between two light tails
        (without it, only the last row: all ``n_rings`` rings subtracted).
        """
        sub = _take(obj, flags, idx) if nb > 1 else obj
        s2, fl, pk, sf = (per[k][idx] for k in ("size2", "flux", "peak", "stamp_flux"))
        with np.errstate(all="ignore"):
            far = 4.5 * period - max(cx, cy)
            beyond = fl * np.clip(1.0 - np.asarray(sub._enclosed_np(far)), 0, 1) / period**2
            ax, ay = jx * period - px, jy * period - py
            d = np.sqrt(ax * ax + ay * ay)  # (U, n); np.hypot is several times slower
            # Subtracted copies leave the far-field approximation's error, ~ (size / distance)^2.
            eps = np.minimum(1.0, gsp.far_field_error * s2 / np.maximum(d, 1e-12) ** 2)
            # The wing as far_xvalue has it (what the correction subtracts).
            wing = np.broadcast_to(np.asarray(sub._far_sb_np(d, True)), d.shape)

            def meets(sb, c, rows):
                """Both criteria at columns ``c``, light ``sb`` (U, len(c)) at the copies, for
                a correction of r rings, r in ``rows``: bool (len(rows), len(c))."""
                w = wing[:, c]
                # Left after the correction: its neglected terms and any light it misses.
                left = np.minimum(sb, np.maximum(sb - w, 0.0) + eps[:, c] * w)
                # Per ring q: (light left, light) summed with the weights. Row 0: each copy at
                # its closest approach to the stamp (an upper bound); row 1: the mean over the
                # 3 x 3 grid of stamp points. Correcting r rings leaves sum_{q<=r} left_q +
                # sum_{q>r} sb_q.
                parts = [
                    (weights[:, m] @ left[m], weights[:, m] @ sb[m])
                    for m in (ring[:, 0] == q for q in range(1, n_rings + 1))
                ]
                rest = weights[:, ring[:, 0] > n_rings] @ sb[ring[:, 0] > n_rings]
                out = []
                for r in rows:
                    worst, mean = rest + sum(p[0] if q < r else p[1] for q, p in enumerate(parts))
                    out.append(
                        ((worst + beyond[c]) <= gsp.alias_threshold * pk[c])
                        & ((mean + beyond[c]) * (4 * cx * cy) <= gsp.alias_flux_threshold * sf[c])
                    )
                return np.stack(out)

            rows = range(n_rings + 1) if saddle else [n_rings]
            good = meets(wing, slice(None), rows)
            # Two light tails (Sersic n < ~1.5 or Gaussian, with a Gaussian PSF) put more light
            # between them than far_xvalue has (the saddle of the convolution integral; up to
            # 30x at the copies, issue 2's hst64 outlier). It only adds light, so only the
            # profiles that pass are re-tested with it, at the nearest ring of copies (at
            # >= 2.6x the distance such wings are nil).
            test = np.flatnonzero(good[-1]) if saddle else []
            if len(test):
                sub = _take(obj, flags, np.asarray(idx)[test]) if nb > 1 else obj
                sb = wing[:, test].copy()
                sb[near] = np.maximum(sb[near], sub._sb_np(d[near][:, test], True))
                good[:, test] = meets(sb, test, rows)
        return good

    # The residual falls with the period: scan up from the smallest period, re-testing only
    # the undecided profiles, then bisect inside each profile's bracket (lo, hi]. The saddle
    # light (costly to estimate) is added afterwards, at the chosen periods only.
    lo, hi = np.zeros(nb, int), np.full(nb, len(cand) - 1)
    fits = np.zeros(nb, bool)
    pending, prev = np.arange(nb), -1
    for pos in _scan_positions(len(cand)):
        good = passes(pending, np.full(len(pending), cand[pos] * scale))[-1]
        done = pending[good]
        lo[done], hi[done], fits[done] = prev + 1, pos, True
        pending, prev = pending[~good], pos
        if not len(pending):
            break
    lo[pending] = hi[pending]  # fit nowhere: capped at the largest period
    todo = np.flatnonzero(lo < hi)
    while len(todo):
        mid = (lo[todo] + hi[todo]) // 2
        good = passes(todo, cand[mid] * scale)[-1]
        hi[todo] = np.where(good, mid, hi[todo])
        lo[todo] = np.where(good, lo[todo], mid + 1)
        todo = todo[lo[todo] < hi[todo]]
    # With the saddle light: step each period up until it passes, and take the fewest rings of
    # copies whose correction still meets the criteria there (the correction costs about as
    # much as the transform for small FFTs).
    rings = np.full(nb, n_rings)
    todo = np.flatnonzero(fits)
    while len(todo):
        good = passes(todo, cand[hi[todo]] * scale, saddle=True)
        ok_now = good[-1]
        rings[todo[ok_now]] = np.argmax(good[:, ok_now], axis=0)
        stuck = todo[~ok_now]
        capped = stuck[hi[stuck] >= len(cand) - 1]
        fits[capped] = False
        todo = stuck[hi[stuck] < len(cand) - 1]
        hi[todo] += 1
    n_fft = cand[hi]
    maxk = np.asarray(obj._maxk_np(gsp.maxk_threshold), float).reshape(-1)
    k_fold = np.maximum(1, np.ceil(maxk * scale / math.pi)).astype(int)
    k_ok = k_fold <= gsp.max_k_fold
    k_fold = np.minimum(k_fold, gsp.max_k_fold)
    return np.broadcast_arrays(n_fft, k_fold, fits & k_ok, rings)
