"""Sums and convolutions of profiles (GalSim's ``Add`` / ``Sum`` and ``Convolve``)."""

from __future__ import annotations

import functools
import operator

import numpy as np

from jaxsky.render._base import GSObject
from jaxsky.render.profiles import _exp_inplace, _inplace

__all__ = ["Add", "Sum", "Convolution", "Convolve"]


def _flatten(objs, cls):
    if isinstance(objs, GSObject):
        objs = [objs]
    out = []
    for o in objs:
        if not isinstance(o, GSObject):
            raise TypeError(f"expected jaxsky profiles, got {type(o).__name__}")
        out.extend(o.objs if isinstance(o, cls) else [o])
    if not out:
        raise ValueError("need at least one profile")
    return tuple(out)


class Add(GSObject):
    """Sum of profiles, e.g. ``bulge + disk``. F = sum_i F_i."""

    _leaves = ("objs",)

    def __init__(self, objs):
        object.__setattr__(self, "objs", _flatten(objs, Add))

    @property
    def flux(self):
        return functools.reduce(operator.add, [o.flux for o in self.objs])

    def kvalue(self, kx, ky):
        return functools.reduce(operator.add, [o.kvalue(kx, ky) for o in self.objs])

    def xvalue(self, x, y):
        return functools.reduce(operator.add, [o.xvalue(x, y) for o in self.objs])

    def far_xvalue(self, x, y):
        return functools.reduce(operator.add, [o.far_xvalue(x, y) for o in self.objs])

    def _maxk_np(self, threshold):
        return functools.reduce(np.maximum, [o._maxk_np(threshold) for o in self.objs])

    def _sb_np(self, r, bound=True):
        return sum(o._sb_np(r, bound) for o in self.objs)

    def _far_sb_np(self, r, bound=True):
        return sum(o._far_sb_np(r, bound) for o in self.objs)

    def _size2_np(self):
        return functools.reduce(np.maximum, [o._size2_np() for o in self.objs])

    def _enclosed_np(self, r):
        fl = [np.abs(np.asarray(o.flux, float)) for o in self.objs]
        return sum(f * o._enclosed_np(r) for f, o in zip(fl, self.objs)) / sum(fl)


Sum = Add


class Convolution(GSObject):
    """Convolution of profiles. F = prod_i F_i (flux = product of fluxes, as in GalSim)."""

    _leaves = ("objs",)

    def __init__(self, objs):
        object.__setattr__(self, "objs", _flatten(objs, Convolution))

    @property
    def flux(self):
        return functools.reduce(operator.mul, [o.flux for o in self.objs])

    def kvalue(self, kx, ky):
        return functools.reduce(operator.mul, [o.kvalue(kx, ky) for o in self.objs])

    def _kfactor(self, kx, ky):
        parts = [o._kfactor(kx, ky) for o in self.objs]
        if any(f is None for f in parts):
            return None
        r = functools.reduce(operator.mul, [f[0] for f in parts])
        ox = functools.reduce(operator.add, [f[1][0] for f in parts])
        oy = functools.reduce(operator.add, [f[1][1] for f in parts])
        return r, (ox, oy)

    def _kterms(self):
        parts = [o._kterms() for o in self.objs]
        if any(t is None for t in parts):
            return None
        c = functools.reduce(operator.mul, [t[0] for t in parts])
        off = functools.reduce(operator.add, [t[1] for t in parts])
        return c, off, sum((t[2] for t in parts), ())

    def far_xvalue(self, x, y):
        # Far from every component's core, a convolution is the sum of the components'
        # wings, each carried by the other components' flux (the zeroth-order term of
        # the moment expansion of the convolution integral).
        fluxes = [o.flux for o in self.objs]
        total = 0.0
        for i, o in enumerate(self.objs):
            others = functools.reduce(operator.mul, fluxes[:i] + fluxes[i + 1 :], 1.0)
            total = total + o.far_xvalue(x, y) * others
        return total

    def _maxk_np(self, threshold):
        # The product is below threshold wherever any factor is (|F_i| / flux_i <= 1).
        return functools.reduce(np.minimum, [o._maxk_np(threshold) for o in self.objs])

    def _kbound_np(self, k, threshold):
        # |F| / flux is the product of the factors' (each <= 1): a far tighter maxk than the
        # smallest factor's (GalSim's choice for SBConvolve) when two fall off together.
        return functools.reduce(np.multiply, [o._kbound_np(k, threshold) for o in self.objs])

    def _sb_np(self, r, bound=True):
        # The zeroth-order far field (each wing carried by the other components' flux) is
        # right when a wing falls slowly (power laws); when both fall fast (Sersic n < ~1.5
        # or Gaussian, with a Gaussian PSF) the light comes from the saddle in between,
        # up to ~30x more at the distances of the periodic copies (hst64 outlier, issue 2).
        return np.maximum(self._far_sb_np(r, bound), self._saddle_np(r, bound))

    def _saddle_gaussian_np(self):
        """Whether every factor but the first is a (transformed) Gaussian: then the saddle's
        place d - s* = -sigma^2 (ln A)'(s*) moves monotonically towards the end of the segment
        as d grows (Sersic wings), so none at the nearest distance means none farther
        (used by the planner's screen, ``_planning._no_saddle``)."""
        from jaxsky.render.profiles import Gaussian

        def base(o):
            return base(o.obj) if hasattr(o, "obj") else o

        return all(isinstance(base(o), Gaussian) for o in self.objs[1:])

    def _saddle_np(self, r, bound=True):
        """The saddle light of :meth:`_sb_np` alone (0 where there is none)."""
        a, rest = self.objs[0], self.objs[1:]
        b = rest[0] if len(rest) == 1 else Convolution(list(rest))
        return _saddle_sb_np(lambda s: a._log_sb_np(s, bound), lambda s: b._log_sb_np(s, bound), r)

    def _far_sb_np(self, r, bound=True):
        # Far field as far_xvalue has it: each wing, carried by the other components' flux.
        fl = [np.asarray(o.flux, float) for o in self.objs]
        total = None
        for i, o in enumerate(self.objs):
            others = functools.reduce(operator.mul, fl[:i] + fl[i + 1 :], 1.0)
            term = _inplace(np.multiply, o._far_sb_np(r, bound), others)  # fresh arrays
            total = term if total is None else _inplace(np.add, total, term)
        return total

    def _size2_np(self):
        return sum(o._size2_np() for o in self.objs)

    def _enclosed_np(self, r):
        return 1.0 - sum(1.0 - o._enclosed_np(r) for o in self.objs)


