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
from jaxsky.infer import fit_sersic, prepare_stamps, sersic_model
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


def _hpd_levels(hist, fracs=(0.95, 0.68)):
    """Density thresholds enclosing ``fracs`` of a 2-D histogram's mass (highest first)."""
    h = np.sort(hist.ravel())[::-1]
    cum = np.cumsum(h) / h.sum()
    return [h[min(np.searchsorted(cum, f), h.size - 1)] for f in fracs]


def corner(samples, path, laplace=None):
    """Corner plot (matplotlib only): NUTS draws, 68/95% contours, truth in red and, given
    ``laplace = (mean float[P], cov float[P, P])``, the MAP fit's Laplace Gaussian in blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse
    from scipy.ndimage import gaussian_filter

    k = len(PARAMS)
    fig, axes = plt.subplots(k, k, figsize=(1.5 * k, 1.5 * k))
    lims = [np.percentile(samples[p], [0.5, 99.5]) for p in PARAMS]
    lims = [(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)) for lo, hi in lims]
    for i, pi in enumerate(PARAMS):
        for j, pj in enumerate(PARAMS):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(samples[pi], bins=25, range=lims[i], density=True, color="0.6")
                if laplace is not None:
                    m, sd = laplace[0][i], np.sqrt(laplace[1][i, i])
                    x = np.linspace(*lims[i], 200)
                    ax.plot(x, np.exp(-0.5 * ((x - m) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), "C0")
                ax.axvline(TRUTH[pi], color="C3")
                ax.set_yticks([])
            else:
                h, xe, ye = np.histogram2d(samples[pj], samples[pi], 30, range=[lims[j], lims[i]])
                h = gaussian_filter(h, 1.0).T
                ax.plot(samples[pj], samples[pi], ".", ms=1, color="0.75", zorder=0)
                ax.contour(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), h,
                           levels=_hpd_levels(h), colors="k", linewidths=0.8)  # fmt: skip
                if laplace is not None:  # 1- and 2-sigma ellipses of the marginal Gaussian
                    c = laplace[1][np.ix_([j, i], [j, i])]
                    w, v = np.linalg.eigh(c)
                    ang = np.degrees(np.arctan2(v[1, 1], v[0, 1]))
                    for s in (1.52, 2.45):  # sqrt(chi2_2) at 68% and 95%
                        ax.add_patch(Ellipse((laplace[0][j], laplace[0][i]), 2 * s * np.sqrt(w[1]),
                                     2 * s * np.sqrt(w[0]), angle=ang, fill=False, color="C0",
                                     lw=0.8))  # fmt: skip
                ax.axvline(TRUTH[pj], color="C3", lw=0.8)
                ax.axhline(TRUTH[pi], color="C3", lw=0.8)
                ax.plot(TRUTH[pj], TRUTH[pi], "s", color="C3", ms=3)
                ax.set_ylim(lims[i])
            ax.set_xlim(lims[j])
            ax.tick_params(labelsize=5, length=2)
            ax.xaxis.set_major_locator(plt.MaxNLocator(3))
            ax.yaxis.set_major_locator(plt.MaxNLocator(3))
            if i < k - 1:
                ax.set_xticklabels([])
            else:
                ax.set_xlabel(pj, fontsize=7)
            if j > 0 or i == 0:
                ax.set_yticklabels([])
            else:
                ax.set_ylabel(pi, fontsize=7)
    title = f"NUTS posterior ({len(samples[PARAMS[0]])} draws), truth (red)"
    fig.suptitle(title + (", Laplace from fit_sersic (blue)" if laplace else ""), fontsize=8)
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    fig.savefig(path, dpi=120)


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
        # the batched MAP fitter on the same stamp: its Laplace Gaussian should match the draws
        fit = fit_sersic(noisy, var, psf, scale=SCALE, plan=plan)
        laplace = (np.array([fit[k][0] for k in PARAMS]), fit["cov"][0])
        print(f"fit_sersic: converged={bool(fit['converged'][0])}")
        print(f"{'param':18s} {'MAP':>9s} {'Laplace sd':>10s} {'NUTS sd':>8s}")
        for i, k in enumerate(PARAMS):
            print(f"{k:18s} {laplace[0][i]:9.4f} {np.sqrt(laplace[1][i, i]):10.4f} "
                  f"{samples[k].std():8.4f}")  # fmt: skip
        corner(samples, args.plot, laplace)
        print(f"corner plot -> {args.plot}")
    return samples


if __name__ == "__main__":
    main()
