"""Precomputed radial Fourier transforms F(p, u = ln(k r)) with bicubic Hermite interpolation.

The tables (``data/sersic_ft.npz``, ``data/moffat_ft.npz``) are written by
``tools/make_ft_tables.py``. They hold F and its exact derivatives dF/du, dF/dp and
d2F/dpdu on a uniform grid, so that the interpolant is C1 in both variables and its
gradient with respect to the shape parameter p (Sersic n, Moffat beta) is exact for the
interpolant. Evaluation for one profile is two steps:

1. :func:`slice_p` interpolates along p (cubic Hermite) to get F and dF/du on the u-grid;
2. :func:`eval_u` evaluates the resulting 1-D cubic Hermite spline at every wave-number,
   with analytic extrapolation beyond the grid.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["FTTable", "load_table", "slice_p", "eval_u", "table_meta"]


class FTTable(NamedTuple):
    p0: float
    dp: float
    n_p: int
    u0: float
    du: float
    n_u: int
    F: np.ndarray  # numpy (cached across traces); turned into constants where used
    F_u: np.ndarray
    F_p: np.ndarray
    F_pu: np.ndarray


@functools.cache
def _load_np(name: str):
    path = resources.files("jaxsky.render") / "data" / f"{name}_ft.npz"
    try:
        with resources.as_file(path) as p, np.load(p) as z:
            return {k: np.array(z[k]) for k in z.files}
    except FileNotFoundError as err:  # pragma: no cover - packaging error
        raise RuntimeError(
            f"jaxsky table {name}_ft.npz is missing; regenerate it with tools/make_ft_tables.py"
        ) from err


def table_meta(name: str) -> dict:
    return json.loads(str(_load_np(name)["meta"]))


def table_numpy(name: str) -> dict:
    """The raw float64 arrays (for planning in numpy)."""
    return _load_np(name)


@functools.cache
def load_table(name: str, dtype: str) -> FTTable:
    z = _load_np(name)
    p, u = z["p"], z["u"]
    return FTTable(
        p0=float(p[0]),
        dp=float(p[1] - p[0]),
        n_p=len(p),
        u0=float(u[0]),
        du=float(u[1] - u[0]),
        n_u=len(u),
        F=np.asarray(z["F"], dtype=dtype),
        F_u=np.asarray(z["F_u"], dtype=dtype),
        F_p=np.asarray(z["F_p"], dtype=dtype),
        F_pu=np.asarray(z["F_pu"], dtype=dtype),
    )


def _hermite_weights(t):
    t2 = t * t
    t3 = t2 * t
    return (2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2)


def slice_p(tab: FTTable, p):
    """Cubic Hermite interpolation along p. Returns (F, dF/du) on the u-grid, shape (n_u,)."""
    x = (p - tab.p0) / tab.dp
    i = jnp.clip(jnp.floor(x), 0, tab.n_p - 2).astype(jnp.int32)
    t = x - i
    h00, h10, h01, h11 = _hermite_weights(t)
    F, F_u, F_p, F_pu = (jnp.asarray(a) for a in (tab.F, tab.F_u, tab.F_p, tab.F_pu))
    f = h00 * F[i] + h10 * tab.dp * F_p[i] + h01 * F[i + 1] + h11 * tab.dp * F_p[i + 1]
    fu = h00 * F_u[i] + h10 * tab.dp * F_pu[i] + h01 * F_u[i + 1] + h11 * tab.dp * F_pu[i + 1]
    return f, fu


def eval_u(tab: FTTable, f, fu, u, high_slope=None):
    """Evaluate the 1-D spline (f, fu on the u-grid) at ``u`` (any shape).

    Below the grid, 1 - F is continued as ~ k^2 (finite second moment; for Moffat with
    beta < 2 the true law is k^(2 beta - 2), a negligible difference at k r < 5e-5).
    Above the grid, F is continued as ``F_last (k / k_last)^high_slope``
    (``high_slope=None``: zero, for transforms that decay exponentially).
    """
    u_last = tab.u0 + (tab.n_u - 1) * tab.du
    # Per-interval cubic coefficients: one gather per point instead of four.
    h = tab.du
    c0, c1 = f[:-1], h * fu[:-1]
    c2 = 3 * (f[1:] - f[:-1]) - h * (2 * fu[:-1] + fu[1:])
    c3 = 2 * (f[:-1] - f[1:]) + h * (fu[:-1] + fu[1:])
    coef = jnp.stack([c0, c1, c2, c3], axis=-1)

    uc = jnp.clip(u, tab.u0, u_last)
    x = (uc - tab.u0) / h
    j = jnp.clip(jnp.floor(x), 0, tab.n_u - 2).astype(jnp.int32)
    t = x - j
    c = coef[j]
    inner = c[..., 0] + t * (c[..., 1] + t * (c[..., 2] + t * c[..., 3]))

    # Low-k continuation (k r < e^u0 ~ 5e-5, only ever reached for tiny profiles):
    # 1 - F = (1 - f0) (k / k0)^2, the k^2 law of a finite second moment. A fixed slope keeps
    # the gradient finite even where 1 - f0 rounds to 0 in float32.
    low = 1.0 - (1.0 - f[0]) * jnp.exp(2.0 * jnp.minimum(u - tab.u0, 0.0))
    out = jnp.where(u < tab.u0, low, inner)
    if high_slope is None:
        return jnp.where(u > u_last, 0.0, out)
    high = f[-1] * jnp.exp(high_slope * jnp.maximum(u - u_last, 0.0))
    return jnp.where(u > u_last, high, out)
