"""Render (and optionally emulate and stream) galaxy stamps as fast as this device allows.

    python examples/gpu_benchmark.py                       # tiny: any CPU, ~1 minute
    python examples/gpu_benchmark.py --batch 4096,16384,65536 --stream 1000000 \
        --emulator my-emulator/ --out gpu-result.json      # an accelerator benchmark run

It renders random Sersic x Moffat galaxies (the issue's GPU target: 64 x 64, random n in
[0.5, 6], sheared) with ONE fixed FFT plan, sharded over all local devices
(:func:`jaxsky.parallel.sharded_draw`), and reports the compile time and the steady-state
stamps/s at each batch size (device-resident outputs, no host copy). ``--emulator`` also
times ``predict`` of a saved emulator at the same batch sizes; ``--stream N`` writes N stamps
to HDF5 with :func:`jaxsky.parallel.stream_to_hdf5` (bounded memory, progress bar).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import jaxsky
from jaxsky.bench.render import GALSIM_DEFAULT_LEVEL
from jaxsky.parallel import sharded_draw, sharded_predict, stream_to_hdf5

PROFILES = ("sersic_moffat", "exp_gauss")


def galaxies(rng, b, profile):
    """A batched profile of b random galaxies (each leaf has a leading axis b)."""
    g = rng.uniform(0, 0.5, b)
    phi = rng.uniform(0, np.pi, b)
    g1, g2 = g * np.cos(2 * phi), g * np.sin(2 * phi)
    if profile == "sersic_moffat":
        gal = jaxsky.Sersic(rng.uniform(0.5, 6.0, b), half_light_radius=rng.uniform(0.1, 1.5, b))
        psf = jaxsky.Moffat(rng.uniform(2, 5, b), fwhm=rng.uniform(0.5, 1.0, b))
    else:
        gal = jaxsky.Exponential(scale_radius=rng.uniform(0.1, 1.0, b))
        psf = jaxsky.Gaussian(fwhm=rng.uniform(0.2, 0.4, b))
    return jaxsky.Convolve(gal.shear(g1=g1, g2=g2), psf)


def best_time(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = min(_once(fn) for _ in range(repeats))
    return first, best


def _once(fn):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", default=None, help="comma-separated batch sizes per step")
    ap.add_argument("--stamp", type=int, default=64, help="stamp side in pixels (default 64)")
    ap.add_argument("--scale", type=float, default=0.2, help="arcsec/pixel (default 0.2)")
    ap.add_argument("--profile", choices=PROFILES, default="sersic_moffat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--emulator", default=None, help="a saved emulator directory to time")
    ap.add_argument("--stream", type=int, default=0, help="also stream N stamps to HDF5")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    dev = jax.local_devices()[0]
    ndev = jax.local_device_count()
    if args.batch:
        sizes = [int(s) for s in args.batch.split(",")]
    else:
        sizes = [32 * ndev, 128 * ndev] if dev.platform == "cpu" else [4096 * ndev, 16384 * ndev]
    if min(sizes) < 1 or args.stamp < 8:
        raise SystemExit("error: --batch sizes must be >= 1 and --stamp >= 8")
    rng = np.random.default_rng(args.seed)
    gsp = GALSIM_DEFAULT_LEVEL  # the accuracy level compared with GalSim's defaults
    objs = galaxies(rng, max(sizes), args.profile)
    plan = jaxsky.make_plan(objs, args.stamp, args.stamp, args.scale, gsparams=gsp)
    print(f"{dev.device_kind} x {ndev} ({dev.platform}); {plan}", flush=True)
    result = dict(
        device=str(dev.device_kind),
        platform=dev.platform,
        devices=ndev,
        profile=args.profile,
        stamp=args.stamp,
        plan=plan._asdict(),
        render=[],
    )
    for b in sizes:
        sub = jax.tree.map(lambda x, b=b: x[:b] if np.ndim(x) else x, objs)

        def run(sub=sub):
            return sharded_draw(sub, nx=args.stamp, ny=args.stamp, scale=args.scale, plan=plan)

        first, best = best_time(run, args.repeats)
        row = dict(batch=b, compile_s=first - best, run_s=best, stamps_per_s=b / best)
        result["render"].append(row)
        print(f"render  B={b:>8}: {b / best:12,.0f} stamps/s  (compile {first - best:.1f} s)")
    if args.emulator:
        emu = jaxsky.emulators.load(args.emulator)
        lo = np.array([emu.info["ranges"][k][0] for k in emu.param_names])
        hi = np.array([emu.info["ranges"][k][1] for k in emu.param_names])
        result["predict"] = []
        for b in sizes:
            th = rng.uniform(lo, hi, (b, len(lo)))
            first, best = best_time(lambda th=th: sharded_predict(emu, th), args.repeats)
            result["predict"].append(
                dict(batch=b, compile_s=first - best, run_s=best, stamps_per_s=b / best)
            )
            print(f"predict B={b:>8}: {b / best:12,.0f} stamps/s  (compile {first - best:.1f} s)")
    if args.stream:
        result["stream"] = stream(args, rng, max(sizes))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def stream(args, rng, chunk):
    """Render args.stream random Sersic x Moffat(3.5, 0.7") galaxies into an HDF5 file."""
    n = args.stream
    th = np.column_stack([rng.uniform(0.5, 6.0, n), rng.uniform(0.1, 1.5, n)])
    psf = jaxsky.Moffat(3.5, fwhm=0.7)
    # One plan that covers the whole range: the largest galaxies at both ends of n.
    ends = jaxsky.Sersic(np.array([0.5, 6.0]), half_light_radius=np.array([1.5, 1.5]))
    gsp = GALSIM_DEFAULT_LEVEL
    plan = jaxsky.make_plan(
        jaxsky.Convolve(ends, psf), args.stamp, args.stamp, args.scale, gsparams=gsp
    )

    def one(t):
        obj = jaxsky.Convolve(jaxsky.Sersic(t[0], half_light_radius=t[1]), psf)
        return jaxsky.draw(obj, nx=args.stamp, ny=args.stamp, scale=args.scale, plan=plan)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stream_to_hdf5(one, th, Path(tmp) / "stamps.h5", chunk=chunk)
        dt = time.perf_counter() - t0
    print(f"stream  N={n:>8}: {n / dt:12,.0f} stamps/s to HDF5 (compile included)")
    return dict(n=n, chunk=chunk, seconds=dt, stamps_per_s=n / dt)


if __name__ == "__main__":
    sys.exit(main())
