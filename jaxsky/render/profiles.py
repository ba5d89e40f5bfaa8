"""Radial light profiles: Gaussian, Exponential, Sersic, DeVaucouleurs, Moffat.

Each is parameterised as in GalSim and stores one canonical size; the other size
definitions are derived (and differentiable). Fourier transforms are normalised to the
total flux (``kvalue(0, 0) == flux``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as sps
from jax.scipy.special import gammainc, gammaln
from scipy.interpolate import CubicSpline

from jaxsky.render import _tables
from jaxsky.render._base import GSObject
from jaxsky.render._checks import check_positive, check_range

__all__ = [
    "Gaussian",
    "Exponential",
    "Sersic",
    "DeVaucouleurs",
    "Moffat",
    "sersic_b",
    "SERSIC_N_RANGE",
    "MOFFAT_BETA_RANGE",
]

SERSIC_N_RANGE = (0.3, 6.2)  # GalSim's documented range for Sersic n
MOFFAT_BETA_RANGE = (1.1, 10.0)  # GalSim needs beta > 1.1 without truncation
_EXP_B1 = 1.6783469900166605  # b_1: hlr / scale radius of an exponential disk
_SQRT_2LN2 = math.sqrt(2.0 * math.log(2.0))


def _f(x):
    return jnp.asarray(x, dtype=float)


def _inplace(op, y, c, swap=False):
    """``op(y, c)`` (``op(c, y)`` with ``swap``) written into ``y`` where the shapes allow.

    For the planning methods (numpy): ``y`` must be a fresh array (an intermediate result);
    the values are those of the plain expression, with one allocation fewer (the large
    temporaries of the planner cost page faults as much as arithmetic).
    """
    a, b = (c, y) if swap else (y, c)
    # float64 (the planner's type) y: any real c gives a float64 result.
    real = np.asarray(c).dtype.kind in "biuf"
    if isinstance(y, np.ndarray) and y.dtype == np.float64 and real:
        if np.broadcast(y, c).shape == y.shape:
            return op(a, b, out=y)
    return op(a, b)


def _np_memo(obj, name, compute, core=0):
    """``compute()``, once per profile object (numpy planning constants): the planner evaluates
    one object many times, and its leaves never change (profiles are immutable; new leaves
    make a new object, without the memo). ``core``: the value's trailing dimensions that are
    not the batch's (the planner's sub-batches index the rest, see ``_planning._take``)."""
    memo = obj.__dict__.setdefault("_np_memo_", {})
    if name not in memo:
        memo[name] = (compute(), core)
    return memo[name][0]


# From about -708 down, exp is (nearly) subnormal or 0 (exp(-746) rounds to 0), and numpy's
# exp runs ~25x slower there (the CPU's subnormal assists); the planner's wings underflow at
# the periodic copies. Above _EXP_FAST it is fast; between the two it is computed apart.
_EXP_FAST, _EXP_ZERO = -700.0, -746.0


def _exp_inplace(y):
    """``np.exp(y)``, same values, written into ``y`` (a fresh float64 array, see
    :func:`_inplace`), with the underflowing arguments kept off numpy's slow path."""
    if not (isinstance(y, np.ndarray) and y.dtype == np.float64 and y.flags.c_contiguous):
        return np.exp(y)
    flat = y.reshape(-1)  # a view (contiguous)
    if not flat.size or flat.min() >= _EXP_FAST:
        return np.exp(y, out=y)
    keep = y >= _EXP_FAST
    sub = np.flatnonzero((flat < _EXP_FAST) & (flat > _EXP_ZERO))
    tiny = np.exp(flat[sub])  # the few subnormal results, exactly
    np.exp(np.maximum(y, _EXP_FAST, out=y), out=y)
    np.multiply(y, keep, out=y)  # 0 below (nan stays nan: nan >= x is False, nan * 0 = nan)
    flat[sub] = tiny
    return y


def _one_size(cls, **sizes):
    given = {k: v for k, v in sizes.items() if v is not None}
    if len(given) != 1:
        names = " | ".join(sizes)
        raise TypeError(f"{cls}: give exactly one of {names} (got {sorted(given) or 'none'})")
    ((name, value),) = given.items()
    check_positive(name, value)
    return name, _f(value)


def _ksq(kx, ky):
    return kx * kx + ky * ky


