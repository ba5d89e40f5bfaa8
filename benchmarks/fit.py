"""Benchmark ``jaxsky.infer.fit_sersic``: MAP fits per second and the calibration of the errors.

    python benchmarks/fit.py [--n 1000] [--nx 64] [--chunk-size 128] [--seed 0]

GalSim draws ``--n`` noisy Sersic x Moffat stamps (optimal SNR uniform in 20-200, Sersic n in
{0.5, 1, 1.5, 2, 3, 4}, hlr 0.25-0.8 arcsec, |g| <= 0.4, sub-pixel offsets); jaxsky fits them
all. Reports compile time (first chunk) separately from the timed run over all stamps, the
convergence fraction, and per parameter the mean and variance of z = (fit - truth) / err and the
fraction of truths inside the 68% interval (target 0.63-0.73, over >= 200 galaxies). Writes
``benchmarks/results/fit-<platform>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import galsim
import jax
import numpy as np

import jaxsky
from jaxsky.infer import PARAMS, SERSIC_CONFIG, fit_sersic, sersic_plan

SCALE, PSF_BETA, PSF_FWHM = 0.2, 3.0, 0.7


def simulate(n, nx, seed):
    rng = np.random.default_rng(seed)
    gmag, gphi = 0.4 * np.sqrt(rng.uniform(size=n)), rng.uniform(0, np.pi, n)
    truth = {
        "flux": rng.uniform(500, 5000, n),
        "half_light_radius": rng.uniform(0.25, 0.8, n),
        "n": rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 4.0], n),
        "g1": gmag * np.cos(2 * gphi),
        "g2": gmag * np.sin(2 * gphi),
        "dx": rng.uniform(-0.5, 0.5, n) * SCALE,
        "dy": rng.uniform(-0.5, 0.5, n) * SCALE,
    }
    psf = galsim.Moffat(PSF_BETA, fwhm=PSF_FWHM)
    images, var, snr = np.empty((n, nx, nx), np.float32), np.empty(n), rng.uniform(20, 200, n)
    for i in range(n):
        t = {k: float(v[i]) for k, v in truth.items()}
        gal = galsim.Sersic(t["n"], half_light_radius=t["half_light_radius"], flux=t["flux"])
        gal = gal.shear(g1=t["g1"], g2=t["g2"]).shift(t["dx"], t["dy"])
        img = galsim.Convolve(gal, psf).drawImage(nx=nx, ny=nx, scale=SCALE).array
        sigma = np.sqrt(np.sum(img**2)) / snr[i]
        var[i] = sigma**2
        images[i] = img + rng.normal(0, sigma, img.shape)
    return truth, images, var, snr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--nx", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--n-fft", type=int, help="fixed FFT size instead of the automatic plan")
    ap.add_argument("--alias-rings", type=int, default=3, help="with --n-fft (default 3)")
    ap.add_argument("--tag", default="", help="suffix for the result file names")
    args = ap.parse_args(argv)

    t = time.perf_counter()
    truth, images, var, snr = simulate(args.n, args.nx, args.seed)
    t_sim = time.perf_counter() - t
    psf = jaxsky.Moffat(PSF_BETA, fwhm=PSF_FWHM)
    cfg = SERSIC_CONFIG._replace(chunk_size=args.chunk_size)
    plan = None
    if args.n_fft is not None:
        plan = sersic_plan(psf, args.nx, args.nx, SCALE, 1.0)
        plan = plan._replace(n_fft=args.n_fft, alias_rings=args.alias_rings)
    k = min(args.chunk_size, args.n)
    t = time.perf_counter()
    first = fit_sersic(images[:k], var[:k], psf, scale=SCALE, config=cfg, plan=plan)
    t_first = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    res = fit_sersic(images, var, psf, scale=SCALE, config=cfg, plan=plan)
    t_run, c_run = time.perf_counter() - t, time.process_time() - c
    ok = res["converged"]
    stats = {}
    for p in PARAMS:
        z = ((res[p] - truth[p]) / res[f"{p}_err"])[ok]
        stats[p] = {
            "mean_z": float(np.mean(z)),
            "var_z": float(np.var(z)),
            "cover68": float(np.mean(np.abs(z) < 1)),
            "median_rel_err": float(np.median(res[f"{p}_err"][ok] / np.abs(truth[p][ok])))
            if p in ("flux", "half_light_radius", "n")
            else float(np.median(res[f"{p}_err"][ok])),
        }
    out = {
        "benchmark": "fit_sersic",
        "platform": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "cpu_count": __import__("os").cpu_count(),
        "machine": platform.platform(),
        "versions": {"jax": jax.__version__, "galsim": galsim.__version__},
        "n_galaxies": args.n,
        "stamp": [args.nx, args.nx],
        "scale": SCALE,
        "psf": {"beta": PSF_BETA, "fwhm": PSF_FWHM},
        "config": cfg._asdict(),
        "simulate_s": t_sim,
        "first_chunk_s_incl_compile": t_first,
        "first_chunk_size": k,
        "run_s": t_run,
        "run_cpu_s": c_run,
        "fits_per_s": args.n / t_run,
        "fits_per_cpu_s": args.n / c_run,
        "plan": str(plan) if plan is not None else "automatic (sersic_plan, see fit_sersic)",
        "first_chunk_flux_matches": bool(np.allclose(first["flux"], res["flux"][:k])),
        "converged_fraction": float(ok.mean()),
        "flags_histogram": {int(f): int(c) for f, c in zip(*np.unique(res["flags"], True))},
        "median_n_steps": float(np.median(res["n_steps"])),
        "zscores": stats,
        "note": "wall-clock on a shared machine; other processes may inflate times",
    }
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    name = f"fit-{out['platform']}{args.tag}"
    (outdir / f"{name}.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"# fit_sersic benchmark ({out['platform']}, {out['device']})",
        "",
        f"{args.n} GalSim Sersic x Moffat stamps {args.nx}x{args.nx}, SNR 20-200; "
        f"chunk {args.chunk_size}.",
        "",
        f"- first chunk of {k} (incl. compile): {t_first:.1f} s",
        f"- all {args.n} fits: {t_run:.1f} s wall = **{out['fits_per_s']:.2f} fits/s**; "
        f"{c_run:.1f} s of process CPU time = {out['fits_per_cpu_s']:.2f} fits per CPU-second",
        f"- plan: {out['plan']}",
        f"- converged: {100 * ok.mean():.1f}%; median iterations {out['median_n_steps']:.0f}",
        "",
        "| parameter | mean z | var z | 68% coverage | median error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p, s in stats.items():
        lines.append(
            f"| {p} | {s['mean_z']:+.3f} | {s['var_z']:.3f} | {s['cover68']:.3f} | "
            f"{s['median_rel_err']:.3g} |"
        )
    lines += ["", f"_{out['note']}._", ""]
    (outdir / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
