"""Plug a jaxsky Sersic x Moffat model into your own numpyro model and sample it with NUTS.

    pip install 'jaxsky[sampling]'        # numpyro
    python examples/nuts_numpyro.py [--warmup 150] [--samples 150] [--plot corner.png]

GalSim draws the "observed" stamp; the numpyro model below declares priors on the physical
parameters in the usual numpyro way, renders the galaxy with jaxsky (differentiable in every
parameter, Sersic n included) and adds the pixel likelihood with one ``numpyro.factor``.
Small settings run in well under a minute on a laptop CPU.
"""

from __future__ import annotations

import argparse

import galsim
import jax
import jax.numpy as jnp
import numpy as np

import jaxsky
from jaxsky.infer import prepare_stamps, sersic_model
from jaxsky.infer.sampling import image_factor, require_numpyro

NX, SCALE, PSF_BETA, PSF_FWHM = 24, 0.25, 3.0, 0.8
TRUTH = dict(flux=2000.0, half_light_radius=0.6, n=1.5, g1=0.1, g2=-0.2, dx=0.03, dy=-0.02)
PARAMS = tuple(TRUTH)


def observe(seed=0, snr=60.0):
    gal = galsim.Sersic(TRUTH["n"], half_light_radius=TRUTH["half_light_radius"])
    gal = gal.withFlux(TRUTH["flux"]).shear(g1=TRUTH["g1"], g2=TRUTH["g2"])
    gal = gal.shift(TRUTH["dx"], TRUTH["dy"])
    psf = galsim.Moffat(PSF_BETA, fwhm=PSF_FWHM)
    img = galsim.Convolve(gal, psf).drawImage(nx=NX, ny=NX, scale=SCALE).array
    sigma = np.sqrt(np.sum(img**2)) / snr
    noisy = img + np.random.default_rng(seed).normal(0, sigma, img.shape)
    return noisy, sigma**2


def galaxy_model(data, ivar, psf, plan):
    """Your own numpyro model: priors in physical units, a jaxsky render, one factor."""
    numpyro = require_numpyro()
    import numpyro.distributions as dist

    flux = numpyro.sample("flux", dist.LogUniform(100.0, 1e5))
    hlr = numpyro.sample("half_light_radius", dist.LogUniform(0.1, 1.5))
    n = numpyro.sample("n", dist.Uniform(0.5, 5.0))
    g1 = numpyro.sample("g1", dist.Uniform(-0.6, 0.6))
    g2 = numpyro.sample("g2", dist.Uniform(-0.6, 0.6))
    dx = numpyro.sample("dx", dist.Normal(0.0, 0.2))
    dy = numpyro.sample("dy", dist.Normal(0.0, 0.2))
    image = sersic_model(jnp.stack([flux, hlr, n, g1, g2, dx, dy]), psf, plan)
    image_factor("pixels", image, data, ivar)


def corner(samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(PARAMS)
    fig, axes = plt.subplots(k, k, figsize=(1.6 * k, 1.6 * k))
    for i, pi in enumerate(PARAMS):
        for j, pj in enumerate(PARAMS):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j > i:
                ax.axis("off")
            elif i == j:
                ax.hist(samples[pi], bins=20, color="0.4")
                ax.axvline(TRUTH[pi], color="C3")
            else:
                ax.plot(samples[pj], samples[pi], ".", ms=1.5, color="0.3")
                ax.plot(TRUTH[pj], TRUTH[pi], "+", color="C3", ms=8)
            if i == k - 1:
                ax.set_xlabel(pj, fontsize=7)
            if j == 0:
                ax.set_ylabel(pi, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--max-tree-depth", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", help="write a corner plot PNG here")
    args = ap.parse_args(argv)
    require_numpyro()
    from numpyro.infer import MCMC, NUTS, init_to_value

    noisy, var = observe(args.seed)
    st = prepare_stamps(noisy, var)
    psf = jaxsky.Moffat(PSF_BETA, fwhm=PSF_FWHM)
    # one static plan for the whole chain: planned for the largest, steepest prior galaxy
    plan = jaxsky.make_plan(
        jaxsky.Convolve(jaxsky.Sersic(4.0, half_light_radius=1.0), psf), NX, NX, SCALE
    )
    start = dict(TRUTH, flux=float(noisy.sum()), n=2.0, g1=0.0, g2=0.0, dx=0.0, dy=0.0)
    kernel = NUTS(
        galaxy_model, max_tree_depth=args.max_tree_depth, init_strategy=init_to_value(values=start)
    )
    mcmc = MCMC(kernel, num_warmup=args.warmup, num_samples=args.samples, progress_bar=False)
    mcmc.run(jax.random.key(args.seed), st.data, st.ivar, psf, plan)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples().items()}
    print(f"{'param':18s} {'truth':>9s} {'mean':>9s} {'sd':>8s}")
    for k in PARAMS:
        print(f"{k:18s} {TRUTH[k]:9.4f} {samples[k].mean():9.4f} {samples[k].std():8.4f}")
    if args.plot:
        corner(samples, args.plot)
        print(f"corner plot -> {args.plot}")
    return samples


if __name__ == "__main__":
    main()