def _safe_r(x, y):
    """sqrt(x^2 + y^2) with a finite gradient at the origin (double-where)."""
    r2 = _ksq(x, y)
    pos = r2 > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)


def _log_k(ksq):
    """ln|k| and a mask for k = 0, safe for gradients (double-where)."""
    pos = ksq > 0
    return 0.5 * jnp.log(jnp.where(pos, ksq, 1.0)), pos


class _Radial(GSObject):
    @property
    def flux(self):
        return self._flux

    _kind = ""

    def _kfactor(self, kx, ky):
        # Centrally symmetric: the transform is real.
        return self.kvalue(kx, ky), (0.0, 0.0)

    def _kterms(self):
        p, size = self._kshape()
        eye = jnp.eye(2, dtype=jnp.result_type(size))
        # True: round (M = size^2 I), so F(kx, -ky) = F(kx, ky) on the grid (see _factored).
        return self._flux, jnp.zeros(2, eye.dtype), ((self._kind, p, size * size * eye, True),)

    def _log_unit_sb_np(self, r):
        """log of the unit-flux surface brightness at radius ``r`` (numpy, for planning): a
        fresh array (callers write into it)."""
        raise NotImplementedError

    def _sb_np(self, r, bound=True):
        y = _exp_inplace(self._log_unit_sb_np(r))
        return _inplace(np.multiply, y, np.asarray(self._flux, float))

    def _log_sb_np(self, r, bound=True):
        with np.errstate(invalid="ignore"):  # a negative flux has no log (nan)
            return _inplace(np.add, self._log_unit_sb_np(r), np.log(np.asarray(self._flux, float)))

    def _size2_np(self):
        """Squared characteristic size (arcsec^2) used to judge far-field approximations."""
        size = self.fwhm if hasattr(self, "fwhm") else self.half_light_radius
        return np.asarray(size, float) ** 2


# --------------------------------------------------------------------------- Gaussian
class Gaussian(_Radial):
    """I(r) ∝ exp(-r^2 / 2 sigma^2).  F(k) = flux exp(-k^2 sigma^2 / 2)."""

    _leaves = ("sigma", "_flux")
    _kind = "gaussian"  # F = exp(-q / 2), q = k^2 sigma^2

    def _kshape(self):
        return None, self.sigma

    def __init__(self, sigma=None, fwhm=None, half_light_radius=None, flux=1.0):
        name, v = _one_size("Gaussian", sigma=sigma, fwhm=fwhm, half_light_radius=half_light_radius)
        check_range("flux", flux)
        scale = {"sigma": 1.0, "fwhm": 0.5 / _SQRT_2LN2, "half_light_radius": 1.0 / _SQRT_2LN2}
        object.__setattr__(self, "sigma", v * scale[name])
        object.__setattr__(self, "_flux", _f(flux))

    @property
    def fwhm(self):
        return 2.0 * _SQRT_2LN2 * self.sigma

    @property
    def half_light_radius(self):
        return _SQRT_2LN2 * self.sigma

    def kvalue(self, kx, ky):
        return self._flux * jnp.exp(-0.5 * _ksq(kx, ky) * self.sigma**2)

    def xvalue(self, x, y):
        s2 = self.sigma**2
        return self._flux / (2 * jnp.pi * s2) * jnp.exp(-0.5 * _ksq(x, y) / s2)

    def _maxk_np(self, threshold):
        return math.sqrt(-2.0 * math.log(threshold)) / np.asarray(self.sigma, float)

    def _kbound_np(self, k, threshold):
        ks = k * np.asarray(self.sigma, float)
        return np.exp(-0.5 * ks * ks)

    def _log_unit_sb_np(self, r):
        s2 = np.asarray(self.sigma, float) ** 2
        y = _inplace(np.divide, _inplace(np.multiply, 0.5 * r, r), s2)  # 0.5 r^2 / s2
        return _inplace(np.subtract, y, -np.log(2 * np.pi * s2), swap=True)

    def _enclosed_np(self, r):
        return -np.expm1(-0.5 * r * r / np.asarray(self.sigma, float) ** 2)


