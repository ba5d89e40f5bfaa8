"""Generation throughput of ``jaxsky generate`` against GalSim's raw single-core draw rate.

    python benchmarks/generate.py [--preset paper] [--n 2000] [--workers 1 2] [--quick]

In one run: (1) the raw rate of plain GalSim calls for the same preset and design rows
(build galaxy and PSF, draw the galaxy x PSF stamp and the PSF stamp, as the generator does),
single core, in this process; (2) ``jaxsky.data.generate`` end to end (process start-up,
design, rendering, chunk files, HDF5 assembly) for each worker count, plus its rendering-only
rate (images / time between the first and the last chunk written); (3) a control: the
aggregate raw rate of W plain-GalSim processes started together, i.e. what the machine really
gives W processes. The target is generation >= 90% of raw rate x workers.
Writes ``generate-<platform>[-<preset>].json`` / ``.md``.
Timings on a shared machine are inflated by other processes: the JSON records the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def raw_rate(preset_name: str, n: int, seed: int) -> float:
    """Images/s of direct GalSim draws of the preset's first ``n`` design rows (one core)."""
    import galsim

    from jaxsky.data import get_preset
    from jaxsky.data.design import index_seeds

    preset = get_preset(preset_name)
    design = preset.design(n, seed=seed)
    ny, nx = preset.stamp_shape()
    scale = preset.pixel_scale()
    seeds = index_seeds(seed, np.arange(n), 0)
    names = preset.param_names
    t0 = time.perf_counter()
    for i in range(n):
        v = dict(zip(names, design.params[i]))
        gal = preset.galsim_galaxy(v, rng_seed=int(seeds[i]))
        psf = preset.galsim_psf(v, None)
        galsim.Convolve(gal, psf).drawImage(nx=nx, ny=ny, scale=scale)
        psf.drawImage(nx=nx, ny=ny, scale=scale)
    return n / (time.perf_counter() - t0)


def _raw_proc(preset_name, n, seed, barrier, results):
    raw_rate(preset_name, 5, seed)  # imports and warm-up before the common start
    barrier.wait()
    results.put(raw_rate(preset_name, n, seed))


def raw_rate_parallel(preset_name: str, n: int, seed: int, workers: int) -> float:
    """Aggregate raw rate of ``workers`` plain-GalSim processes started together.

    A control for the machine: on a shared or throttled machine it shows how much parallel
    CPU is really available, independently of jaxsky's generator.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_raw_proc, args=(preset_name, n, seed, barrier, results))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    rates = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return float(sum(rates))


def gen_rate(preset_name: str, n: int, seed: int, workers: int, chunk: int) -> dict:
    """End-to-end and rendering-phase rates of ``jaxsky.data.generate``."""
    from jaxsky.data import generate

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.h5"
        partial = Path(f"{out}.partial")
        stamps: list[float] = []
        import threading

        stop = threading.Event()

        def watch():  # times of chunk files appearing (rendering progress)
            seen = set()
            while not stop.is_set():
                if partial.exists():
                    for p in partial.glob("chunk-*.npz"):
                        if p.name not in seen:
                            seen.add(p.name)
                            stamps.append(time.perf_counter())
                time.sleep(0.02)

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        t0 = time.perf_counter()
        generate(preset_name, n, seed=seed, out=out, workers=workers, chunk=chunk, progress=False)
        total = time.perf_counter() - t0
        stop.set()
        th.join()
        size = out.stat().st_size
    render = None
    if len(stamps) >= 3:
        # images between the first and last chunk written / that time
        render = (len(stamps) - 1) * chunk / (stamps[-1] - stamps[0])
    return {
        "workers": workers,
        "n": n,
        "chunk": chunk,
        "wall_s": total,
        "end_to_end_rate": n / total,
        "render_rate": render,
        "file_bytes": size,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--raw-n", type=int, default=500)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n=400, raw-n=200")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.raw_n = 400, 200
    import galsim
    import jax

    import jaxsky

    load0 = os.getloadavg()
    raw = raw_rate(args.preset, args.raw_n, args.seed)
    runs = [gen_rate(args.preset, args.n, args.seed, w, args.chunk) for w in args.workers]
    for r in runs:
        w = r["workers"]
        r["raw_parallel_rate"] = (
            raw if w == 1 else raw_rate_parallel(args.preset, args.raw_n, args.seed, w)
        )
        r["render_fraction_of_raw_parallel"] = (r["render_rate"] or 0) / r["raw_parallel_rate"]
        target = 0.9 * raw * r["workers"]
        r["target_rate"] = target
        r["end_to_end_fraction_of_raw_x_workers"] = r["end_to_end_rate"] / (raw * r["workers"])
        if r["render_rate"]:
            r["render_fraction_of_raw_x_workers"] = r["render_rate"] / (raw * r["workers"])
    result = {
        "preset": args.preset,
        "raw_galsim_rate_single_core": raw,
        "raw_n": args.raw_n,
        "runs": runs,
        "cpu_count": os.cpu_count(),
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "versions": {
            "jaxsky": jaxsky.__version__,
            "galsim": galsim.__version__,
            "jax": jax.__version__,
        },  # fmt: skip
    }
    plat = jax.devices()[0].platform
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"generate-{plat}" + ("" if args.preset == "paper" else f"-{args.preset}")
    stem += "-quick" if args.quick else ""
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Generation throughput: preset `{args.preset}`",
        "",
        f"Raw GalSim single-core draw rate (galaxy x PSF + PSF stamp): **{raw:.1f} img/s** "
        f"({args.raw_n} images).  CPUs: {os.cpu_count()}, load average before/after: "
        f"{load0[0]:.1f}/{result['loadavg_after'][0]:.1f} (a shared machine inflates timings).",
        "",
        "Control: W plain-GalSim processes started together (what the machine really gives W "
        "processes; on a quiet machine about raw x W).",
        "",
        "| workers | N | end-to-end img/s | rendering img/s | target (0.9 x raw x W) | "
        "end-to-end / (raw x W) | rendering / (raw x W) | control: W raw processes img/s | "
        "rendering / control |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        rr = r["render_rate"]
        rf = r.get("render_fraction_of_raw_x_workers")
        lines.append(
            f"| {r['workers']} | {r['n']} | {r['end_to_end_rate']:.1f} | "
            f"{'-' if rr is None else f'{rr:.1f}'} | {r['target_rate']:.1f} | "
            f"{r['end_to_end_fraction_of_raw_x_workers']:.2f} | "
            f"{'-' if rf is None else f'{rf:.2f}'} | {r['raw_parallel_rate']:.1f} | "
            f"{r['render_fraction_of_raw_parallel']:.2f} |"
        )
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
