"""Fit Sersic x Moffat models to a batch of noisy GalSim stamps with ``jaxsky.infer.fit_sersic``.

    python examples/fit_sersic_batch.py [--n 64] [--nx 32] [--out catalog.csv]

Every stamp gets flux, half_light_radius, n, g1, g2, dx, dy with Laplace (Fisher) errors, a
``converged`` flag and bit flags; the script prints how well the errors describe the scatter
around the truth (z = (fit - truth) / err should have mean 0 and variance 1).
"""

from __future__ import annotations

import argparse

import galsim
import numpy as np

import jaxsky
from jaxsky.infer import PARAMS, fit_sersic
from jaxsky.infer.catalog import write_catalog

SCALE, PSF_BETA, PSF_FWHM = 0.2, 3.0, 0.7


def simulate(n, nx, seed=0):
    rng = np.random.default_rng(seed)
    truth = {
        "flux": rng.uniform(500, 5000, n),
        "half_light_radius": rng.uniform(0.25, 0.7, n),
        "n": rng.choice([0.5, 1.0, 2.0, 4.0], n),
        "g1": rng.uniform(-0.3, 0.3, n),
        "g2": rng.uniform(-0.3, 0.3, n),
        "dx": rng.uniform(-0.1, 0.1, n),
        "dy": rng.uniform(-0.1, 0.1, n),
    }
    psf = galsim.Moffat(PSF_BETA, fwhm=PSF_FWHM)
    images, var = np.empty((n, nx, nx)), np.empty(n)
    for i in range(n):
        t = {k: float(v[i]) for k, v in truth.items()}
        gal = galsim.Sersic(t["n"], half_light_radius=t["half_light_radius"], flux=t["flux"])
        gal = gal.shear(g1=t["g1"], g2=t["g2"]).shift(t["dx"], t["dy"])
        img = galsim.Convolve(gal, psf).drawImage(nx=nx, ny=nx, scale=SCALE).array
        sigma = np.sqrt(np.sum(img**2)) / rng.uniform(20, 200)  # optimal SNR 20-200
        var[i] = sigma**2
        images[i] = img + rng.normal(0, sigma, img.shape)
    return truth, images, var


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--nx", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the catalogue (.csv, .fits or .h5)")
    args = ap.parse_args(argv)
    truth, images, var = simulate(args.n, args.nx, args.seed)
    psf = jaxsky.Moffat(PSF_BETA, fwhm=PSF_FWHM)
    cat = fit_sersic(images, var, psf, scale=SCALE)
    ok = cat["converged"]
    print(f"{ok.sum()}/{args.n} converged")
    print(f"{'param':18s} {'mean z':>7s} {'var z':>6s} {'68% cover':>9s}")
    for p in PARAMS:
        z = ((cat[p] - truth[p]) / cat[f"{p}_err"])[ok]
        print(f"{p:18s} {z.mean():+7.2f} {z.var():6.2f} {np.mean(np.abs(z) < 1):9.2f}")
    if args.out:
        write_catalog(args.out, cat, overwrite=True)
        print(f"catalogue -> {args.out}")
    return cat, truth


if __name__ == "__main__":
    main()
