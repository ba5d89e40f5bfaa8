"""Fit Sersic x Moffat models to a batch of noisy GalSim stamps with ``jaxsky.infer.fit_sersic``.

    python examples/fit_sersic_batch.py [--n 64] [--nx 32] [--out catalog.csv]

Every stamp gets flux, half_light_radius, n, g1, g2, dx, dy with Laplace (Fisher) errors, a
``converged`` flag and bit flags; the script prints how well the errors describe the scatter
around the truth (z = (fit - truth) / err should have mean 0 and variance 1).
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxsky.infer import PARAMS, fit_sersic, sersic_model, sersic_plan
from jaxsky.infer.catalog import write_catalog
from jaxsky.testing import galsim_sersic_stamps

SCALE, PSF_BETA, PSF_FWHM = 0.2, 3.0, 0.7


def plot(sim, cat, path, n_show=4):
    """Data, best-fit model and residual / sigma for a few stamps; z-score histograms."""
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nx = sim.images.shape[-1]
    plan = sersic_plan(sim.psf, nx, nx, SCALE, 1.0, fast=True)
    ok = cat["converged"]
    fig = plt.figure(figsize=(10, 6.2))
    grid = fig.add_gridspec(3, n_show + 2, width_ratios=[1] * n_show + [0.15, 2.2])
    show = np.flatnonzero(ok)[:n_show]
    for c, i in enumerate(show):
        x = jnp.asarray([cat[p][i] for p in PARAMS])
        model = np.asarray(sersic_model(x, sim.psf, plan))
        sigma = np.sqrt(sim.variance[i])
        vmax = sim.images[i].max()
        panels = [(sim.images[i], "data", vmax), (model, "model", vmax)]
        panels.append(((sim.images[i] - model) / sigma, "(data - model) / sigma", 3))
        q = nx // 4  # the central half of the stamp
        for r, (img, label, v) in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            img = img[q : nx - q, q : nx - q]
            if r < 2:  # square-root stretch shows the wings
                img, v = np.sign(img) * np.sqrt(np.abs(img)), np.sqrt(v)
            cmap, lo = ("RdBu_r", -v) if r == 2 else ("gray_r", -0.1 * v)
            ax.imshow(img, origin="lower", cmap=cmap, vmin=lo, vmax=v)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                t = sim.truth
                ax.set_title(
                    f"n={t['n'][i]:.1f}->{cat['n'][i]:.2f}\nSNR {sim.snr[i]:.0f}", fontsize=8
                )
    ax = fig.add_subplot(grid[:, -1])
    bins = np.linspace(-4, 4, 17)
    zz = np.linspace(-4, 4, 200)
    for p in PARAMS:
        z = ((cat[p] - sim.truth[p]) / cat[f"{p}_err"])[ok]
        ax.hist(z, bins, histtype="step", density=True, label=p)
    ax.plot(zz, np.exp(-0.5 * zz**2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    ax.set_xlabel("z = (fit - truth) / error", fontsize=8)
    ax.set_title(f"{ok.sum()} converged fits: z-scores", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--nx", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the catalogue (.csv, .fits or .h5)")
    ap.add_argument("--plot", help="write a figure (stamps, fits, residuals, z-scores) here")
    args = ap.parse_args(argv)
    # noisy GalSim stamps with known truth: optimal SNR 20-200, Moffat PSF
    sim = galsim_sersic_stamps(
        args.n,
        seed=args.seed,
        nx=args.nx,
        scale=SCALE,
        psf_beta=PSF_BETA,
        psf_fwhm=PSF_FWHM,
        hlr=(0.25, 0.7),
        sersic_n=(0.5, 1.0, 2.0, 4.0),
        g_max=0.3,
    )
    truth = sim.truth
    cat = fit_sersic(sim.images, sim.variance, sim.psf, scale=SCALE)
    ok = cat["converged"]
    print(f"{ok.sum()}/{args.n} converged")
    print(f"{'param':18s} {'mean z':>7s} {'var z':>6s} {'68% cover':>9s}")
    for p in PARAMS:
        z = ((cat[p] - truth[p]) / cat[f"{p}_err"])[ok]
        print(f"{p:18s} {z.mean():+7.2f} {z.var():6.2f} {np.mean(np.abs(z) < 1):9.2f}")
    if args.plot:
        plot(sim, cat, args.plot)
        print(f"figure -> {args.plot}")
    if args.out:
        write_catalog(args.out, cat, overwrite=True)
        print(f"catalogue -> {args.out}")
    return cat, truth


if __name__ == "__main__":
    main()