def _saddle_sb_np(log_a, log_b, d, m=17):
    """Laplace estimate of (A * B)(x), |x| = d, from the saddle between two radial profiles.

    With g(y) = ln A(|y|) + ln B(|x - y|), the integral of exp(g) is exp(g*) 2 pi / sqrt(det H)
    at the maximum y* of g on the segment [0, x] (Laplace's method); H is diagonal there: the
    radial curvature -g'' and the transverse one -(ln A)'(s)/s - (ln B)'(d - s)/(d - s).
    Exact for two Gaussians up to the sampling: the maximum and the curvatures are taken at
    the best of ``m`` points on the segment (~1% off for two Gaussians, measured in session
    7). Zero where the maximum is at an end of the segment (a core:
    the zeroth-order far field covers that). ``log_a``, ``log_b``: numpy log SB of radius,
    returning new arrays (never views of the radii, which are overwritten); ``d`` (...):
    distances, broadcast against the profiles' batch. Returns (...).
    """
    d = np.asarray(d, float)
    t = np.linspace(0.0, 1.0, m).reshape((m,) + (1,) * d.ndim)
    s = t * d
    with np.errstate(all="ignore"):
        # s is then reused for d - s and for g (fewer large arrays: each new one costs page
        # faults about as much as its arithmetic); log_a and log_b return new arrays.
        la = log_a(s)
        lb = log_b(np.subtract(d, s, out=s))
        la, lb = np.broadcast_arrays(la, lb)
        shape = la.shape[1:]
        la, lb = la.reshape(m, -1), lb.reshape(m, -1)  # views unless broadcast
        g = np.add(la, lb, out=s.reshape(la.shape)) if s.size == la.size else la + lb
        # argmax over the m samples (nan as -inf; the first of equal maxima, as np.argmax),
        # as a running maximum: np.argmax along a non-contiguous axis is several times slower.
        best, j = g[0].copy(), np.zeros(g.shape[1], np.intp)
        best[np.isnan(best)] = -np.inf
        for i in range(1, m):
            up = g[i] > best
            np.copyto(best, g[i], where=up)
            j[up] = i
        inner = (j > 0) & (j < m - 1)
        jc = np.clip(j, 1, m - 2)
        flat = jc * g.shape[1] + np.arange(g.shape[1])
        at = lambda a, o: a.take(flat + o * g.shape[1])  # noqa: E731  a[jc + o] per column
        d = np.broadcast_to(d, shape).reshape(-1)
        h = d / (m - 1)
        g_lo, g_0, g_hi = at(g, -1), at(g, 0), at(g, 1)
        c1, c2 = 0.5 * (g_hi - g_lo), g_hi - 2 * g_0 + g_lo
        g_max = g_0 - c1 * c1 / (2 * c2)  # vertex of the parabola through 3 nodes
        s_max = (jc - c1 / c2) * h
        da = (at(la, 1) - at(la, -1)) / (2 * h)  # (ln A)'(s)
        db = (at(lb, 1) - at(lb, -1)) / (2 * h)  # -(ln B)'(d - s)
        curv_r = -c2 / (h * h)
        curv_t = -da / s_max + db / (d - s_max)
        out = _exp_inplace(g_max) * 2 * np.pi / np.sqrt(curv_r * curv_t)
        good = inner & (c2 < 0) & (curv_t > 0) & np.isfinite(out)
    return np.where(good, out, 0.0).reshape(shape)


def Convolve(*objs):  # noqa: N802  (GalSim's spelling)
    """``Convolve([gal, psf])`` or ``Convolve(gal, psf)``."""
    if len(objs) == 1 and not isinstance(objs[0], GSObject):
        objs = objs[0]
    return Convolution(list(objs))
