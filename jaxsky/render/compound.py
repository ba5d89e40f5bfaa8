"""Sums and convolutions of profiles (GalSim's ``Add`` / ``Sum`` and ``Convolve``)."""

from __future__ import annotations

import functools
import operator

import numpy as np

from jaxsky.render._base import GSObject

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

    def _sb_np(self, r, bound=True):
        # Far field: each component's wing, carried by the other components' total flux.
        fl = [np.asarray(o.flux, float) for o in self.objs]
        total = 0.0
        for i, o in enumerate(self.objs):
            others = functools.reduce(operator.mul, fl[:i] + fl[i + 1 :], 1.0)
            total = total + o._sb_np(r, bound) * others
        return total

    def _size2_np(self):
        return sum(o._size2_np() for o in self.objs)

    def _enclosed_np(self, r):
        return 1.0 - sum(1.0 - o._enclosed_np(r) for o in self.objs)


def Convolve(*objs):  # noqa: N802  (GalSim's spelling)
    """``Convolve([gal, psf])`` or ``Convolve(gal, psf)``."""
    if len(objs) == 1 and not isinstance(objs[0], GSObject):
        objs = objs[0]
    return Convolution(list(objs))
