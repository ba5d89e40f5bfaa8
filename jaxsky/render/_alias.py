"""The FFT's wrap-around light from the nearest periodic copies, subtracted by :func:`draw`.

The FFT image is the periodic sum  sum_j I(x + j L)  over copies j of the profile; the
planner (``_planning``) chooses periods whose remaining wrap-around is within budget once
the nearest ``alias_rings`` rings of copies are subtracted with the far-field estimate here.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

__all__ = ["alias_correction"]


def alias_correction(obj, plan):
    """Light the FFT wraps into the stamp from the nearest periodic copies (flux/pixel).

    The FFT image is the periodic sum  sum_j I(x + j L);  the copies are far from the
    stamp, where the profile is smooth, so their surface brightness (times the pixel area)
    comes from the profile's real-space far field. It is smooth across the stamp, so it is
    evaluated on a coarse grid and interpolated (Catmull-Rom, in log space): every 6 pixels
    for the nearest ring of copies, every 12 for the farther rings (at >= 1.5 stamp sizes,
    their log varies slowly: the interpolation error there is ~1e-4 of the correction).
    """
    r = plan.alias_rings
    ring1 = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j]
    out = _ring_sum(obj, plan, ring1, step=6)
    if r > 1:
        far = [
            (i, j) for i in range(-r, r + 1) for j in range(-r, r + 1) if max(abs(i), abs(j)) > 1
        ]
        out = out + _ring_sum(obj, plan, far, step=12)
    return out


def _ring_sum(obj, plan, shifts, step):
    p, period = plan.scale, plan.n_fft * plan.scale
    dtype = jnp.result_type(float)
    wx, xc = _coarse_interp(plan.nx, p, step)
    wy, yc = _coarse_interp(plan.ny, p, step)
    shifts = np.array(shifts)
    xs = jnp.asarray(xc[None, None, :] + shifts[:, :1, None] * period, dtype)  # (C, 1, mx)
    ys = jnp.asarray(yc[None, :, None] + shifts[:, 1:, None] * period, dtype)  # (C, my, 1)
    total = obj.far_xvalue(xs, ys).sum(axis=0)
    tiny = jnp.finfo(dtype).tiny
    log_a = jnp.log(jnp.maximum(total, tiny))
    fine = jnp.asarray(wy, dtype) @ log_a @ jnp.asarray(wx, dtype).T
    return jnp.exp(fine) * (p * p)


@functools.lru_cache(maxsize=64)
def _coarse_interp(n: int, p: float, step: int = 6):
    """Coarse pixel-centre positions and the (n, m) Catmull-Rom matrix onto all n pixels."""
    x = (np.arange(n) - 0.5 * (n - 1)) * p
    m = max(2, int(np.ceil((n - 1) / step)) + 1)
    if m >= n:
        return np.eye(n), x
    xc = np.linspace(x[0], x[-1], m)
    t = (x - xc[0]) / (xc[1] - xc[0])
    i0 = np.clip(np.floor(t).astype(int), 0, m - 2)
    u = t - i0
    w = np.zeros((n, m))
    # Catmull-Rom weights for nodes i0-1, i0, i0+1, i0+2 (ends clamped).
    coeffs = [
        -0.5 * u**3 + u**2 - 0.5 * u,
        1.5 * u**3 - 2.5 * u**2 + 1,
        -1.5 * u**3 + 2 * u**2 + 0.5 * u,
        0.5 * u**3 - 0.5 * u**2,
    ]
    for off, c in zip((-1, 0, 1, 2), coeffs):
        np.add.at(w, (np.arange(n), np.clip(i0 + off, 0, m - 1)), c)
    return w, xc
