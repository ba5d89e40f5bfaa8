"""The base class of every surface-brightness profile: a JAX pytree with GalSim's transforms.

Conventions follow GalSim (Rowe et al. 2015, Astron. Comput. 10, 121): positions in arcsec,
wave-numbers in 1/arcsec, Fourier transforms ``F(k) = int I(x) exp(-i k.x) d^2x`` so that
``F(0)`` is the total flux.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.render._checks import check_finite, check_range, is_concrete

__all__ = ["GSObject"]


class GSObject:
    """A differentiable light profile.

    Subclasses list their array leaves in ``_leaves`` (differentiable, may be batched) and
    their static configuration in ``_static`` (hashable, part of the compiled program).
    Objects are immutable; every transform returns a new object.
    """

    _leaves: tuple[str, ...] = ()
    _static: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(
            cls, cls._tree_flatten_with_keys, cls._tree_unflatten, cls._tree_flatten
        )

    # ----------------------------------------------------------------- pytree plumbing
    def _tree_flatten(self):
        return tuple(getattr(self, f) for f in self._leaves), tuple(
            getattr(self, f) for f in self._static
        )

    def _tree_flatten_with_keys(self):
        children = tuple((jax.tree_util.GetAttrKey(f), getattr(self, f)) for f in self._leaves)
        return children, tuple(getattr(self, f) for f in self._static)

    @classmethod
    def _tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for f, v in zip(cls._leaves, children):
            object.__setattr__(obj, f, v)
        for f, v in zip(cls._static, aux):
            object.__setattr__(obj, f, v)
        return obj

    @classmethod
    def _from_fields(cls, **fields):
        obj = object.__new__(cls)
        for f in cls._leaves + cls._static:
            object.__setattr__(obj, f, fields[f])
        return obj

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable; use its transform methods")

    def __repr__(self):
        parts = [f"{f}={getattr(self, f)!r}" for f in self._leaves + self._static]
        return f"{type(self).__name__}({', '.join(parts)})"

    # ----------------------------------------------------------------- interface
    @property
    def flux(self):
        raise NotImplementedError

    def kvalue(self, kx, ky):
        """Complex Fourier transform at wave-numbers ``kx, ky`` (1/arcsec, broadcastable)."""
        raise NotImplementedError

    def _kfactor(self, kx, ky):
        """``(R, (ox, oy))`` with ``kvalue = R exp(-i (kx ox + ky oy))`` and R real, or None.

        Profiles whose transform factors this way (centrally symmetric ones, moved and
        convolved) are drawn with real arithmetic on the k-grid and 1-D phases.
        """
        return None

    def _kterms(self):
        """``(c, offset, comps)`` with ``kvalue(k) = c exp(-i k.offset) prod_i F_i(k^T M_i k)``.

        ``comps``: tuples ``(kind, p, M, round)`` of a radial transform ``F`` of ``kind`` with
        shape parameter ``p`` (or None), a 2 x 2 quadratic form ``M`` (arcsec^2) and a static
        bool: True where ``M`` is known to be a multiple of the identity. None where the
        transform does not factor this way. :func:`draw` differentiates this form
        analytically (see ``_factored``).
        """
        return None

    def xvalue(self, x, y):
        """Surface brightness (flux / arcsec^2) at positions ``x, y`` (arcsec)."""
        raise NotImplementedError(f"{type(self).__name__} has no real-space form")

    def far_xvalue(self, x, y):
        """Surface brightness far from the profile's core (exact except for convolutions)."""
        return self.xvalue(x, y)

    def _maxk_np(self, threshold: float):
        """Concrete estimate of the wave-number beyond which ``|F(k)| / flux < threshold``."""
        raise NotImplementedError

    def _kbound_np(self, k, threshold: float):
        """Upper bound on ``|F(k')| / flux`` over all directions and all ``|k'| >= k`` (numpy,
        for planning): non-increasing in ``k`` (1/arcsec, broadcast against the batch).

        This default knows only :meth:`_maxk_np`: 1 below it, ``threshold`` beyond. Profiles
        with a closed form or a table give the bound itself, so that a convolution's bound
        is the product of its factors' (:meth:`Convolution._kbound_np`).
        """
        return np.where(np.asarray(k) < self._maxk_np(threshold), 1.0, threshold)

    def _sb_np(self, r, bound=True):
        """Concrete surface brightness (flux / arcsec^2) at radius ``r`` (numpy, for planning).

        ``bound=True``: an upper bound over directions (for aliasing); ``False``: circularised.
        """
        raise NotImplementedError

    def _log_sb_np(self, r, bound=True):
        """``log(_sb_np(r, bound))`` (numpy; closed forms override it: no exp then log)."""
        with np.errstate(divide="ignore"):
            return np.log(self._sb_np(r, bound))

    def _far_sb_np(self, r, bound=True):
        """What :meth:`far_xvalue` gives at radius ``r`` (numpy, same meaning as ``_sb_np``).

        Equal to ``_sb_np`` where ``far_xvalue`` is exact; the planner counts the difference
        as light that the wrap-around correction of :func:`draw` leaves behind.
        """
        return self._sb_np(r, bound)

    def _enclosed_np(self, r):
        """Concrete fraction of the flux within radius ``r`` (numpy, for planning)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- transforms
    def transform(self, dudx, dudy, dvdx, dvdy):
        """Linear distortion with Jacobian ``[[dudx, dudy], [dvdx, dvdy]]``.

        As in GalSim, the surface brightness is kept, so the flux scales by ``|det J|``.
        """
        return _transformed(self, jac=matrix2(dudx, dudy, dvdx, dvdy))

    def shear(self, g1=0.0, g2=0.0):
        """Apply a reduced shear ``(g1, g2)``; area- and flux-preserving (GalSim convention)."""
        check_range("|g|", _abs_g(g1, g2), 0.0, 1.0, hi_open=True)
        return _transformed(self, jac=shear_matrix(g1, g2))

    def dilate(self, scale):
        """Scale linear size by ``scale`` keeping the flux."""
        check_range("scale", scale, 0.0, None, lo_open=True)
        s = jnp.asarray(scale, dtype=float)
        return _transformed(self, jac=matrix2(s, 0.0 * s, 0.0 * s, s), flux_ratio=1.0 / (s * s))

    def expand(self, scale):
        """Scale linear size by ``scale`` keeping the surface brightness (flux * scale^2)."""
        check_range("scale", scale, 0.0, None, lo_open=True)
        s = jnp.asarray(scale, dtype=float)
        return _transformed(self, jac=matrix2(s, 0.0 * s, 0.0 * s, s))

    def rotate(self, theta):
        """Rotate counter-clockwise by ``theta`` (radians, or a ``galsim.Angle``)."""
        theta = getattr(theta, "rad", theta)
        check_finite("theta", theta)
        c, s = jnp.cos(theta), jnp.sin(theta)
        return _transformed(self, jac=matrix2(c, -s, s, c))

    def shift(self, dx, dy=None):
        """Move the centre by ``(dx, dy)`` arcsec. Accepts a 2-tuple or ``galsim.PositionD``."""
        if dy is None:
            dx, dy = (dx.x, dx.y) if hasattr(dx, "x") else dx
        check_finite("dx", dx)
        check_finite("dy", dy)
        dx, dy = jnp.broadcast_arrays(jnp.asarray(dx, float), jnp.asarray(dy, float))
        return _transformed(self, offset=jnp.stack([dx, dy], axis=-1))

    def withFlux(self, flux):  # noqa: N802  (GalSim's spelling)
        """Same profile with total flux ``flux``."""
        check_finite("flux", flux)
        return self * (jnp.asarray(flux, dtype=float) / self.flux)

    def withScaledFlux(self, ratio):  # noqa: N802
        return self * ratio

    def __mul__(self, ratio):
        if isinstance(ratio, GSObject):
            raise TypeError("use jaxsky.Convolve to convolve profiles; '*' scales the flux")
        check_finite("flux ratio", ratio)
        return _transformed(self, flux_ratio=jnp.asarray(ratio, dtype=float))

    __rmul__ = __mul__

    def __truediv__(self, ratio):
        return self * (1.0 / jnp.asarray(ratio, dtype=float))

    def __add__(self, other):
        from jaxsky.render.compound import Add

        return Add([self, other])

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)


def _abs_g(g1, g2):
    if is_concrete(g1) and is_concrete(g2):
        return np.hypot(np.asarray(g1, float), np.asarray(g2, float))
    return jnp.hypot(g1, g2)


def shear_matrix(g1, g2):
    """Unit-determinant shear matrix A = (1-|g|^2)^(-1/2) [[1+g1, g2], [g2, 1-g1]] (GalSim)."""
    g1 = jnp.asarray(g1, dtype=float)
    g2 = jnp.asarray(g2, dtype=float)
    norm = jax.lax.rsqrt(1.0 - g1 * g1 - g2 * g2)
    return matrix2(norm * (1.0 + g1), norm * g2, norm * g2, norm * (1.0 - g1))


def matrix2(a, b, c, d):
    """Stack ``[[a, b], [c, d]]`` into shape (..., 2, 2), broadcasting batch dimensions."""
    a, b, c, d = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=float) for v in (a, b, c, d)))
    return jnp.stack([jnp.stack([a, b], -1), jnp.stack([c, d], -1)], -2)


def _transformed(obj, *, jac=None, offset=None, flux_ratio=None):
    from jaxsky.render.transform import Transformation

    return Transformation.compose(obj, jac=jac, offset=offset, flux_ratio=flux_ratio)
