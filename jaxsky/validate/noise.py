"""Noise-matched comparisons: measure emulated images with the noise of the truth they emulate.

Real-galaxy stamps are noisy and emulated ones are not, so shape and size statistics of the two
differ by noise bias even for a perfect emulator (adaptive-moment |g| of a noisy image is biased
high, roughly as (sigma_noise / flux)^2 times the image's size in pixels; Hirata et al. 2004,
Refregier et al. 2012). Like-for-like: estimate each truth stamp's pixel noise from its border
(:func:`border_sigma`), add white Gaussian noise of that sigma to the emulated stamp in several
realisations with explicit PRNG keys (:func:`add_noise`), measure every realisation with the
same pipeline and average the measurements per galaxy (:func:`noisy_moments`): the expectation
of the noisy measurement, which is what the truth's single noisy measurement samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["border_sigma", "add_noise", "noisy_moments"]

MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(3/4): MAD -> sigma of a Gaussian


def border_sigma(images, *, width: int = 3, skip_zeros: bool = True) -> np.ndarray:
    """Robust pixel-noise sigma float[B] of float[B, ny, nx] stamps from their outer frame of
    ``width`` pixels: 1.4826 x the median absolute deviation from the median.

    ``skip_zeros`` ignores pixels that are exactly 0 (neighbours masked out of real cutouts).
    Raises ValueError for a frame wider than half the stamp or a stamp with < 8 usable pixels.
    """
    images = np.asarray(images, np.float64)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (B, ny, nx), got {images.shape}")
    ny, nx = images.shape[1:]
    if not 1 <= width <= min(ny, nx) // 2 - 1:
        raise ValueError(f"width={width} must be in [1, {min(ny, nx) // 2 - 1}] for {ny}x{nx}")
    frame = np.ones((ny, nx), bool)
    frame[width:-width, width:-width] = False
    out = np.empty(len(images))
    for i, im in enumerate(images):
        px = im[frame]
        if skip_zeros:
            px = px[px != 0]
        if px.size < 8:
            raise ValueError(f"image {i}: {px.size} usable border pixels; need >= 8")
        out[i] = MAD_TO_SIGMA * np.median(np.abs(px - np.median(px)))
    return out


def add_noise(images, sigma, *, key, n_real: int = 1) -> jax.Array:
    """float[n_real, B, ny, nx]: images float[B, ny, nx] plus white Gaussian noise of
    per-image sigma float[B] (or a scalar), ``n_real`` independent realisations from ``key``."""
    images = jnp.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (B, ny, nx), got {images.shape}")
    if int(n_real) < 1:
        raise ValueError(f"n_real={n_real} must be >= 1")
    sigma = jnp.broadcast_to(jnp.asarray(sigma, images.dtype), images.shape[:1])
    if not bool(jnp.all(sigma >= 0)):
        raise ValueError("sigma must be >= 0 for every image")
    z = jax.random.normal(key, (int(n_real), *images.shape), images.dtype)
    return images[None] + sigma[None, :, None, None] * z


def noisy_moments(images, sigma, *, key, n_real: int = 8, **moment_kw) -> dict:
    """Adaptive moments of ``n_real`` noisy realisations of each image, averaged per image.

    Returns ``{"sigma", "g1", "g2", "abs_g": float[B] means over converged realisations,
    "n_converged": int[B]}`` (NaN where no realisation converged). ``abs_g`` is the mean of
    |g| per realisation (not |mean g|), as the truth's |g| is measured on one realisation.
    """
    from jaxsky.validate.moments import batch_adaptive_moments

    noisy = np.asarray(add_noise(images, sigma, key=key, n_real=n_real))
    b = noisy.shape[1]
    m = batch_adaptive_moments(noisy.reshape(-1, *noisy.shape[2:]), **moment_kw)
    ok = np.asarray(m.converged).reshape(n_real, b)
    vals = {
        "sigma": np.asarray(m.sigma, np.float64).reshape(n_real, b),
        "g1": np.asarray(m.g1, np.float64).reshape(n_real, b),
        "g2": np.asarray(m.g2, np.float64).reshape(n_real, b),
    }
    vals["abs_g"] = np.hypot(vals["g1"], vals["g2"])
    n_ok = ok.sum(axis=0)
    out = {}
    for k, v in vals.items():
        s = np.where(ok, v, 0.0).sum(axis=0)
        out[k] = np.where(n_ok > 0, s / np.maximum(n_ok, 1), np.nan)
    out["n_converged"] = n_ok
    return out
