"""Benchmark ``jaxsky.infer.fit_sersic``: MAP fits per second and the calibration of the errors.

    python benchmarks/fit.py [--n 1000] [--nx 64] [--chunk-size 128] [--seed 0]

GalSim draws ``--n`` noisy Sersic x Moffat stamps (optimal SNR uniform in 20-200, Sersic n in
{0.5, 1, 1.5, 2, 3, 4}, hlr 0.25-0.8 arcsec, |g| <= 0.4, sub-pixel offsets); jaxsky fits them
all. Reports compile time (first chunk) separately from the timed run over all stamps, the
convergence fraction, and per parameter the mean and variance of z = (fit - truth) / err and the
fraction of truths inside the 68% interval (target 0.63-0.73, over >= 200 galaxies). Writes
``benchmarks/results/fit-<platform><tag>.json`` and ``.md``.

    python benchmarks/fit.py --emulator-train 512 --n 100

instead trains a pcagp emulator on GalSim ``paper`` images and fits ``--n`` noisy stamps of its
domain through the emulator and through the renderer (``jaxsky.infer.fit_images``), reporting
their differences in units of the statistical error (``fit-emulator-<platform>.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import galsim
import jax
import numpy as np

import jaxsky
from jaxsky.infer import PARAMS, SERSIC_CONFIG, fit_sersic, sersic_plan
from jaxsky.testing import galsim_sersic_stamps

SCALE, PSF_BETA, PSF_FWHM = 0.2, 3.0, 0.7


def simulate(n, nx, seed):
    """GalSim truth, stamps, variances and SNRs (see ``jaxsky.testing.galsim_sersic_stamps``)."""
    st = galsim_sersic_stamps(
        n, seed=seed, nx=nx, scale=SCALE, psf_beta=PSF_BETA, psf_fwhm=PSF_FWHM
    )
    return st.truth, st.images, st.variance, st.snr


def emulator_agreement(args):
    """Fit the same noisy GalSim stamps through a trained pcagp emulator and the renderer."""
    from jaxsky import data, emulators
    from jaxsky.infer.emulated import fit_emulator, fit_images
    from jaxsky.render import Convolve, Exponential, Gaussian, draw, make_plan

    t = time.perf_counter()
    train = data.simulate("paper", args.emulator_train, seed=args.seed)
    emu = emulators.fit("pcagp", train, key=jax.random.key(args.seed))
    t_train = time.perf_counter() - t
    names, ranges = emu.param_names, emu.info["ranges"]  # flux, scale_radius, g1, g2, psf_fwhm
    lo, hi = (np.array([ranges[k][i] for k in names]) for i in (0, 1))
    rng = np.random.default_rng(args.seed + 1)
    # the emulator's domain, 10% in from its edges (fits need room on both sides)
    theta = lo + (hi - lo) * rng.uniform(0.1, 0.9, (args.n, len(names)))
    clean = np.empty((args.n, 33, 33))
    for i, th in enumerate(theta):
        gal = galsim.Exponential(flux=th[0], scale_radius=th[1]).shear(g1=th[2], g2=th[3])
        obj = galsim.Convolve(gal, galsim.Gaussian(fwhm=th[4]))
        clean[i] = obj.drawImage(nx=33, ny=33, scale=0.2).array
    snr = rng.uniform(20, 200, args.n)
    sigma = np.sqrt((clean**2).sum((1, 2))) / snr
    images = clean + sigma[:, None, None] * rng.standard_normal(clean.shape)
    fixed = {"psf_fwhm": theta[:, 4]}
    big = Convolve(Exponential(scale_radius=hi[1]).shear(g1=0.7, g2=0.0), Gaussian(fwhm=hi[4]))
    plan = make_plan(big, 33, 33, 0.2)

    def model(th):
        gal = Exponential(flux=th[0], scale_radius=th[1]).shear(g1=th[2], g2=th[3])
        return draw(Convolve(gal, Gaussian(fwhm=th[4])), nx=33, ny=33, scale=0.2, plan=plan)

    t = time.perf_counter()
    fe = fit_emulator(emu, images, sigma**2, fixed=fixed)
    t_emu = time.perf_counter() - t
    t = time.perf_counter()
    fr = fit_images(model, names, ranges, images, sigma**2, fixed=fixed)
    t_ren = time.perf_counter() - t
    ok = fe["converged"] & fr["converged"]
    stats = {}
    for i, k in enumerate(names[:4]):
        d = ((fe[k] - fr[k]) / fr[f"{k}_err"])[ok]
        ze, zr = (((f[k] - theta[:, i]) / f[f"{k}_err"])[ok] for f in (fe, fr))
        stats[k] = {
            "rms_diff_over_err": float(np.sqrt(np.mean(d**2))),
            "max_abs_diff_over_err": float(np.max(np.abs(d))),
            "median_err_ratio_emu_over_renderer": float(
                np.median(fe[f"{k}_err"][ok] / fr[f"{k}_err"][ok])
            ),
            "var_z_emulator": float(np.var(ze)),
            "var_z_renderer": float(np.var(zr)),
        }
    out = {
        "benchmark": "fit_emulator vs fit_images(renderer)",
        "platform": jax.default_backend(),
        "n_train": args.emulator_train,
        "n_galaxies": args.n,
        "snr": [20, 200],
        "train_s": t_train,
        "fit_emulator_s_incl_compile": t_emu,
        "fit_renderer_s_incl_compile": t_ren,
        "converged_both": float(ok.mean()),
        "plan": str(plan),
        "params": stats,
        "note": "wall-clock on a shared machine" + (f"; {args.note}" if args.note else ""),
    }
    lines = [
        f"# Emulator (pcagp, {args.emulator_train} GalSim 'paper' images) vs renderer fits",
        "",
        f"{args.n} noisy GalSim Exponential x Gaussian stamps (33x33, optimal SNR 20-200) inside "
        "the emulator's domain, PSF FWHM known; one fitter (`jaxsky.infer.fit_images`), one "
        f"parameter box. Both converged: {100 * ok.mean():.1f}%.",
        "",
        "| parameter | rms (emu - renderer) / err | max abs | err ratio | var z emu | var z rend |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k, st in stats.items():
        lines.append(
            f"| {k} | {st['rms_diff_over_err']:.3f} | {st['max_abs_diff_over_err']:.3f} | "
            f"{st['median_err_ratio_emu_over_renderer']:.3f} | {st['var_z_emulator']:.2f} | "
            f"{st['var_z_renderer']:.2f} |"
        )
    lines += [
        "",
        f"Training {t_train:.0f} s; fits incl. compile: emulator {t_emu:.0f} s, renderer "
        f"{t_ren:.0f} s. _{out['note']}._",
        "",
    ]
    return out, lines


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
    ap.add_argument("--note", default="", help="free text stored with the results")
    ap.add_argument(
        "--emulator-train",
        type=int,
        help="instead: train pcagp on this many 'paper' images and compare emulator-based with "
        "renderer-based fits of --n stamps",
    )
    args = ap.parse_args(argv)
    if args.emulator_train:
        out, lines = emulator_agreement(args)
        outdir = Path(args.out)
        outdir.mkdir(parents=True, exist_ok=True)
        name = f"fit-emulator-{out['platform']}{args.tag}"
        (outdir / f"{name}.json").write_text(json.dumps(out, indent=2))
        (outdir / f"{name}.md").write_text("\n".join(lines))
        print("\n".join(lines))
        return out

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
        "cpu_count": os.cpu_count(),
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
        "plan": str(plan)
        if plan is not None
        else "automatic: the fit_sersic default, sersic_plan(..., fast=True) "
        "(FFT period = stamp, 1 alias ring)",
        "first_chunk_flux_matches": bool(np.allclose(first["flux"], res["flux"][:k])),
        "converged_fraction": float(ok.mean()),
        "flags_histogram": {int(f): int(c) for f, c in zip(*np.unique(res["flags"], True))},
        "median_n_steps": float(np.median(res["n_steps"])),
        "zscores": stats,
        "note": "wall-clock on a shared machine; other processes may inflate times"
        + (f"; {args.note}" if args.note else ""),
        "load_average_1min_at_end": os.getloadavg()[0],
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
    lines += [
        "",
        f"_{out['note']}; 1-min load average at the end: "
        f"{out['load_average_1min_at_end']:.1f} on {out['cpu_count']} cores._",
        "",
    ]
    (outdir / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
