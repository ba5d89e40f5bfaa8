"""Full accuracy sweep of the renderer against tight GalSim (issue 2, deliverable 3).

    python tools/accuracy_sweep.py --n 200 --out benchmarks/results/accuracy.json

Draws ``--n`` random Sersic x PSF galaxies per setup (jaxsky.testing.SETUPS), renders each
with jaxsky (float64) and GalSim (folding_threshold=1e-4, maxk_threshold=1e-5,
kvalue_accuracy=1e-7), and prints the distribution of max|diff|/peak and |dflux|/flux.
Galaxies whose GalSim reference needs an FFT above --max-galsim-fft are redrawn and counted.
The JSON also lists each setup's worst galaxies (index among the accepted draws, errors and
parameters), so an outlier can be reproduced alone with ``jaxsky.testing.random_case``.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import jaxsky  # noqa: E402
from jaxsky._io import atomic_write_bytes  # noqa: E402
from jaxsky.testing import SETUPS, accuracy_sweep  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="galaxies per setup")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--max-galsim-fft", type=int, default=8192)
    ap.add_argument("--out", default=None, help="JSON output path")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--setups", nargs="+", choices=sorted(SETUPS), default=list(SETUPS))
    ap.add_argument("--worst", type=int, default=3, help="worst galaxies listed per setup")
    args = ap.parse_args(argv)
    result = dict(jaxsky=jaxsky.__version__, n_per_setup=args.n, seed=args.seed, setups={})
    for name in args.setups:
        setup = SETUPS[name]
        t0 = time.perf_counter()
        errs, dfl, params, skipped = accuracy_sweep(
            setup, args.n, args.seed, max_fft_size=args.max_galsim_fft
        )
        pct = lambda a: {q: float(np.percentile(a, q)) for q in (50, 90, 99, 100)}  # noqa: E731
        result["setups"][name] = dict(
            setup=setup._asdict(),
            n=len(errs),
            skipped_galsim_too_large=skipped,
            err_over_peak=pct(errs),
            rel_flux_err=pct(dfl),
            pass_1e4=bool(errs.max() <= 1e-4 and dfl.max() <= 1e-4),
            worst=[
                dict(index=int(i), err_over_peak=float(errs[i]), rel_flux_err=float(dfl[i]))
                | {k: (v if isinstance(v, str) else float(v)) for k, v in params[i].items()}
                for i in np.argsort(-np.maximum(errs, dfl))[: args.worst]
            ],
            seconds=time.perf_counter() - t0,
        )
        r = result["setups"][name]
        print(
            f"{name}: n={len(errs)} (redrawn {skipped}) "
            f"err/peak median {r['err_over_peak'][50]:.2e} "
            f"p99 {r['err_over_peak'][99]:.2e} max {r['err_over_peak'][100]:.2e}; "
            f"|dflux| max {r['rel_flux_err'][100]:.2e}",
            flush=True,
        )
    if args.out:
        atomic_write_bytes(
            args.out, json.dumps(result, indent=2).encode(), overwrite=args.overwrite
        )


if __name__ == "__main__":
    main()
