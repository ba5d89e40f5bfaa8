"""Log-likelihoods of observed stamps given a forward model ``f(theta) -> image``.

Two noise models:

* Gaussian pixel noise with a scalar or per-pixel variance and an optional mask,
  ``log L = -1/2 sum_i m_i [(d_i - f_i)^2 / v_i + log(2 pi v_i)]``;
* Poisson counts on top of a known sky, ``d_i ~ Poisson(f_i + s_i)`` (both in counts),
  ``log L = sum_i m_i [d_i log(f_i + s_i) - (f_i + s_i) - log Gamma(d_i + 1)]``.

Bad input policy (checked once, outside jit, by :func:`prepare_stamps`): NaN or infinite
*image* pixels are masked (they carry no information; the count is reported so a catalogue
can flag the galaxy); a non-positive or non-finite *variance* at an unmasked pixel is an
error (``ValueError`` naming the parameter, the count and the first bad index) unless
``bad_variance="mask"``. Inside the likelihood, masked pixels get weight 0 through a double
``where``, so neither value nor gradient can become NaN from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

__all__ = [
    "Stamps",
    "prepare_stamps",
    "gaussian_loglike",
    "poisson_loglike",
    "make_loglike",
]


class Stamps(NamedTuple):
    """Validated observations: data float[..., ny, nx], inverse variance float[..., ny, nx]
    (0 where masked) and the number of pixels masked per stamp int[...]."""

    data: jax.Array
    ivar: jax.Array
    n_masked: jax.Array


def prepare_stamps(images, variance, mask=None, *, bad_variance: str = "raise") -> Stamps:
    """Check shapes and values of observed stamps; return data with bad pixels zero-weighted.

    Args:
      images: float[ny, nx] or float[B, ny, nx], flux per pixel.
      variance: scalar, float[B], float[ny, nx] or the images' shape (pixel noise variance).
      mask: optional bool, broadcastable to images; True = use the pixel.
      bad_variance: "raise" (default) or "mask" for variance <= 0 or non-finite.
    Returns:
      :class:`Stamps` (NumPy-backed JAX arrays in the default float dtype).
    """
    if bad_variance not in ("raise", "mask"):
        raise ValueError(f"bad_variance={bad_variance!r} is not one of ('raise', 'mask')")
    img = np.asarray(images, dtype=float)
    if img.ndim not in (2, 3) or min(img.shape[-2:]) < 2:
        raise ValueError(f"images must have shape (ny, nx) or (B, ny, nx), got {img.shape}")
    var = np.asarray(variance, dtype=float)
    if var.ndim == 1 and img.ndim == 3 and var.shape[0] == img.shape[0]:
        var = var[:, None, None]  # one variance per stamp
    try:
        var = np.broadcast_to(var, img.shape)
    except ValueError:
        raise ValueError(
            f"variance has shape {np.shape(variance)}, which does not match images {img.shape} "
            "(allowed: a scalar, one value per stamp (B,), (ny, nx) or the images' shape)"
        ) from None
    use = np.ones(img.shape, bool)
    if mask is not None:
        m = np.asarray(mask)
        try:
            use &= np.broadcast_to(m.astype(bool), img.shape)
        except ValueError:
            raise ValueError(
                f"mask has shape {m.shape}, which does not match images {img.shape}"
            ) from None
    use &= np.isfinite(img)
    bad_var = use & ~(np.isfinite(var) & (var > 0))
    if bad_var.any():
        if bad_variance == "raise":
            idx = tuple(int(i) for i in np.argwhere(bad_var)[0])
            raise ValueError(
                f"variance must be finite and > 0 at unmasked pixels; {int(bad_var.sum())} "
                f"pixel(s) are not (first at index {idx}, value {var[idx]!r}); mask them or pass "
                "bad_variance='mask'"
            )
        use &= ~bad_var
    n_masked = (~use).reshape(img.shape[:-2] + (-1,)).sum(-1)
    ivar = np.where(use, 1.0 / np.where(use, var, 1.0), 0.0)
    data = np.where(use, img, 0.0)
    dt = jnp.result_type(float)
    return Stamps(jnp.asarray(data, dt), jnp.asarray(ivar, dt), jnp.asarray(n_masked))


def gaussian_loglike(model: jax.Array, data: jax.Array, ivar: jax.Array) -> jax.Array:
    """Gaussian log-likelihood of one stamp (scalar), ``ivar = 0`` marking masked pixels.

    Args:
      model, data, ivar: float[ny, nx] (flux per pixel; ivar in 1/flux^2).
    """
    use = ivar > 0
    r2 = jnp.where(use, (data - model) ** 2 * ivar, 0.0)
    # log(2 pi v) = -log(ivar) + log(2 pi); double where keeps log away from ivar = 0
    norm = jnp.where(use, jnp.log(2 * jnp.pi) - jnp.log(jnp.where(use, ivar, 1.0)), 0.0)
    return -0.5 * (jnp.sum(r2) + jnp.sum(norm))


def poisson_loglike(
    model: jax.Array, data: jax.Array, sky, mask: jax.Array | None = None, floor: float = 1e-8
) -> jax.Array:
    """Poisson log-likelihood of counts ``data ~ Poisson(model + sky)`` (scalar).

    Args:
      model: float[ny, nx] expected source counts; sky: scalar or float[ny, nx] counts (> 0).
      data: float[ny, nx] observed counts (>= 0); mask: optional bool[ny, nx] (True = use).
      floor: the expected count is clipped from below at ``floor`` (model ringing can dip
        below zero where the sky is tiny; the log must stay finite).
    """
    mu = model + sky
    mu = jnp.where(mu > floor, mu, floor)
    ll = data * jnp.log(mu) - mu - gammaln(data + 1.0)
    if mask is not None:
        ll = jnp.where(mask, ll, 0.0)
    return jnp.sum(ll)


def make_loglike(
    forward: Callable[[jax.Array], jax.Array],
    data: jax.Array,
    ivar: jax.Array | None = None,
    *,
    noise: str = "gaussian",
    sky=None,
    mask=None,
) -> Callable[[jax.Array], jax.Array]:
    """Build ``theta -> log L`` for any forward model (a renderer profile or an emulator's
    ``predict_fn()``).

    Args:
      forward: pure function float[P] -> float[ny, nx].
      data: float[ny, nx] observed stamp (already validated, e.g. by :func:`prepare_stamps`).
      ivar: float[ny, nx] inverse variance (0 = masked) for ``noise="gaussian"``.
      noise: "gaussian" or "poisson" (then ``sky`` is required; data in counts).
    """
    if noise == "gaussian":
        if ivar is None:
            raise ValueError("noise='gaussian' needs ivar (inverse variance, 0 where masked)")
        return lambda theta: gaussian_loglike(forward(theta), data, ivar)
    if noise == "poisson":
        if sky is None:
            raise ValueError("noise='poisson' needs sky (expected sky counts per pixel, > 0)")
        if np.any(np.asarray(sky) <= 0):
            raise ValueError(f"sky must be > 0 counts per pixel, got min {np.min(sky)}")
        if np.any(np.asarray(data) < 0):
            raise ValueError("noise='poisson' needs data >= 0 (counts)")
        return lambda theta: poisson_loglike(forward(theta), data, sky, mask)
    raise ValueError(f"noise={noise!r} is not one of ('gaussian', 'poisson')")
