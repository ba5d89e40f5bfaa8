"""Normalisation of parameters and images shared by the emulator families.

Parameters are mapped to the unit box ``[0, 1]^P`` of the training ranges, optionally after a
log of positive parameters (sizes and fluxes vary over decades; the image varies more evenly
in their logs). Images can be emulated per unit flux, with the flux parameter applied
analytically afterwards: the image is exactly linear in flux, so the emulator never has to
learn that decade-wide factor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ThetaNorm", "theta_norm", "to_unit", "flux_column", "LOG_DEFAULT"]

# Parameters taken in log by default (when strictly positive over their range).
LOG_DEFAULT = ("flux", "scale_radius", "half_light_radius", "hlr", "sigma", "psf_fwhm", "fwhm")


class ThetaNorm(NamedTuple):
    """Affine map of (possibly logged) parameters to the unit box.

    Attributes:
        lo: float[P] lower bounds (in log where ``is_log``).
        width: float[P] range widths (same space).
        is_log: bool[P] which parameters are logged.
    """

    lo: jax.Array
    width: jax.Array
    is_log: jax.Array


def theta_norm(
    names: Sequence[str], ranges: Mapping[str, Sequence[float]], log: Sequence[str] | None = None
) -> ThetaNorm:
    """Build a :class:`ThetaNorm` from a data set's declared ranges.

    Args:
        names: the P parameter names.
        ranges: name -> (low, high).
        log: names to take in log (default :data:`LOG_DEFAULT`); a listed name whose range
            is not strictly positive is left linear.
    """
    log = LOG_DEFAULT if log is None else tuple(log)
    lo, hi, is_log = [], [], []
    for k in names:
        a, b = (float(v) for v in ranges[k])
        if not b > a:
            raise ValueError(f"range of {k!r} is [{a:g}, {b:g}]; it must have high > low")
        use_log = k in log and a > 0
        if use_log:
            a, b = np.log(a), np.log(b)
        lo.append(a)
        hi.append(b)
        is_log.append(use_log)
    lo, hi = np.asarray(lo), np.asarray(hi)
    return ThetaNorm(jnp.asarray(lo), jnp.asarray(hi - lo), jnp.asarray(is_log))


def to_unit(norm: ThetaNorm, theta: jax.Array) -> jax.Array:
    """float[..., P] physical parameters -> float[..., P] in the unit box (pure, differentiable).

    The log branch uses the double-``where`` pattern so that a linear parameter at 0 has a
    finite gradient.
    """
    safe = jnp.where(norm.is_log, jnp.where(theta > 0, theta, 1.0), 1.0)
    x = jnp.where(norm.is_log, jnp.log(safe), theta)
    return (x - norm.lo) / norm.width


def flux_column(names: Sequence[str], flux_param: str | None) -> int:
    """Index of the flux parameter (``-1`` when images are emulated as they are).

    ``flux_param="auto"`` picks ``"flux"`` when present.
    """
    if flux_param == "auto":
        return list(names).index("flux") if "flux" in names else -1
    if flux_param in (None, "", "none"):
        return -1
    if flux_param not in names:
        raise ValueError(f"flux_param={flux_param!r} is not one of the parameters {tuple(names)}")
    return list(names).index(flux_param)
