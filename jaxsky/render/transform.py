"""Affine transformations of a profile: I'(x) = r I(J^-1 (x - x0)) / |det J|.

In Fourier space (GalSim's ``Transformation``): F'(k) = r exp(-i k.x0) F(J^T k).
Chains of transforms are folded into one Jacobian, offset and flux ratio, as GalSim does.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxsky.render._base import GSObject, matrix2

__all__ = ["Transformation"]


def _identity():
    return matrix2(1.0, 0.0, 0.0, 1.0)


class Transformation(GSObject):
    """``obj`` distorted by ``jac`` (..., 2, 2), moved by ``offset`` (..., 2) arcsec, flux x ``flux_ratio``."""

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

    @property
    def flux(self):
        return self.flux_ratio * self.obj.flux

    def kvalue(self, kx, ky):
        j = self.jac
        # J^T k: the inner profile sees the wave-vector mapped back through the distortion.
        kxp = j[0, 0] * kx + j[1, 0] * ky
        kyp = j[0, 1] * kx + j[1, 1] * ky
        # exp(-i k.x0) is separable: two 1-D exponentials when kx, ky are a row and a column.
        phase = jnp.exp(-1j * kx * self.offset[0]) * jnp.exp(-1j * ky * self.offset[1])
        return self.flux_ratio * phase * self.obj.kvalue(kxp, kyp)

    def _singular_values(self):
        return np.linalg.svd(np.asarray(self.jac, float), compute_uv=False)

    def _maxk_np(self, threshold):
        sv = self._singular_values()
        return self.obj._maxk_np(threshold) / sv[..., -1]

    def _radius_np(self, threshold):
        sv = self._singular_values()
        shift = np.hypot(*np.moveaxis(np.asarray(self.offset, float), -1, 0))
        return self.obj._radius_np(threshold) * sv[..., 0] + shift

    @property
    def _has_psf_like_cutoff(self):
        return self.obj._has_psf_like_cutoff
