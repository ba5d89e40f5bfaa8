"""Convolve pixel images with a PSF image in Fourier space (the galsim-hub decoder's last step).

Conventions follow the renderer (GalSim's ``drawImage``): a stamp's profile centre sits at its
true centre ``((n-1)/2)`` in 0-indexed pixels, between pixels for even sizes; PSF images are
unit flux and already include the pixel response. So a pre-PSF galaxy sampled at pixel centres
(``method='no_pixel'``) convolved here with a PSF image drawn with ``method='auto'`` equals the
renderer's ``draw(Convolve(gal, psf))`` up to the sampling error of the galaxy (tiny for
profiles wider than a pixel).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["fft_size", "psf_convolve"]


def fft_size(image_shape: tuple[int, int], psf_shape: tuple[int, int]) -> tuple[int, int]:
    """Padded FFT shape (even, >= image + PSF) so that no wrap-around reaches the stamp."""
    out = []
    for a, b in zip(image_shape, psf_shape):
        n = int(a) + int(b)
        out.append(n + (n % 2))
    return tuple(out)


def psf_convolve(image: jnp.ndarray, psf: jnp.ndarray) -> jnp.ndarray:
    """Convolve ``image`` float[ny, nx] with the unit-flux ``psf`` float[py, px].

    The result float[ny, nx] keeps the image's centre convention; the PSF's centre (its true
    centre, half-integer for even sizes) is moved to the origin by a Fourier phase, i.e. an
    exact band-limited sub-pixel shift. Linear, differentiable in both arguments.
    """
    ny, nx = image.shape
    py, px = psf.shape
    my, mx = fft_size((ny, nx), (py, px))
    # Frequencies in cycles per FFT period, FFT order; the rfft keeps kx >= 0 only.
    ky = jnp.fft.fftfreq(my)[:, None]
    kx = jnp.fft.rfftfreq(mx)[None, :]
    cy, cx = 0.5 * (py - 1), 0.5 * (px - 1)
    # Shifting by +c multiplies the transform by exp(+2 pi i k c): the PSF centre -> pixel 0.
    phase = jnp.exp(2j * np.pi * (ky * cy + kx * cx))
    fi = jnp.fft.rfft2(image, s=(my, mx))
    fp = jnp.fft.rfft2(psf, s=(my, mx)) * phase
    out = jnp.fft.irfft2(fi * fp, s=(my, mx))[:ny, :nx]
    return out.astype(jnp.result_type(image.dtype, psf.dtype))
