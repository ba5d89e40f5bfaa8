#!/usr/bin/env python
"""Generate the tabulated radial Fourier transforms used by ``jaxsky.render``.

Two package-data files are written (``np.savez_compressed``, all float64):

``sersic_ft.npz``
    Sersic profile ``I(r) = exp(-b_n (r/r_e)**(1/n))`` (untruncated), tabulated
    on nodes of the index ``p = n`` and of ``u = ln(k r_e)``.
``moffat_ft.npz``
    Moffat profile ``I(r) = (1 + (r/r_d)**2)**(-beta)`` (untruncated), tabulated
    on nodes of ``p = beta`` and of ``u = ln(k r_d)``.

Both files hold ``p``, ``u``, ``F`` (shape ``(Np, Nu)``), its exact derivatives
``F_u = dF/du``, ``F_p = dF/dp``, ``F_pu = d2F/(dp du)`` (for bicubic Hermite
interpolation) and a JSON ``meta`` string.  ``F`` is the 2-D Fourier transform
of the profile, i.e. the order-0 Hankel transform
``F(k) = 2 pi int_0^inf I(r) J0(k r) r dr / flux``, so that ``F(0) = 1``.
The Sersic file also stores ``b`` (``b_n``) and ``b_p = db_n/dn``.

Methods
-------
Sersic: with ``r_e = 1`` and ``r = (t/b)**n``,
``F(k) = Gamma(2n)**-1 int_0^inf exp(-t) t**(2n-1) J0(k (t/b)**n) dt``.
Inserting the Mellin-Barnes integral of ``J0`` (Mellin transform
``M(s) = 2**(s-1) Gamma(s/2) / Gamma(1 - s/2)``, DLMF 10.22.43) and integrating
over ``t`` (Euler's Gamma integral) gives

    F(k) = (2 pi i)**-1 int_{c - i inf}^{c + i inf} M(s) (k/b**n)**(-s)
           Gamma(2n - n s) / Gamma(2n) ds,          0 < c < 3/2

(by analytic continuation any ``0 < c < 2 + 1/n`` gives the same value, as the
zero of ``1/Gamma(1 - s/2)`` at ``s = 2`` cancels the pole of ``Gamma(2n - ns)``).
Moving the contour to ``-2 < c < 0`` picks up the residue 1 of the pole of
``Gamma(s/2)`` at ``s = 0``, so ``F = 1 + (line integral)`` there.  On
``s = c + i tau`` the integrand decays like ``exp(-pi n |tau| / 2)`` and is
analytic, so the trapezoid rule in ``tau`` converges exponentially.  By Poisson
summation its only error (besides truncation) is the sum of aliases
``exp(2 pi j c / h) H_c(ln k + 2 pi j / h)``, ``j != 0``, which is below 1e-20
for the step used here.  We evaluate both ``c = -1`` and ``c = +1`` and, for
each ``u``, keep the one with the smaller sum of ``|terms|`` (the rounding
error scale), which removes the cancellation at small and large ``k``.
Derivatives use the same nodes: ``d/du`` multiplies the integrand by ``-s``,
``d/dn`` by ``s ln b + s n b'/b + (2 - s) psi(2n - ns) - 2 psi(2n)``.
``b_n`` solves ``P(2n, b_n) = 1/2`` (scipy ``gammaincinv``); by implicit
differentiation ``db/dn = -2 dP/da / dP/dx`` with ``dP/dx = x**(a-1) e**-x /
Gamma(a)`` and ``dP/da`` from mpmath at 40 digits.

Moffat: with ``nu = beta - 1``, ``x = k r_d``,
``F = x**nu K_nu(x) / (2**(nu-1) Gamma(nu))`` (Hankel transform from Gradshteyn &
Ryzhik 6.565.4 with flux ``pi r_d**2 / (beta - 1)``) and
``dF/du = -x**(nu+1) K_{nu-1}(x) / (2**(nu-1) Gamma(nu))`` (DLMF 10.29.4).
``F`` and ``F_u`` use ``scipy.special.kv``.  The order derivative
``dK_mu/dmu = int_0^inf t sinh(mu t) exp(-x cosh t) dt`` (from DLMF 10.32.9) is
evaluated with the trapezoid rule (integrand analytic and double-exponentially
decaying, so the rule converges exponentially), with all factors combined in
log space; the normalisation contributes ``-(ln 2 + psi(nu)) F``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
import time

import mpmath
import numpy as np
import scipy
from scipy.special import gammaincinv, gammaln, kv, loggamma, psi

LN2 = math.log(2.0)

# Default grids (see module docstring).
SERSIC_GRID = {"p0": 0.3, "dp": 0.05, "Np": 119, "u0": -10.0, "du": 0.02, "Nu": 901}
MOFFAT_GRID = {"p0": 1.1, "dp": 0.05, "Np": 179, "u0": -10.0, "du": 0.02, "Nu": 726}

# Sersic Mellin-Barnes quadrature parameters.
SERSIC_TAU_STEP = 0.05  # trapezoid step in tau; aliasing error ~ exp(-2 pi / h)
SERSIC_CONTOURS = (-1.0, 1.0)  # Re(s) of the two contours (poles at 0, -2 and 2 + 1/n)
SERSIC_TRUNC_REL = 1e-24  # drop tau where |term| < this * |term(tau=0)|

# Moffat order-derivative quadrature parameters.
MOFFAT_T_STEP = 0.02
MOFFAT_T_MAX = 20.0  # x cosh(t) > 1e4 at t = 20 for x >= e^-10


def uniform_nodes(x0: float, dx: float, num: int) -> np.ndarray:
    """Return ``x0 + dx * arange(num)`` rounded to 12 decimals (exact decimal nodes)."""
    return np.round(x0 + dx * np.arange(num), 12)


def midcell_interp_error(arrays: dict, fn, core: tuple[float, float]) -> dict:
    """Max error of bicubic Hermite interpolation at all cell midpoints.

    At ``s = t = 1/2`` the cubic Hermite weights are ``1/2, 1/2`` for the end
    values and ``+h/8, -h/8`` for the end slopes, so the tensor-product value
    is a fixed stencil of the four corners.  ``fn(p, u)`` must return the
    directly computed ``(F, ...)``.  ``core`` is a ``p`` range reported separately.
    """
    p, u = arrays["p"], arrays["u"]
    hp, hu = p[1] - p[0], u[1] - u[0]
    wv, wd = (0.5, 0.5), (hp / 8, -hp / 8)
    wu_v, wu_d = (0.5, 0.5), (hu / 8, -hu / 8)
    interp = np.zeros((p.size - 1, u.size - 1))
    for a in (0, 1):
        for c in (0, 1):
            sl = (slice(a, p.size - 1 + a), slice(c, u.size - 1 + c))
            interp += wv[a] * wu_v[c] * arrays["F"][sl] + wd[a] * wu_v[c] * arrays["F_p"][sl]
            interp += wv[a] * wu_d[c] * arrays["F_u"][sl] + wd[a] * wu_d[c] * arrays["F_pu"][sl]
    pm, um = 0.5 * (p[1:] + p[:-1]), 0.5 * (u[1:] + u[:-1])
    err = np.abs(interp - np.stack([fn(q, um)[0] for q in pm]))
    in_core = (pm >= core[0]) & (pm <= core[1])
    return {
        "bicubic_hermite_midcell_max_abs_err": float(err.max()),
        f"bicubic_hermite_midcell_max_abs_err_p_in_[{core[0]},{core[1]}]": float(
            err[in_core].max()
        ),
    }


# --------------------------------------------------------------------------
# Sersic
# --------------------------------------------------------------------------


def sersic_b(n: np.ndarray | float) -> np.ndarray:
    """Return ``b_n`` solving ``P(2n, b_n) = 1/2`` (half-light radius condition)."""
    return gammaincinv(2.0 * np.asarray(n, dtype=float), 0.5)


def sersic_b_mpmath(n: np.ndarray) -> np.ndarray:
    """Return ``b_n`` solved with mpmath at 40 digits (used to check ``sersic_b``)."""
    out = []
    with mpmath.workdps(40):
        for ni in np.atleast_1d(n):
            a = 2 * mpmath.mpf(float(ni))
            root = mpmath.findroot(
                lambda x, a=a: mpmath.gammainc(a, 0, x, regularized=True) - mpmath.mpf(0.5),
                mpmath.mpf(float(sersic_b(ni))),
            )
            out.append(float(root))
    return np.array(out)


def sersic_b_prime(n: np.ndarray | float, b: np.ndarray | float | None = None) -> np.ndarray:
    """Return ``db_n/dn`` by implicit differentiation of ``P(2n, b_n) = 1/2``.

    ``dP/da`` is computed with mpmath (40 digits, its own high-precision finite
    difference); ``dP/dx = x**(a-1) exp(-x) / Gamma(a)`` is exact.
    """
    n_arr = np.atleast_1d(np.asarray(n, dtype=float))
    b_arr = sersic_b(n_arr) if b is None else np.atleast_1d(np.asarray(b, dtype=float))
    out = np.empty_like(n_arr)
    with mpmath.workdps(40):
        for i, (ni, bi) in enumerate(zip(n_arr, b_arr, strict=True)):
            a = 2 * mpmath.mpf(float(ni))
            x = mpmath.mpf(float(bi))
            dp_da = mpmath.diff(lambda aa, x=x: mpmath.gammainc(aa, 0, x, regularized=True), a)
            dp_dx = mpmath.exp((a - 1) * mpmath.log(x) - x - mpmath.loggamma(a))
            out[i] = float(-2 * dp_da / dp_dx)
    return out.reshape(np.shape(n))


def _sersic_contour_nodes(n: float, b: float, b_p: float, c: float, h: float):
    """Nodes ``tau``, log-integrand (without the k factor) and d/dn factor on Re(s) = c.

    Returns ``(s, log_a, dlog_dn, weights)`` where the integrand of the line
    integral is ``exp(log_a - s u)`` and ``F_line = Re(sum(weights * exp(...)))``.
    The tau range is cut where ``|term| < SERSIC_TRUNC_REL * |term(0)|``; this
    ratio does not depend on ``u``.
    """
    # Generous first guess of the cut-off: decay is exp(-pi n tau / 2).
    tau_max = 2.0 * (60.0 + 10.0 * n) / (math.pi * n) + 20.0
    tau = h * np.arange(int(math.ceil(tau_max / h)) + 1)
    s = c + 1j * tau
    z = n * (2.0 - s)  # argument of Gamma(2n - n s)
    log_m = (s - 1.0) * LN2 + loggamma(0.5 * s) - loggamma(1.0 - 0.5 * s)
    log_a = log_m + loggamma(z) - gammaln(2.0 * n) + s * (n * math.log(b))
    rel = log_a.real - log_a.real[0]
    keep = np.nonzero(rel > math.log(SERSIC_TRUNC_REL))[0]
    last = int(keep[-1]) + 2
    if last >= tau.size:
        raise RuntimeError(f"tau range too short for n={n}, c={c}")
    s, z, log_a = s[:last], z[:last], log_a[:last]
    dlog_dn = s * math.log(b) + s * (n * b_p / b) + (2.0 - s) * psi(z) - 2.0 * psi(2.0 * n)
    weights = np.full(s.size, h / math.pi)
    weights[0] *= 0.5  # trapezoid end point; conjugate symmetry: F = (1/pi) Re int_0^inf
    return s, log_a, dlog_dn, weights


def _sersic_on_contour(n, b, b_p, u, c, h):
    """Evaluate ``F, F_u, F_n, F_nu`` and a rounding-error scale on one contour."""
    s, log_a, dlog_dn, w = _sersic_contour_nodes(n, b, b_p, c, h)
    terms = np.exp(log_a[None, :] - u[:, None] * s[None, :])  # (Nu, Ntau)
    vecs = np.stack([w, -s * w, dlog_dn * w, -s * dlog_dn * w], axis=1)
    out = (terms @ vecs).real
    if c < 0:
        out[:, 0] += 1.0  # residue at s = 0
    scale = np.abs(terms) @ w  # sum |terms|: rounding error ~ eps * scale
    return out, scale


def sersic_ft(
    n: float,
    u: np.ndarray,
    h: float = SERSIC_TAU_STEP,
    b: float | None = None,
    b_p: float | None = None,
    return_info: bool = False,
):
    """Radial Fourier transform of the Sersic profile (``r_e = 1``) and derivatives.

    Parameters
    ----------
    n : Sersic index (0.3 ... 6.2 tested; any n > 0 works in principle).
    u : array of ``ln(k r_e)``.
    h : trapezoid step in ``tau``.
    b, b_p : optionally supply ``b_n`` and ``db_n/dn``.
    return_info : also return a dict of diagnostics.

    Returns
    -------
    ``(F, F_u, F_n, F_nu)`` arrays shaped like ``u`` (and the info dict).
    """
    u = np.asarray(u, dtype=float)
    b = float(sersic_b(n)) if b is None else float(b)
    b_p = float(sersic_b_prime(n, b)) if b_p is None else float(b_p)
    results = [_sersic_on_contour(n, b, b_p, u, c, h) for c in SERSIC_CONTOURS]
    scales = np.stack([r[1] for r in results])
    pick = np.argmin(scales, axis=0)
    vals = np.where(pick[:, None] == 0, results[0][0], results[1][0])
    f, f_u, f_n, f_nu = (vals[:, i] for i in range(4))
    if not return_info:
        return f, f_u, f_n, f_nu
    eps = np.finfo(float).eps
    chosen_scale = scales[pick, np.arange(u.size)]
    info = {
        "round_err_est": eps * chosen_scale,
        "contour_choice": np.asarray(SERSIC_CONTOURS)[pick],
        # Agreement of the two contours where both are well conditioned.
        "contour_diff": np.abs(results[0][0] - results[1][0]),
        "both_ok": np.max(scales, axis=0) * eps < 1e-14,
    }
    return f, f_u, f_n, f_nu, info


def build_sersic(grid: dict, h: float = SERSIC_TAU_STEP, verbose: bool = True):
    """Build the Sersic table arrays and diagnostics."""
    t0 = time.time()
    p = uniform_nodes(grid["p0"], grid["dp"], grid["Np"])
    u = uniform_nodes(grid["u0"], grid["du"], grid["Nu"])
    b = sersic_b(p)
    b_p = sersic_b_prime(p, b)
    shape = (p.size, u.size)
    f, f_u, f_p, f_pu = (np.empty(shape) for _ in range(4))
    max_round = 0.0
    max_contour_diff = np.zeros(4)
    for i, n in enumerate(p):
        f[i], f_u[i], f_p[i], f_pu[i], info = sersic_ft(n, u, h, b[i], b_p[i], return_info=True)
        max_round = max(max_round, float(info["round_err_est"].max()))
        ok = info["both_ok"]
        if ok.any():
            max_contour_diff = np.maximum(max_contour_diff, info["contour_diff"][ok].max(axis=0))
    t_main = time.time() - t0

    # Self-checks recorded in the metadata.
    acc = {
        "max_rounding_error_estimate_F": max_round,
        "max_abs_diff_between_contours_c=-1_vs_c=+1 [F,F_u,F_p,F_pu]": [
            float(x) for x in max_contour_diff
        ],
    }
    for n_exact in (0.5, 1.0):
        i = int(np.argmin(np.abs(p - n_exact)))
        k2 = np.exp(2 * u)
        if n_exact == 0.5:
            sig2 = 1.0 / (2.0 * LN2)  # I = exp(-ln2 r^2) = exp(-r^2 / (2 sigma^2))
            fe = np.exp(-0.5 * k2 * sig2)
            fue = -k2 * sig2 * fe
        else:
            r02 = 1.0 / b[i] ** 2  # I = exp(-r / r0), F = (1 + k^2 r0^2)^-1.5
            fe = (1 + k2 * r02) ** -1.5
            fue = -3.0 * k2 * r02 * (1 + k2 * r02) ** -2.5
        acc[f"n={n_exact}_exact_max_abs_err_F"] = float(np.abs(f[i] - fe).max())
        acc[f"n={n_exact}_exact_max_abs_err_F_u"] = float(np.abs(f_u[i] - fue).max())
    # Step-halving check of the tau quadrature on a few indices.
    halving = np.zeros(4)
    for i in np.unique(np.linspace(0, p.size - 1, 7).astype(int)):
        ref = sersic_ft(p[i], u, h / 2, b[i], b_p[i])
        halving = np.maximum(
            halving,
            [
                np.abs(a - r).max()
                for a, r in zip((f[i], f_u[i], f_p[i], f_pu[i]), ref, strict=True)
            ],
        )
    acc["max_abs_change_when_halving_tau_step [F,F_u,F_p,F_pu]"] = [float(x) for x in halving]
    acc["b_max_rel_err_vs_mpmath"] = float(np.max(np.abs(b / sersic_b_mpmath(p) - 1.0)))
    arrays = {"p": p, "u": u, "F": f, "F_u": f_u, "F_p": f_p, "F_pu": f_pu, "b": b, "b_p": b_p}
    acc.update(midcell_interp_error(arrays, lambda n, uu: sersic_ft(n, uu, h), (0.5, 6.2)))
    if verbose:
        print(f"sersic: table {shape} in {t_main:.1f} s; checks done at {time.time() - t0:.1f} s")
        print(json.dumps(acc, indent=1))
    meta = {
        "profile": "sersic",
        "definition": "I(r) = exp(-b_n (r/r_e)^(1/n)), untruncated; F(k) = 2 pi int I J0(kr) r dr"
        " / flux; F(0) = 1",
        "p": "Sersic index n",
        "u": "ln(k r_e), r_e = half-light radius",
        "arrays": {
            "F": "(Np, Nu)",
            "F_u": "dF/du",
            "F_p": "dF/dn",
            "F_pu": "d2F/dn du",
            "b": "b_n: P(2n, b_n) = 1/2 (scipy gammaincinv)",
            "b_p": "db_n/dn",
        },
        "grid": {
            "p0": float(p[0]),
            "dp": grid["dp"],
            "Np": int(p.size),
            "u0": float(u[0]),
            "du": grid["du"],
            "Nu": int(u.size),
        },
        "method": (
            "Mellin-Barnes line integral F = (2 pi i)^-1 int M_J0(s) (k/b^n)^-s "
            "Gamma(2n - ns)/Gamma(2n) ds on Re(s) = -1 (plus residue 1) or +1, whichever "
            "has the smaller sum |terms|; trapezoid rule in Im(s), exact derivatives "
            "with the same nodes; db/dn by implicit differentiation with mpmath dP/da"
        ),
        "quadrature": {
            "tau_step": h,
            "contours": list(SERSIC_CONTOURS),
            "truncation_rel": SERSIC_TRUNC_REL,
        },
        "accuracy": acc,
        "seconds": round(time.time() - t0, 1),
    }
    return arrays, meta


# --------------------------------------------------------------------------
# Moffat
# --------------------------------------------------------------------------


def _log_sinh(a: np.ndarray) -> np.ndarray:
    """Return ``ln sinh(a)`` for ``a >= 0`` (``-inf`` at 0) without overflow."""
    with np.errstate(divide="ignore"):
        return a + np.log1p(-np.exp(-2.0 * a)) - LN2


def _order_derivative_integral(
    mu: float,
    log_pref: np.ndarray,
    x: np.ndarray,
    h: float = MOFFAT_T_STEP,
    t_max: float = MOFFAT_T_MAX,
):
    """Return ``exp(log_pref) * dK_mu(x)/dmu`` using
    ``dK_mu/dmu = int_0^inf t sinh(mu t) exp(-x cosh t) dt`` (trapezoid rule).

    The integrand vanishes at ``t = 0`` and is even in ``t``, so the plain sum
    over ``t = h, 2h, ...`` is the (exponentially convergent) trapezoid rule.
    """
    if mu == 0.0:
        return np.zeros_like(x)
    t = h * np.arange(1, int(math.ceil(t_max / h)) + 1)
    log_t = np.log(t) + _log_sinh(abs(mu) * t)
    expo = log_t[None, :] + log_pref[:, None] - x[:, None] * np.cosh(t)[None, :]
    return math.copysign(h, mu) * np.exp(expo).sum(axis=1)


def moffat_k_integral(
    nu: float,
    log_pref: np.ndarray,
    x: np.ndarray,
    h: float = MOFFAT_T_STEP,
    t_max: float = MOFFAT_T_MAX,
):
    """Return ``exp(log_pref) * K_nu(x)`` from ``int_0^inf cosh(nu t) exp(-x cosh t) dt``.

    Used only as a check of ``scipy.special.kv`` and of the quadrature.
    """
    t = h * np.arange(int(math.ceil(t_max / h)) + 1)
    log_c = np.logaddexp(nu * t, -nu * t) - LN2  # ln cosh(nu t)
    w = np.full(t.size, h)
    w[0] *= 0.5
    expo = log_c[None, :] + log_pref[:, None] - x[:, None] * np.cosh(t)[None, :]
    return np.exp(expo) @ w


def moffat_ft(beta: float, u: np.ndarray, h: float = MOFFAT_T_STEP):
    """Radial Fourier transform of the Moffat profile (``r_d = 1``) and derivatives.

    Returns ``(F, F_u, F_beta, F_beta_u)`` for ``u = ln(k r_d)``.
    """
    u = np.asarray(u, dtype=float)
    nu = beta - 1.0
    x = np.exp(u)
    log_norm = (nu - 1.0) * LN2 + gammaln(nu)  # ln(2^(nu-1) Gamma(nu))
    dlog_norm = LN2 + psi(nu)
    f = np.exp(nu * u - log_norm) * kv(nu, x)
    f_u = -np.exp((nu + 1.0) * u - log_norm) * kv(nu - 1.0, x)
    dk1 = _order_derivative_integral(nu, nu * u - log_norm, x, h)
    dk2 = _order_derivative_integral(nu - 1.0, (nu + 1.0) * u - log_norm, x, h)
    f_b = u * f + dk1 - dlog_norm * f
    f_bu = u * f_u - dk2 - dlog_norm * f_u
    return f, f_u, f_b, f_bu


def build_moffat(grid: dict, h: float = MOFFAT_T_STEP, verbose: bool = True):
    """Build the Moffat table arrays and diagnostics."""
    t0 = time.time()
    p = uniform_nodes(grid["p0"], grid["dp"], grid["Np"])
    u = uniform_nodes(grid["u0"], grid["du"], grid["Nu"])
    shape = (p.size, u.size)
    f, f_u, f_p, f_pu = (np.empty(shape) for _ in range(4))
    for i, beta in enumerate(p):
        f[i], f_u[i], f_p[i], f_pu[i] = moffat_ft(beta, u, h)
    t_main = time.time() - t0

    acc = {}
    # kv against the integral representation, and t-step halving/doubling.
    x = np.exp(u)
    kv_diff = 0.0
    step = np.zeros(2)
    for i in np.unique(np.linspace(0, p.size - 1, 9).astype(int)):
        nu = p[i] - 1.0
        log_norm = (nu - 1.0) * LN2 + gammaln(nu)
        f_int = moffat_k_integral(nu, nu * u - log_norm, x, h)
        kv_diff = max(kv_diff, float(np.abs(f_int - f[i]).max()))
        _, _, fb2, fbu2 = moffat_ft(p[i], u, 2 * h)
        step = np.maximum(step, [np.abs(fb2 - f_p[i]).max(), np.abs(fbu2 - f_pu[i]).max()])
    acc["max_abs_diff_F_kv_vs_cosh_integral"] = kv_diff
    acc["max_abs_change_when_doubling_t_step [F_p,F_pu]"] = [float(v) for v in step]
    arrays = {"p": p, "u": u, "F": f, "F_u": f_u, "F_p": f_p, "F_pu": f_pu}
    acc.update(midcell_interp_error(arrays, lambda bb, uu: moffat_ft(bb, uu, h), (1.5, 10.0)))
    if verbose:
        print(f"moffat: table {shape} in {t_main:.1f} s; checks done at {time.time() - t0:.1f} s")
        print(json.dumps(acc, indent=1))
    meta = {
        "profile": "moffat",
        "definition": "I(r) = (1 + (r/r_d)^2)^(-beta), untruncated; F(k) = 2 pi int I J0(kr) r dr"
        " / flux; F(0) = 1",
        "p": "Moffat beta",
        "u": "ln(k r_d), r_d = scale radius",
        "arrays": {"F": "(Np, Nu)", "F_u": "dF/du", "F_p": "dF/dbeta", "F_pu": "d2F/dbeta du"},
        "grid": {
            "p0": float(p[0]),
            "dp": grid["dp"],
            "Np": int(p.size),
            "u0": float(u[0]),
            "du": grid["du"],
            "Nu": int(u.size),
        },
        "method": (
            "closed form F = x^nu K_nu(x)/(2^(nu-1) Gamma(nu)), nu = beta-1, x = k r_d "
            "(scipy kv); f_u = -x^(nu+1) K_(nu-1)(x)/(2^(nu-1) Gamma(nu)); dK/dnu = "
            "int t sinh(nu t) exp(-x cosh t) dt by trapezoid rule in log space; "
            "normalisation derivative via digamma"
        ),
        "quadrature": {"t_step": h, "t_max": MOFFAT_T_MAX},
        "accuracy": acc,
        "seconds": round(time.time() - t0, 1),
    }
    return arrays, meta


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def save_table(path: str, arrays: dict, meta: dict, overwrite: bool = False) -> None:
    """Atomically write ``arrays`` plus JSON ``meta`` to ``path`` (npz, compressed).

    Writes a temporary file in the same directory, then ``os.replace``.
    Refuses to replace an existing file unless ``overwrite`` is true.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    meta = dict(meta)
    meta["created_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta["generator"] = "tools/make_ft_tables.py"
    meta["versions"] = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "mpmath": mpmath.__version__,
    }
    payload = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
    payload["meta"] = np.array(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp_", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **payload)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    data = os.path.normpath(os.path.join(root, "jaxsky", "render", "data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sersic-out", default=os.path.join(data, "sersic_ft.npz"))
    ap.add_argument("--moffat-out", default=os.path.join(data, "moffat_ft.npz"))
    ap.add_argument("--only", choices=("sersic", "moffat"), help="build just one table")
    ap.add_argument(
        "--sersic-dn",
        type=float,
        default=SERSIC_GRID["dp"],
        help="Sersic index step (the node count follows, range 0.3..6.2 kept)",
    )
    ap.add_argument(
        "--moffat-dbeta",
        type=float,
        default=MOFFAT_GRID["dp"],
        help="Moffat beta step (range 1.1..10 kept)",
    )
    ap.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = ap.parse_args(argv)

    def regrid(base: dict, dp: float, p_end: float) -> dict:
        g = dict(base)
        g["dp"] = dp
        g["Np"] = int(round((p_end - base["p0"]) / dp)) + 1
        return g

    jobs = []
    if args.only in (None, "sersic"):
        jobs.append((args.sersic_out, build_sersic, regrid(SERSIC_GRID, args.sersic_dn, 6.2)))
    if args.only in (None, "moffat"):
        jobs.append((args.moffat_out, build_moffat, regrid(MOFFAT_GRID, args.moffat_dbeta, 10.0)))
    for out, _builder, _grid in jobs:
        if os.path.exists(out) and not args.overwrite:
            ap.error(f"{out} exists; pass --overwrite to replace it")
    for out, builder, grid in jobs:
        arrays, meta = builder(grid)
        save_table(out, arrays, meta, overwrite=args.overwrite)
        print(f"wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
