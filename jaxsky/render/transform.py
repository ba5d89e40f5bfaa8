"""Affine transformations of a profile: I'(x) = r I(J^-1 (x - x0)) (GalSim's ``Transformation``).

The surface brightness is carried over, so the flux becomes r |det J| times the original
(``dilate`` sets r = 1/|det J| to keep the flux). In Fourier space:
F'(k) = r |det J| exp(-i k.x0) F(J^T k).
Chains of transforms are folded into one Jacobian, offset and flux ratio, as GalSim does.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxsky.render._base import GSObject, matrix2
from jaxsky.render.profiles import _inplace, _np_memo

__all__ = ["Transformation"]


def _identity():
    return matrix2(1.0, 0.0, 0.0, 1.0)


class Transformation(GSObject):
    """``obj`` distorted by ``jac`` (..., 2, 2), moved by ``offset`` (..., 2) arcsec.

    The surface brightness is multiplied by ``flux_ratio`` (GalSim's convention).
    """

    _leaves = ("obj", "jac", "offset", "flux_ratio")

    def __init__(self, obj, jac=None, offset=None, flux_ratio=None):
        t = Transformation.compose(obj, jac=jac, offset=offset, flux_ratio=flux_ratio)
        for f in self._leaves:
            object.__setattr__(self, f, getattr(t, f))

    @staticmethod
    def compose(obj, *, jac=None, offset=None, flux_ratio=None):
        """Apply x -> jac x + offset, then scale flux, on top of ``obj``'s own transformation."""
        if isinstance(obj, Transformation):
            base, j0, o0, r0 = obj.obj, obj.jac, obj.offset, obj.flux_ratio
        else:
            base, j0, o0, r0 = obj, _identity(), jnp.zeros(2), jnp.ones(())
        if jac is not None:
            j0 = jnp.matmul(jac, j0)
            o0 = jnp.einsum("...ij,...j->...i", jac, o0)
        if offset is not None:
            o0 = o0 + offset
        if flux_ratio is not None:
            r0 = r0 * flux_ratio
        return Transformation._from_fields(obj=base, jac=j0, offset=o0, flux_ratio=r0)

    def _det(self):
        j = self.jac
        xp = np if isinstance(j, np.ndarray) else jnp  # the planner's numpy leaves stay numpy
        return xp.abs(j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0])

    @property
    def flux(self):
        return self.flux_ratio * self._det() * self.obj.flux

    def kvalue(self, kx, ky):
        j = self.jac
        # J^T k: the inner profile sees the wave-vector mapped back through the distortion.
        kxp = j[0, 0] * kx + j[1, 0] * ky
        kyp = j[0, 1] * kx + j[1, 1] * ky
        # exp(-i k.x0) is separable: two 1-D exponentials when kx, ky are a row and a column.
        phase = jnp.exp(-1j * kx * self.offset[0]) * jnp.exp(-1j * ky * self.offset[1])
        return (self.flux_ratio * self._det()) * phase * self.obj.kvalue(kxp, kyp)

    def _kfactor(self, kx, ky):
        j = self.jac
        inner = self.obj._kfactor(j[0, 0] * kx + j[1, 0] * ky, j[0, 1] * kx + j[1, 1] * ky)
        if inner is None:
            return None
        r, (ox, oy) = inner
        # The inner phase at J^T k is exp(-i k.(J o)): offsets map through J, then add.
        ox, oy = j[0, 0] * ox + j[0, 1] * oy, j[1, 0] * ox + j[1, 1] * oy
        return (self.flux_ratio * self._det()) * r, (ox + self.offset[0], oy + self.offset[1])

    def _kterms(self):
        inner = self.obj._kterms()
        if inner is None:
            return None
        c, o, comps = inner
        j = self.jac
        # F(J^T k) with k^T M k: the quadratic form becomes J M J^T; offsets map through J.
        comps = tuple((kind, p, j @ m @ j.T, False) for kind, p, m, _ in comps)
        return (self.flux_ratio * self._det()) * c, j @ o + self.offset, comps

    def _pull_back(self, x, y):
        """J^-1 (x - x0): where the untransformed profile is evaluated."""
        j = self.jac
        det = j[0, 0] * j[1, 1] - j[0, 1] * j[1, 0]
        xs, ys = x - self.offset[0], y - self.offset[1]
        return (j[1, 1] * xs - j[0, 1] * ys) / det, (-j[1, 0] * xs + j[0, 0] * ys) / det

    def xvalue(self, x, y):
        """Surface brightness at (x, y) arcsec: r I(J^-1 (x - x0))."""
        return self.flux_ratio * self.obj.xvalue(*self._pull_back(x, y))

    def far_xvalue(self, x, y):
        return self.flux_ratio * self.obj.far_xvalue(*self._pull_back(x, y))

    def _singular_values(self):
        """Singular values (..., 2), largest first, of the 2 x 2 Jacobians (closed form)."""
        return _np_memo(self, "sv", self._singular_values_uncached, core=1)

    def _singular_values_uncached(self):
        j = np.asarray(self.jac, float)
        a, b, c, d = j[..., 0, 0], j[..., 0, 1], j[..., 1, 0], j[..., 1, 1]
        # s1,2^2 = (|J|_F^2 +- sqrt(|J|_F^4 - 4 det^2)) / 2, written without cancellation.
        fro2 = a * a + b * b + c * c + d * d
        det = np.abs(a * d - b * c)
        s1 = 0.5 * (np.sqrt(np.maximum(fro2 + 2 * det, 0)) + np.sqrt(np.maximum(fro2 - 2 * det, 0)))
        s2 = np.where(s1 > 0, det / np.where(s1 > 0, s1, 1.0), 0.0)
        return np.stack([s1, s2], axis=-1)

    def _maxk_np(self, threshold):
        sv = self._singular_values()
        return self.obj._maxk_np(threshold) / sv[..., -1]

    def _kbound_np(self, k, threshold):
        # F(k) = F_obj(J^T k) (times a phase): |J^T k| >= s_min |k| in every direction.
        return self.obj._kbound_np(k * self._singular_values()[..., -1], threshold)

    def _shift_np(self):
        return _np_memo(
            self, "shift", lambda: np.hypot(*np.moveaxis(np.asarray(self.offset, float), -1, 0))
        )

    def _sb_np(self, r, bound=True):
        return self._pulled_np("_sb_np", r, bound)

    def _far_sb_np(self, r, bound=True):
        return self._pulled_np("_far_sb_np", r, bound)

    def _log_sb_np(self, r, bound=True):
        return self._pulled_np("_log_sb_np", r, bound, log=True)

    def _pulled_np(self, method, r, bound, log=False):
        sv = self._singular_values()
        # Upper bound along the major axis (bound=True), or the circularised profile.
        stretch = sv[..., 0] if bound else np.sqrt(sv[..., 0] * sv[..., 1])
        if bound:
            rr = r - self._shift_np()
            rr = _inplace(np.divide, _inplace(np.maximum, rr, 0.0), stretch)
        else:
            rr = r / stretch
        ratio = np.asarray(self.flux_ratio, float)
        inner = getattr(self.obj, method)(rr, bound)  # a fresh array: written into below
        if log:
            with np.errstate(divide="ignore"):
                return _inplace(np.add, inner, np.log(ratio), swap=True)
        return _inplace(np.multiply, inner, ratio, swap=True)

    def _size2_np(self):
        sv = self._singular_values()
        return self.obj._size2_np() * sv[..., 0] ** 2 + self._shift_np() ** 2

    def _enclosed_np(self, r):
        sv = self._singular_values()
        return self.obj._enclosed_np(np.maximum(r - self._shift_np(), 0.0) / sv[..., 0])