# --------------------------------------------------------------------------- Exponential
class Exponential(_Radial):
    """I(r) ∝ exp(-r / r0).  F(k) = flux (1 + k^2 r0^2)^(-3/2)."""

    _leaves = ("scale_radius", "_flux")
    _kind = "exponential"  # F = (1 + q)^(-3/2), q = k^2 r0^2

    def _kshape(self):
        return None, self.scale_radius

    def __init__(self, scale_radius=None, half_light_radius=None, flux=1.0):
        name, v = _one_size(
            "Exponential", scale_radius=scale_radius, half_light_radius=half_light_radius
        )
        check_range("flux", flux)
        object.__setattr__(self, "scale_radius", v if name == "scale_radius" else v / _EXP_B1)
        object.__setattr__(self, "_flux", _f(flux))

    @property
    def half_light_radius(self):
        return _EXP_B1 * self.scale_radius

    def kvalue(self, kx, ky):
        x = 1.0 + _ksq(kx, ky) * self.scale_radius**2
        return self._flux * (jax.lax.rsqrt(x) / x)  # x^(-3/2), far cheaper than a power

    def xvalue(self, x, y):
        r0 = self.scale_radius
        return self._flux / (2 * jnp.pi * r0 * r0) * jnp.exp(-_safe_r(x, y) / r0)

    def _maxk_np(self, threshold):
        return math.sqrt(threshold ** (-2.0 / 3.0) - 1.0) / np.asarray(self.scale_radius, float)

    def _kbound_np(self, k, threshold):
        kr = k * np.asarray(self.scale_radius, float)
        return (1.0 + kr * kr) ** -1.5

    def _log_unit_sb_np(self, r):
        r0 = np.asarray(self.scale_radius, float)
        return _inplace(np.subtract, r / r0, -np.log(2 * np.pi * r0 * r0), swap=True)

    def _enclosed_np(self, r):
        # Enclosed flux of an exponential disk is P(2, r / r0).
        return sps.gammainc(2.0, r / np.asarray(self.scale_radius, float))


# --------------------------------------------------------------------------- Sersic
def _sersic_b_newton(n):
    a = 2.0 * n
    # Ciotti & Bertin (1999) asymptotic start, then Newton on P(2n, b) = 1/2.
    b = 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)
    b = jnp.maximum(b, 0.1)
    for _ in range(8):
        dp = jnp.exp((a - 1.0) * jnp.log(b) - b - gammaln(a))
        b = jnp.maximum(b - (gammainc(a, b) - 0.5) / dp, 0.5 * b)
    return b


@jax.custom_jvp
def sersic_b(n):
    """b_n with P(2n, b_n) = 1/2 (P: regularised lower incomplete gamma), so r_e is the hlr."""
    return _sersic_b_newton(n)


@sersic_b.defjvp
def _sersic_b_jvp(primals, tangents):
    (n,), (dn,) = primals, tangents
    b = _sersic_b_newton(n)
    a = 2.0 * n
    # Implicit function theorem on P(a, b) = 1/2 with a = 2n.
    dp_db = jnp.exp((a - 1.0) * jnp.log(b) - b - gammaln(a))
    dp_da = _grad_a(a, b)
    return b, -2.0 * dp_da / dp_db * dn


_grad_a = jnp.vectorize(jax.grad(gammainc, argnums=0))  # d P(a, b) / da, any batch shape


@functools.cache
def _sersic_b_spline():
    n = np.linspace(SERSIC_N_RANGE[0], SERSIC_N_RANGE[1], 2001)
    return CubicSpline(n, sps.gammaincinv(2.0 * n, 0.5))


@functools.cache
def _sersic_b_coef():
    """Piecewise-cubic coefficients (4, 2000) of :func:`_sersic_b_spline` (highest power first)."""
    return np.asarray(_sersic_b_spline().c)


def _sersic_b_fast(n):
    """b_n from the cubic spline through scipy's gammaincinv on n in [0.3, 6.2] (~1e-10 relative).

    For real-space evaluation under jit (:meth:`Sersic.xvalue`, the alias correction of every
    draw): :func:`sersic_b`'s Newton iterations run gammainc's while loops, ~30 us per image
    on XLA CPU. Differentiable (the spline's derivative, ~1e-8 relative); ``n`` outside the
    range (only reachable with traced values) uses the end pieces' cubics.
    """
    c = _sersic_b_coef()
    n0, h = SERSIC_N_RANGE[0], (SERSIC_N_RANGE[1] - SERSIC_N_RANGE[0]) / c.shape[1]
    x = (n - n0) / h
    j = jnp.clip(jnp.floor(x), 0, c.shape[1] - 1).astype(jnp.int32)
    t = (x - j) * h
    a = [jnp.asarray(ci, jnp.result_type(n)).at[j].get(mode="promise_in_bounds") for ci in c]
    return ((a[0] * t + a[1]) * t + a[2]) * t + a[3]


