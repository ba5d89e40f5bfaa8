"""Small data sets for the emulator tests, rendered with jaxsky in one compiled program."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from jaxsky.data import Dataset
from jaxsky.render import Convolve, Gaussian, draw_batch, make_plan

RANGES = {"flux": (1e3, 1e4), "hlr": (0.3, 0.7), "g1": (-0.3, 0.3), "psf_fwhm": (0.4, 0.6)}


@functools.lru_cache(maxsize=4)
def gaussian_set(n: int = 96, seed: int = 0, nx: int = 25) -> Dataset:
    """Sheared Gaussian galaxies x Gaussian PSFs (flux, hlr, g1, psf_fwhm), 0.2"/pixel."""
    rng = np.random.default_rng(seed)
    lo = np.array([v[0] for v in RANGES.values()])
    hi = np.array([v[1] for v in RANGES.values()])
    th = lo + rng.uniform(size=(n, 4)) * (hi - lo)
    gal = Gaussian(half_light_radius=jnp.asarray(th[:, 1]), flux=jnp.asarray(th[:, 0]))
    gal = gal.shear(g1=jnp.asarray(th[:, 2]), g2=jnp.zeros(n))
    psf = Gaussian(fwhm=jnp.asarray(th[:, 3]))
    obj = Convolve(gal, psf)
    imgs = draw_batch(obj, nx=nx, ny=nx, scale=0.2, plan=make_plan(obj, nx, nx, 0.2))
    psf1 = psf.withFlux(jnp.ones(n))
    psfs = draw_batch(psf1, nx=nx, ny=nx, scale=0.2, plan=make_plan(psf1, nx, nx, 0.2))
    return Dataset.from_arrays(
        np.asarray(imgs),
        th,
        tuple(RANGES),
        scale=0.2,
        ranges=RANGES,
        psfs=np.asarray(psfs),
        split_fractions=(0.7, 0.15, 0.15),
        split_seed=seed,
    )


def tiny_vae_residual(width: int, steps: int, **overrides) -> dict:
    """A tiny conditional dense-decoder VAE config, the learned residual of the hybrid tests."""
    return dict(
        mode="conditional",
        decoder="dense",
        dense_features=[width],
        mlp_features=[width],
        latent_dim=4,
        steps=steps,
        val_every=10,
        batch_size=16,
        **overrides,
    )
