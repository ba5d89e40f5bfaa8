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
    return raw_stats(preset_name, n, seed)["rate"]


def raw_stats(preset_name: str, n: int, seed: int) -> dict:
    """Wall rate (images/s) and CPU seconds per image of direct GalSim draws (one core)."""
    import galsim

    from jaxsky.data import get_preset
    from jaxsky.data.design import index_seeds

    preset = get_preset(preset_name)
    design = preset.design(n, seed=seed)
    ny, nx = preset.stamp_shape()
    scale = preset.pixel_scale()
    seeds = index_seeds(seed, np.arange(n), 0)
    names = preset.param_names
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        v = dict(zip(names, design.params[i]))
        gal = preset.galsim_galaxy(v, rng_seed=int(seeds[i]))
        psf = preset.galsim_psf(v, None)
        galsim.Convolve(gal, psf).drawImage(nx=nx, ny=ny, scale=scale)
        psf.drawImage(nx=nx, ny=ny, scale=scale)
    return {"rate": n / (time.perf_counter() - t0), "cpu_s": (time.process_time() - c0) / n}


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


# Watches OUT.partial in a separate process and prints the (monotonic) time each chunk file
# appears: a thread here would make the generator spawn its workers instead of forking them.
_WATCH = r"""
import os, sys, time
seen = set()
while True:
    try:
        names = os.listdir(sys.argv[1])
    except FileNotFoundError:
        names = []
    for name in names:
        if name.startswith("chunk-") and name not in seen:
            seen.add(name)
            print(time.monotonic(), flush=True)
    time.sleep(0.02)
"""


def _mode(workers: int, compression: str) -> str:
    """How ``generate`` will run (mirrors its choice): in-process, or start method + who
    compresses."""
    from jaxsky.data.generate import _spare_core, _start_method

    method = _start_method()
    parent = compression != "none" and workers <= 4 and _spare_core(workers)
    if workers == 1 and not (parent and method == "fork"):
        return "in-process"
    if compression == "none":
        return f"{method}, uncompressed"
    return f"{method}, " + ("parent compresses" if parent else "workers compress")