def _sersic_b_np(n):
    """b_n for planning (numpy): a cubic spline through gammaincinv (~1e-10 relative), fast."""
    n = np.asarray(n, float)
    if np.all((n >= SERSIC_N_RANGE[0]) & (n <= SERSIC_N_RANGE[1])):
        return _sersic_b_spline()(n)
    return sps.gammaincinv(2.0 * n, 0.5)  # pragma: no cover - constructors keep n in range


def _check_n(n):
    check_range("n", n, *SERSIC_N_RANGE)


class Sersic(_Radial):
    """I(r) ∝ exp(-b_n (r / r_e)^(1/n)), r_e the half-light radius, n continuous in [0.3, 6.2].

    The Fourier transform comes from a precomputed table over (n, ln k r_e) with exact
    derivatives (bicubic Hermite), so it is differentiable in n, r_e and flux.
    """

    _leaves = ("n", "half_light_radius", "_flux")
    _kind = "sersic"  # the table at u = ln(k r_e) = ln(q) / 2

    def _kshape(self):
        return self.n, self.half_light_radius

    def __init__(self, n, half_light_radius=None, scale_radius=None, flux=1.0):
        _check_n(n)
        name, v = _one_size(
            "Sersic", half_light_radius=half_light_radius, scale_radius=scale_radius
        )
        check_range("flux", flux)
        n = _f(n)
        if name == "scale_radius":  # r_e = r0 b_n^n
            v = v * sersic_b(n) ** n
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "half_light_radius", v)
        object.__setattr__(self, "_flux", _f(flux))

    @property
    def scale_radius(self):
        return self.half_light_radius / sersic_b(self.n) ** self.n

    def kvalue(self, kx, ky):
        logk, pos = _log_k(_ksq(kx, ky))
        u = logk + jnp.log(self.half_light_radius)
        # Beyond the table the cusp gives F ~ k^-(2 + 1/n) (the leading asymptotic term).
        val = _tables.eval_table("sersic", self.n, u, "power")
        return self._flux * jnp.where(pos, val, 1.0)

    def xvalue(self, x, y):
        n, re = self.n, self.half_light_radius
        b = _sersic_b_fast(n)
        # I(r) = flux b^2n / (2 pi n Gamma(2n) re^2) exp(-b (r/re)^(1/n))  (Graham & Driver 2005)
        log_i0 = 2 * n * jnp.log(b) - jnp.log(2 * jnp.pi * n * re * re) - gammaln(2 * n)
        rr = _safe_r(x, y) / re
        pos = rr > 0
        power = jnp.where(pos, jnp.exp(jnp.log(jnp.where(pos, rr, 1.0)) / n), 0.0)
        return self._flux * jnp.exp(log_i0 - b * power)

    def _maxk_np(self, threshold):
        n = np.asarray(self.n, float)
        return _table_maxk("sersic", n, threshold, tail=lambda: _sersic_k_tail(n)) / np.asarray(
            self.half_light_radius, float
        )

    def _kbound_np(self, k, threshold):
        n = np.asarray(self.n, float)
        kr = k * np.asarray(self.half_light_radius, float)
        return _table_kbound("sersic", n, kr, tail=_sersic_k_tail(n))

    def _b_np(self):
        return _np_memo(self, "b", lambda: _sersic_b_np(np.asarray(self.n, float)))

    def _log_unit_sb_np(self, r):
        n, re = np.asarray(self.n, float), np.asarray(self.half_light_radius, float)
        b = self._b_np()

        def log_i0():
            # I(r) = flux b^2n / (2 pi n Gamma(2n) re^2) exp(-b (r/re)^(1/n))
            return 2 * n * np.log(b) - np.log(2 * np.pi * n * re * re) - sps.gammaln(2 * n)

        log_i0 = _np_memo(self, "log_i0", log_i0)
        y = _inplace(np.power, r / re, 1.0 / n)
        return _inplace(np.subtract, _inplace(np.multiply, y, b, swap=True), log_i0, swap=True)

    def _enclosed_np(self, r):
        n, re = np.asarray(self.n, float), np.asarray(self.half_light_radius, float)
        return sps.gammainc(2.0 * n, self._b_np() * (r / re) ** (1.0 / n))


