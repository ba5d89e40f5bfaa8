"""Eager validation of physical parameters at the API boundary.

Checks run only on concrete values. Under ``jit``/``vmap`` the values are tracers and
cannot be inspected, so the check is skipped (see :func:`jaxsky.render.checked_draw`
for a ``checkify``-based checked mode that works under transformations).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = ["is_concrete", "check_range", "check_positive", "check_finite", "checked"]

_CHECKING = contextvars.ContextVar("jaxsky_checking", default=False)


@contextlib.contextmanager
def _checking():
    token = _CHECKING.set(True)
    try:
        yield
    finally:
        _CHECKING.reset(token)


def checked(fn):
    """Checked mode for traced code: ``err, out = jaxsky.checked(fn)(*args)``.

    ``fn`` builds and draws profiles from possibly traced parameters. Inside it every range
    check of the constructors and transforms becomes a ``jax.experimental.checkify`` check,
    so it also works under ``jit`` and ``vmap``: wrap first, then transform
    (``jax.jit(jaxsky.checked(fn))``). ``err.throw()`` raises the first violation;
    ``err.get()`` returns its message or None. Pass a plain (not already jitted) ``fn``.
    """

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        with _checking():
            return fn(*args, **kwargs)

    return checkify.checkify(inner, errors=checkify.user_checks | checkify.nan_checks)


def is_concrete(x) -> bool:
    """True when ``x`` holds a value that can be inspected eagerly (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def _describe(lo, hi, lo_open, hi_open) -> str:
    left = "(" if (lo_open or lo is None) else "["
    right = ")" if (hi_open or hi is None) else "]"
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{left}{lo_s}, {hi_s}{right}"


def check_range(name, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """Raise ``ValueError`` naming ``name`` if any element of ``value`` is outside the range.

    Non-finite values are always rejected. Tracers pass through unchecked.
    """
    if not is_concrete(value):
        if _CHECKING.get():
            v = jnp.asarray(value)
            ok = jnp.isfinite(v)
            if lo is not None:
                ok &= (v > lo) if lo_open else (v >= lo)
            if hi is not None:
                ok &= (v < hi) if hi_open else (v <= hi)
            rng = _describe(lo, hi, lo_open, hi_open)
            checkify.check(jnp.all(ok), f"{name}={{}} is outside the allowed range {rng}", v)
        return
    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr)
    if lo is not None:
        bad |= (arr <= lo) if lo_open else (arr < lo)
    if hi is not None:
        bad |= (arr >= hi) if hi_open else (arr > hi)
    if np.any(bad):
        first = float(arr[bad].flat[0]) if arr.ndim else float(arr)
        raise ValueError(
            f"{name}={first!r} is outside the allowed range {_describe(lo, hi, lo_open, hi_open)}"
        )


def check_positive(name, value):
    """Sizes and fluxes: finite and strictly positive."""
    check_range(name, value, 0.0, None, lo_open=True)


def check_finite(name, value):
    check_range(name, value)


def check_int(name, value, lo=1):
    """Static integers such as stamp sizes."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r} must be a Python int >= {lo}")
    if value < lo:
        raise ValueError(f"{name}={value!r} is outside the allowed range [{lo}, inf)")


def check_static_positive(name, value):
    """Static floats such as the pixel scale."""
    try:
        v = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError) as err:
        raise ValueError(f"{name} must be a concrete Python float, got {value!r}") from err
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={value!r} is outside the allowed range (0, inf)")
    return v