def _cpu() -> float:
    """CPU seconds of this process + its finished children (the worker processes)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def gen_rate(
    preset_name: str, n: int, seed: int, workers: int, chunk: int, compression: str = "lzf"
) -> dict:
    """End-to-end and rendering-phase rates of ``jaxsky.data.generate``."""
    import subprocess

    from jaxsky.data import generate

    mode = _mode(workers, compression)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.h5"
        watch = subprocess.Popen(
            [sys.executable, "-c", _WATCH, f"{out}.partial"], stdout=subprocess.PIPE, text=True
        )
        c0 = _cpu()
        t0 = time.monotonic()
        generate(
            preset_name, n, seed=seed, out=out, workers=workers, chunk=chunk,
            compression=compression, progress=False,
        )  # fmt: skip
        total = time.monotonic() - t0
        cpu_s = (_cpu() - c0) / n
        watch.terminate()
        stamps = sorted(float(x) for x in watch.communicate()[0].split())
        size = out.stat().st_size
    render = None
    if len(stamps) >= 3:
        # images between the first and last chunk written / that time
        render = (len(stamps) - 1) * chunk / (stamps[-1] - stamps[0])
    return {
        "workers": workers,
        "n": n,
        "chunk": chunk,
        "compression": compression,
        "start_method": mode,
        "wall_s": total,
        "cpu_s_per_image": cpu_s,
        "end_to_end_rate": n / total,
        "render_rate": render,
        "file_bytes": size,
    }


def paired(
    preset_name: str, n: int, raw_n: int, seed: int, chunk: int, reps: int, compression: str
) -> dict:
    """Alternating raw / 1-worker generator blocks: ratios robust to a drifting machine load.

    Each repetition times ``raw_n`` raw GalSim draws (fresh design rows, so GalSim's caches
    give neither side an edge) right before and after one ``n``-image generation, and takes
    generator rate / mean raw rate (wall and CPU). Returns the per-repetition ratios and
    their medians.
    """
    from jaxsky.data import generate

    wall, cpu, modes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(reps):
            a = raw_stats(preset_name, raw_n, seed + 100 + 2 * r)
            modes.append(_mode(1, compression))
            c0, t0 = _cpu(), time.monotonic()
            generate(
                preset_name, n, seed=seed + r, out=Path(tmp) / f"p{r}.h5", workers=1,
                chunk=chunk, compression=compression, progress=False,
            )  # fmt: skip
            t, c = time.monotonic() - t0, (_cpu() - c0) / n
            b = raw_stats(preset_name, raw_n, seed + 101 + 2 * r)
            wall.append(n / t / ((a["rate"] + b["rate"]) / 2))
            cpu.append((a["cpu_s"] + b["cpu_s"]) / 2 / c)
    return {
        "reps": reps,
        "n": n,
        "raw_n": raw_n,
        "modes": modes,
        "end_to_end_over_raw": wall,
        "cpu_efficiency": cpu,
        "median_end_to_end_over_raw": float(np.median(wall)),
        "median_cpu_efficiency": float(np.median(cpu)),
    }


def markdown(result: dict) -> str:
    """The results table of one benchmark run (``result`` as written to the JSON)."""
    raw, (raw0, raw1) = (
        result["raw_galsim_rate_single_core"],
        result["raw_galsim_rate_before_after"],
    )
    load0, load1 = result["loadavg_before"][0], result["loadavg_after"][0]
    run0 = result["runs"][0]
    lines = [
        f"# Generation throughput: preset `{result['preset']}`",
        "",
        f"Raw GalSim single-core draw rate (galaxy x PSF + PSF stamp): **{raw:.1f} img/s** "
        f"(mean of {raw0:.1f} before and {raw1:.1f} after the runs, {result['raw_n']} images; "
        f"{result['raw_galsim_cpu_s_per_image'] * 1e6:.0f} us CPU per image).  CPUs: "
        f"{result['cpu_count']}, load average before/after: {load0:.1f}/{load1:.1f} (a shared "
        "machine inflates timings).",
        "",
        f"Generator: chunk {run0.get('chunk')}, compression {run0.get('compression')}.  "
        "Control: W plain-GalSim processes started together (what the machine really gives W "
        "processes; on a quiet machine about raw x W).  CPU efficiency: raw CPU per image / "
        "generator CPU per image (parent + workers, start-up, compression and writing "
        "included).",
        "",
        "| workers | mode | N | end-to-end img/s | rendering img/s | target (0.9 x raw x W) | "
        "end-to-end / (raw x W) | rendering / (raw x W) | control: W raw processes img/s | "
        "end-to-end / control | rendering / control | CPU efficiency |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        rr = r["render_rate"]
        rf = r.get("render_fraction_of_raw_x_workers")
        ec = r.get(
            "end_to_end_fraction_of_raw_parallel", r["end_to_end_rate"] / r["raw_parallel_rate"]
        )
        lines.append(
            f"| {r['workers']} | {r['start_method']} | {r['n']} | {r['end_to_end_rate']:.1f} | "
            f"{'-' if rr is None else f'{rr:.1f}'} | {r['target_rate']:.1f} | "
            f"{r['end_to_end_fraction_of_raw_x_workers']:.2f} | "
            f"{'-' if rf is None else f'{rf:.2f}'} | {r['raw_parallel_rate']:.1f} | {ec:.2f} | "
            f"{r['render_fraction_of_raw_parallel']:.2f} | {r['cpu_efficiency']:.2f} |"
        )
    pr = result.get("paired")
    if pr:
        modes = ", ".join(sorted(set(pr.get("modes", [])))) or "-"
        lines += [
            "",
            f"Paired (1 worker, mode: {modes}; {pr['reps']} repetitions of {pr['raw_n']} raw "
            f"draws, a {pr['n']}-image generation, {pr['raw_n']} raw draws; fresh rows each "
            "time): end-to-end / raw, median "
            f"**{pr['median_end_to_end_over_raw']:.2f}** (each: "
            + ", ".join(f"{x:.2f}" for x in pr["end_to_end_over_raw"])
            + f"); CPU efficiency, median **{pr['median_cpu_efficiency']:.2f}** (each: "
            + ", ".join(f"{x:.2f}" for x in pr["cpu_efficiency"])
            + ").",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--raw-n", type=int, default=500)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--compression", default="lzf", choices=("lzf", "gzip", "none"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--paired", type=int, default=0, metavar="R",
        help="also R alternating raw / 1-worker generation blocks (robust on a loaded machine)",
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="n=400, raw-n=200")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--markdown", metavar="JSON", help="only rewrite JSON's .md table")
    args = ap.parse_args(argv)
    if args.markdown:
        src = Path(args.markdown)
        src.with_suffix(".md").write_text(markdown(json.loads(src.read_text())))
        return
    if Path(args.out).exists() and not Path(args.out).is_dir():
        ap.error(f"--out {args.out!r} is a file; it names the results directory")
    if args.quick:
        args.n, args.raw_n = 400, 200
    import galsim

    import jaxsky

    load0 = os.getloadavg()
    # Raw rate before and after the runs (the load of a shared machine drifts): their mean.
    raw0 = raw_stats(args.preset, args.raw_n, args.seed)
    runs = [
        gen_rate(args.preset, args.n, args.seed, w, args.chunk, args.compression)
        for w in args.workers
    ]
    # Another seed after the runs: GalSim caches per-profile tables (Sersic n), so redrawing the
    # same rows would be faster than drawing new ones.
    raw1 = raw_stats(args.preset, args.raw_n, args.seed + 1)
    pair = None
    if args.paired:
        # > 1024 images: smaller designs are optimised LHS, whose start-up would dominate.
        pair = paired(
            args.preset, max(args.n // 4, 2048), max(args.raw_n // 2, 50), args.seed,
            args.chunk, args.paired, args.compression,
        )  # fmt: skip
    raw = (raw0["rate"] + raw1["rate"]) / 2
    raw_cpu = (raw0["cpu_s"] + raw1["cpu_s"]) / 2
    import jax  # only now: a started JAX makes the generator spawn (not fork) its workers

    for r in runs:
        w = r["workers"]
        r["raw_parallel_rate"] = (
            raw if w == 1 else raw_rate_parallel(args.preset, args.raw_n, args.seed, w)
        )
        r["render_fraction_of_raw_parallel"] = (r["render_rate"] or 0) / r["raw_parallel_rate"]
        r["end_to_end_fraction_of_raw_parallel"] = r["end_to_end_rate"] / r["raw_parallel_rate"]
        target = 0.9 * raw * r["workers"]
        r["target_rate"] = target
        r["end_to_end_fraction_of_raw_x_workers"] = r["end_to_end_rate"] / (raw * r["workers"])
        if r["render_rate"]:
            r["render_fraction_of_raw_x_workers"] = r["render_rate"] / (raw * r["workers"])
        # CPU efficiency (robust to a loaded machine): raw CPU per image / generator CPU per
        # image (parent + workers, start-up and writing included).
        r["cpu_efficiency"] = raw_cpu / r["cpu_s_per_image"]
    result = {
        "preset": args.preset,
        "raw_galsim_rate_single_core": raw,
        "raw_galsim_rate_before_after": [raw0["rate"], raw1["rate"]],
        "raw_galsim_cpu_s_per_image": raw_cpu,
        "raw_n": args.raw_n,
        "chunk": args.chunk,
        "compression": args.compression,
        "runs": runs,
        "paired": pair,
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
    text = markdown(result)
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