def DeVaucouleurs(half_light_radius=None, scale_radius=None, flux=1.0):  # noqa: N802
    """Sersic profile with n = 4 (as GalSim's ``DeVaucouleurs``)."""
    return Sersic(4.0, half_light_radius=half_light_radius, scale_radius=scale_radius, flux=flux)


# --------------------------------------------------------------------------- Moffat
class Moffat(_Radial):
    """I(r) ∝ (1 + (r / r_d)^2)^(-beta), untruncated, beta continuous in (1.1, 10].

    F(k) = flux x^nu K_nu(x) / (2^(nu-1) Gamma(nu)) with nu = beta - 1, x = k r_d, taken from a
    precomputed table over (beta, ln x) with exact derivatives, so it is differentiable in beta.
    """

    _leaves = ("beta", "scale_radius", "_flux")
    _kind = "moffat"  # the table at u = ln(k r_d) = ln(q) / 2

    def _kshape(self):
        return self.beta, self.scale_radius

    def __init__(self, beta, scale_radius=None, fwhm=None, half_light_radius=None, flux=1.0):
        check_range("beta", beta, *MOFFAT_BETA_RANGE, lo_open=True)
        name, v = _one_size(
            "Moffat", scale_radius=scale_radius, fwhm=fwhm, half_light_radius=half_light_radius
        )
        check_range("flux", flux)
        beta = _f(beta)
        if name == "fwhm":  # fwhm = 2 r_d sqrt(2^(1/beta) - 1)
            v = v / (2.0 * jnp.sqrt(2.0 ** (1.0 / beta) - 1.0))
        elif name == "half_light_radius":  # hlr = r_d sqrt(2^(1/(beta-1)) - 1)
            v = v / jnp.sqrt(2.0 ** (1.0 / (beta - 1.0)) - 1.0)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "scale_radius", v)
        object.__setattr__(self, "_flux", _f(flux))

    @property
    def fwhm(self):
        return 2.0 * self.scale_radius * jnp.sqrt(2.0 ** (1.0 / self.beta) - 1.0)

    @property
    def half_light_radius(self):
        return self.scale_radius * jnp.sqrt(2.0 ** (1.0 / (self.beta - 1.0)) - 1.0)

    def kvalue(self, kx, ky):
        logk, pos = _log_k(_ksq(kx, ky))
        val = _tables.eval_table("moffat", self.beta, logk + jnp.log(self.scale_radius))
        return self._flux * jnp.where(pos, val, 1.0)

    def xvalue(self, x, y):
        rd2 = self.scale_radius**2
        norm = self._flux * (self.beta - 1.0) / (jnp.pi * rd2)
        return norm * (1.0 + _ksq(x, y) / rd2) ** (-self.beta)

    def _maxk_np(self, threshold):
        beta = np.asarray(self.beta, float)
        return _table_maxk("moffat", beta, threshold) / np.asarray(self.scale_radius, float)

    def _kbound_np(self, k, threshold):
        kr = k * np.asarray(self.scale_radius, float)
        return _table_kbound("moffat", np.asarray(self.beta, float), kr)

    def _log_unit_sb_np(self, r):
        beta, rd = np.asarray(self.beta, float), np.asarray(self.scale_radius, float)
        y = r / rd
        y = np.log1p(np.square(y, out=y), out=y) if isinstance(y, np.ndarray) else np.log1p(y**2)
        y = _inplace(np.multiply, y, beta, swap=True)
        return _inplace(np.subtract, y, np.log((beta - 1) / (np.pi * rd * rd)), swap=True)

    def _enclosed_np(self, r):
        # Enclosed flux: 1 - (1 + r^2/r_d^2)^(1 - beta).
        beta, rd = np.asarray(self.beta, float), np.asarray(self.scale_radius, float)
        return 1.0 - (1 + (r / rd) ** 2) ** (1.0 - beta)


@functools.lru_cache(maxsize=32)
def _table_reach(name, threshold):
    """Per interval [p_i, p_i+1] of a table's p grid: the last u index where the interpolated
    |F| can reach ``threshold`` (-1 if nowhere). Linear interpolation in p stays within
    max(|F_i|, |F_i+1|) at each u; the margin covers its rounding."""
    F = np.abs(_tables.table_numpy(name)["F"])
    reach = np.maximum(F[:-1], F[1:]) * (1.0 + 1e-9) >= threshold
    last = F.shape[1] - 1 - np.argmax(reach[:, ::-1], axis=-1)
    return np.where(reach.any(axis=-1), last, -1)


