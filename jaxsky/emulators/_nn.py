"""Flax (linen) building blocks of the learned emulators: conv encoder/decoder, MLP, MADE.

Modules take a leading batch axis; static sizes are Python ints. Each is a plain
``flax.linen.Module`` so its parameters are an ordinary pytree that optax and
:mod:`flax.serialization` handle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import numpy as np

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "DenseDecoder", "MADE", "made_masks"]


class MLP(nn.Module):
    """Dense network float[B, P] -> float[B, out] with SiLU activations."""

    features: Sequence[int]
    out: int
    zero_last: bool = False

    @nn.compact
    def __call__(self, x):
        for f in self.features:
            x = nn.silu(nn.Dense(f)(x))
        init = nn.initializers.zeros if self.zero_last else nn.initializers.lecun_normal()
        return nn.Dense(self.out, kernel_init=init)(x)


class ConvEncoder(nn.Module):
    """Image float[B, ny, nx] -> (mean, log-variance) float[B, latent] of q(z | image).

    A 3x3 convolution, then one stride-2 convolution per entry of ``features`` (33 -> 17 -> 9
    -> 5 for three), a dense layer and a linear head (Kingma & Welling 2014).
    """

    latent: int
    features: Sequence[int] = (32, 64, 128)
    dense: int = 256

    @nn.compact
    def __call__(self, x):
        h = x[..., None]
        h = nn.silu(nn.Conv(self.features[0], (3, 3))(h))
        for f in self.features:
            h = nn.silu(nn.Conv(f, (3, 3), strides=(2, 2))(h))
        h = h.reshape(h.shape[0], -1)
        h = nn.silu(nn.Dense(self.dense)(h))
        out = nn.Dense(2 * self.latent)(h)
        return out[:, : self.latent], out[:, self.latent :]


class ConvDecoder(nn.Module):
    """Latent float[B, latent] -> image float[B, ny, nx] (normalised units).

    Dense layers to a coarse ``(s0, s0, C)`` grid, one stride-2 transposed convolution per
    entry of ``features`` (doubling the size), a final 3x3 convolution to one channel and a
    centred crop to ``shape``. The last layer starts at zero so training starts from the mean.
    """

    shape: tuple[int, int]
    features: Sequence[int] = (128, 64, 32)
    dense: int = 256

    @nn.compact
    def __call__(self, z):
        ny, nx = self.shape
        up = 2 ** len(self.features)
        sy, sx = math.ceil(ny / up), math.ceil(nx / up)
        h = nn.silu(nn.Dense(self.dense)(z))
        h = nn.silu(nn.Dense(sy * sx * self.features[0])(h))
        h = h.reshape(z.shape[0], sy, sx, self.features[0])
        for f in self.features:
            h = nn.silu(nn.ConvTranspose(f, (3, 3), strides=(2, 2))(h))
        h = nn.Conv(1, (3, 3), kernel_init=nn.initializers.zeros)(h)[..., 0]
        oy, ox = (h.shape[1] - ny) // 2, (h.shape[2] - nx) // 2
        return h[:, oy : oy + ny, ox : ox + nx]


class DenseDecoder(nn.Module):
    """Latent float[B, latent] -> image float[B, ny, nx] through dense layers only."""

    shape: tuple[int, int]
    features: Sequence[int] = (256, 512)

    @nn.compact
    def __call__(self, z):
        ny, nx = self.shape
        h = MLP(self.features, ny * nx, zero_last=True)(z)
        return h.reshape(z.shape[0], ny, nx)


def made_masks(dim: int, hidden: Sequence[int]) -> list[np.ndarray]:
    """Autoregressive masks of MADE (Germain et al. 2015) with sequential degrees.

    Input i (1..dim) has degree i; hidden unit degrees cycle through 1..dim-1; a hidden unit of
    degree m sees inputs of degree <= m; output i sees hidden units of degree < i. Returns
    float masks (in, out) for each hidden layer and the output layer (outputs per dim).
    """
    d_in = np.arange(1, dim + 1)
    degrees = [d_in]
    for h in hidden:
        degrees.append(np.arange(h) % max(dim - 1, 1) + 1)
    masks = [(degrees[i][:, None] <= degrees[i + 1][None, :]) for i in range(len(hidden))]
    masks.append(degrees[-1][:, None] < d_in[None, :])
    return [m.astype(np.float32) for m in masks]


class MADE(nn.Module):
    """Masked autoencoder: z float[B, dim], cond float[B, C] -> float[B, dim, n_out].

    Output ``[..., i, :]`` depends on ``z[..., :i]`` and on the whole condition only, so it can
    parameterise the i-th step of an autoregressive bijector (Papamakarios et al. 2017). The
    condition enters every hidden layer unmasked; the output layer starts at zero (identity
    bijector at initialisation).
    """

    dim: int
    hidden: Sequence[int] = (64, 64)
    n_out: int = 2

    @nn.compact
    def __call__(self, z, cond):
        masks = made_masks(self.dim, self.hidden)
        h = z
        for i, width in enumerate(self.hidden):
            w = self.param(f"w{i}", nn.initializers.lecun_normal(), (h.shape[-1], width))
            b = self.param(f"b{i}", nn.initializers.zeros, (width,))
            pre = h @ (w * masks[i]) + b
            pre = pre + nn.Dense(width, use_bias=False, name=f"c{i}")(cond)
            h = nn.silu(pre)
        mask = np.repeat(masks[-1], self.n_out, axis=1)  # (hidden, dim * n_out), dim-major
        w = self.param("w_out", nn.initializers.zeros, (h.shape[-1], self.dim * self.n_out))
        b = self.param("b_out", nn.initializers.zeros, (self.dim * self.n_out,))
        direct = nn.Dense(
            self.dim * self.n_out, use_bias=False, kernel_init=nn.initializers.zeros, name="c_out"
        )(cond)  # the condition may reach every output, the first one included
        out = h @ (w * mask) + b + direct
        return out.reshape(*z.shape[:-1], self.dim, self.n_out)