def _sersic_k_tail(n):
    """Exponent of the Sersic transform's power-law decay beyond the table, F ~ k^-(2 + 1/n)
    (the cusp r^(1/n) at the centre)."""
    return 2.0 + 1.0 / n


@functools.cache
def _table_envelope(name):
    """max_{j' >= j} |F[i, j']| of a table (the running maximum from the high-k end)."""
    F = np.abs(_tables.table_numpy(name)["F"])
    return np.maximum.accumulate(F[:, ::-1], axis=1)[:, ::-1]


def _table_kbound(name, p, kr, tail=None):
    """Upper bound on |F| at all k r >= ``kr`` (table units) for shape parameters ``p``.

    Between two p nodes the interpolated |F| stays within the larger node's (as in
    :func:`_table_reach`); between two u nodes within the larger of them: so the envelope at
    the u node at or below ln(kr), of both p nodes, bounds every |F| beyond (margin 1e-9 for
    rounding). Past the table's end, ``tail``: the exponent of the power-law decay
    (F ~ k^-tail) of its last value; without it, the last envelope value.
    """
    z, env = _tables.table_numpy(name), _table_envelope(name)
    pn, u = z["p"], z["u"]
    p, kr = np.broadcast_arrays(np.asarray(p, float), np.asarray(kr, float))
    i = np.clip(np.searchsorted(pn, p, side="right") - 1, 0, len(pn) - 2)
    with np.errstate(divide="ignore"):
        uu = np.log(kr)
    j = np.clip(np.floor((uu - u[0]) / (u[1] - u[0])), 0, len(u) - 1).astype(int)
    out = np.maximum(env[i, j], env[i + 1, j]) * (1.0 + 1e-9)
    if tail is not None:
        past = np.maximum(uu - u[-1], 0.0)
        out = out * np.exp(-np.broadcast_to(tail, p.shape) * past)
    return out


def _interp_rows(z, p, i, cols):
    """np.interp along p of the table's F at the u indices ``cols`` (n, w), for each p (n,)."""
    pn, F = z["p"], z["F"]
    fi, fi1 = F[i[:, None], cols], F[i[:, None] + 1, cols]
    rows = (fi1 - fi) / (pn[i + 1] - pn[i])[:, None] * (p - pn[i])[:, None] + fi
    rows = np.where((p >= pn[-1])[:, None], F[-1, cols], rows)
    return np.where((p <= pn[0])[:, None], F[0, cols], rows)


def _table_maxk(name, p, threshold, tail=None):
    """k r (in units of the table's radius) beyond which |F| < threshold, for each p."""
    z = _tables.table_numpy(name)
    pn, u = z["p"], z["u"]
    p = np.atleast_1d(np.asarray(p, float))
    i = np.clip(np.searchsorted(pn, p, side="right") - 1, 0, len(pn) - 2)
    # The last grid index where |F| is still above the threshold: searched in a window below
    # the interval's reach (past it |F| < threshold), all of the row where that fails.
    width = min(32, len(u))
    reach = _table_reach(name, float(threshold))[i]
    cols = np.maximum(reach - width + 1, 0)[:, None] + np.arange(width)
    above = np.abs(_interp_rows(z, p, i, cols)) >= threshold
    found = above.any(axis=-1) & (reach >= 0)
    last = cols[np.arange(len(p)), width - 1 - np.argmax(above[:, ::-1], axis=-1)]
    if not found.all():
        j = np.flatnonzero(~found)
        full = np.abs(_interp_rows(z, p[j], i[j], np.arange(len(u))[None, :])) >= threshold
        # (no index above the threshold gives the last index, as the plain search did)
        last[j] = len(u) - 1 - np.argmax(full[:, ::-1], axis=-1)
    u_max = u[last]
    if tail is not None:
        t = np.broadcast_to(np.atleast_1d(tail()), p.shape)
        end = _interp_rows(z, p, i, np.array([[len(u) - 1]]))[:, 0]
        at_end = np.abs(end) >= threshold
        extra = np.log(np.maximum(np.abs(end), threshold) / threshold) / t
        u_max = np.where(at_end, u[-1] + extra, u_max)
    out = np.exp(u_max + (u[1] - u[0]))
    return out if out.size > 1 else out.reshape(np.shape(np.asarray(p))[:-1] or ())[()]
