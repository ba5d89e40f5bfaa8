"""Benchmark the learned emulators (VAE, flow, hybrid) against PCA+GP on the ``paper`` set.

    python benchmarks/emulators_nn.py [--n-train 2048] [--n-val 256] [--n-test 512]
        [--vae-steps 8000] [--models pcagp,vae] [--seed 0]

Training and validation images come from ``jaxsky.data.simulate("paper", ...)`` (the real paper
preset: Exponential x Gaussian PSF, 33x33 at 0.2"/pixel, Latin hypercube; ``--backend galsim``,
the reference, by default); the hold-out set is an independent design (``stream=1``). For
every model: median R^2 (per image, about its own mean), 95th-percentile max|residual|/peak,
median flux bias (sum ratio - 1), train time (wall and CPU seconds of the process, all threads,
with the load average around it), predict throughput (warm, batch = hold-out size) and compile
time. Writes ``benchmarks/results/emulators_nn-<platform>.json`` and ``.md``, with a line that
states, metric by metric, whether the VAE beats PCA+GP. Wall times on a shared CPU are inflated
by whatever else runs; CPU seconds much less so.

The VAE is the conditional decoder (theta -> MLP -> dense decoder -> unit-flux image; flux
applied analytically; log size/PSF conditioning; each image's errors weighted relative to its
peak; warm-up + cosine learning rate; early stopping on the val split).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxsky
from jaxsky._io import atomic_write_bytes
from jaxsky.data import simulate
from jaxsky.emulators import fit

VAE_CONFIG = dict(
    mode="conditional",
    decoder="dense",
    latent_dim=32,
    dense_features=[512, 1024],
    mlp_features=[256, 256, 256],
    batch_size=256,
    lr=2e-3,
    patience=20,
    val_every=200,
)
# metrics compared in the verdict line: name, lower is better (abs value for the bias)
VERDICT = (
    ("median_r2", False, "median R^2"),
    ("p95_maxres_over_peak", True, "p95 max|res|/peak"),
    ("median_flux_bias", True, "|median flux bias|"),
    ("train_cpu_seconds", True, "train CPU s"),
    ("predict_images_per_second", False, "predict img/s"),
)


def metrics(pred, truth) -> dict:
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    res = pred - truth
    ss_res = (res**2).sum(axis=(1, 2))
    ss_tot = ((truth - truth.mean(axis=(1, 2), keepdims=True)) ** 2).sum(axis=(1, 2))
    r2 = 1.0 - ss_res / ss_tot
    maxres = np.abs(res).max(axis=(1, 2)) / truth.max(axis=(1, 2))
    bias = pred.sum(axis=(1, 2)) / truth.sum(axis=(1, 2)) - 1.0
    return {
        "median_r2": float(np.median(r2)),
        "p95_maxres_over_peak": float(np.percentile(maxres, 95)),
        "median_maxres_over_peak": float(np.median(maxres)),
        "median_flux_bias": float(np.median(bias)),
    }


def train_set(n_train, n_val, seed, backend="galsim"):
    ds = simulate("paper", n_train + n_val, seed=seed, backend=backend)
    split = np.zeros(len(ds), np.int8)
    split[np.random.default_rng(seed).permutation(len(ds))[:n_val]] = 1
    return dataclasses.replace(ds, split_of=split)


def run_model(name, config, ds, held, key):
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    em = fit(name, ds, config, key=key, progress=True)
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    load1 = os.getloadavg()
    t0 = time.perf_counter()
    pred = np.asarray(em.predict(held.params))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(em.predict(held.params))
    t_run = time.perf_counter() - t0
    out = metrics(pred, held.images)
    out.update(
        train_seconds=t_fit,
        train_cpu_seconds=c_fit,
        load_average_before_after=[round(load0[0], 2), round(load1[0], 2)],
        predict_compile_seconds=t_first - t_run,
        predict_images_per_second=len(held) / t_run,
        config=dict(em.config),
    )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=2048)
    ap.add_argument("--n-val", type=int, default=256)
    ap.add_argument("--n-test", type=int, default=512)
    ap.add_argument("--vae-steps", type=int, default=8000)
    ap.add_argument("--models", default="pcagp,vae")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="galsim", choices=("galsim", "jaxsky"))
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--overwrite", action="store_true", help="replace existing results")
    args = ap.parse_args(argv)
    stem = Path(args.out) / f"emulators_nn-{jax.default_backend()}"
    for ext in (".json", ".md"):  # checked before the run; later writes replace this run's own
        if stem.with_suffix(ext).exists() and not args.overwrite:
            raise SystemExit(f"{stem.with_suffix(ext)} exists; pass --overwrite or another --out")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    ds = train_set(args.n_train, args.n_val, args.seed, args.backend)
    held = simulate("paper", args.n_test, seed=args.seed, stream=1, backend=args.backend)
    t_data = time.perf_counter() - t0
    configs = {
        "pcagp": {"splits": ["train", "val"]},
        "vae": dict(VAE_CONFIG, steps=args.vae_steps),
        "flow": {"vae": dict(VAE_CONFIG, mode="latent", steps=args.vae_steps)},
        "hybrid": {"residual": dict(VAE_CONFIG, decoder="dense", steps=200)},
    }
    results = {}
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        try:
            results[name] = run_model(name, configs[name], ds, held, jax.random.key(args.seed))
        except Exception as err:  # one family failing must not lose the others' numbers
            results[name] = {"error": f"{type(err).__name__}: {err}"}
        print({k: v for k, v in results[name].items() if k != "config"}, flush=True)
        write(args, results, t_data)  # after every model: a long run keeps what it measured


def _pcagp_reference(out: Path) -> tuple[dict, str]:
    """PCA+GP's row of ``emulators-<platform>.json`` (benchmarks/emulators.py: same preset,
    sizes, seed and backend) when this run did not train it."""
    path = out / f"emulators-{jax.default_backend()}.json"
    try:
        row = json.loads(path.read_text())["models"]["pcagp"]
    except (OSError, KeyError, ValueError):
        return {}, ""
    return row, f" (PCA+GP from {path.name})"


def verdict(results, out: Path) -> str:
    """One line: on which metrics the VAE beats PCA+GP."""
    v, p, src = results.get("vae", {}), results.get("pcagp", {}), ""
    if "median_r2" not in p:
        p, src = _pcagp_reference(out)
    if "median_r2" not in v or "median_r2" not in p:
        return "VAE vs PCA+GP: not both measured."
    wins, losses = [], []
    for key, lower, label in VERDICT:
        a, b = (abs(v[key]), abs(p[key])) if "bias" in key else (v[key], p[key])
        fmt = ".7f" if key == "median_r2" else ".3g"
        (wins if (a < b if lower else a > b) else losses).append(
            f"{label} ({v[key]:{fmt}} vs {p[key]:{fmt}})"
        )
    return (
        f"VAE vs PCA+GP{src} (VAE value first): VAE better on "
        + (", ".join(wins) or "nothing")
        + "; PCA+GP better on "
        + (", ".join(losses) or "nothing")
        + "."
    )


def write(args, results, t_data):
    doc = {
        "benchmark": "emulators_nn",
        "platform": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": {"jaxsky": jaxsky.__version__, "jax": jax.__version__},
        "n_train": args.n_train,
        "n_val": args.n_val,
        "n_test": args.n_test,
        "data_seconds": t_data,
        "results": results,
        "command": "python benchmarks/emulators_nn.py " + " ".join(args.argv),
        "note": (
            "wall times on a CPU shared with other jobs are upper bounds; CPU s counts all "
            "threads of the process; load = 1-min load average before/after training"
        ),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"emulators_nn-{jax.default_backend()}"
    atomic_write_bytes(
        stem.with_suffix(".json"), json.dumps(doc, indent=1).encode(), overwrite=True
    )
    lines = [
        f"# emulators_nn ({doc['device']}, {args.n_train} train / {args.n_test} hold-out)",
        "",
        "| model | median R^2 | p95 max res/peak | median flux bias | train s (CPU s) | load "
        "| pred img/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        load = "-".join(f"{v:.1f}" for v in r.get("load_average_before_after", []))
        lines.append(
            f"| {name} | {r['median_r2']:.7f} | {r['p95_maxres_over_peak']:.2e} | "
            f"{r['median_flux_bias']:+.1e} | {r['train_seconds']:.0f} "
            f"({r.get('train_cpu_seconds', float('nan')):.0f}) | {load} | "
            f"{r['predict_images_per_second']:.0f} |"
        )
    lines += ["", verdict(results, out), "", doc["note"], "", f"Command: {doc['command']}"]
    atomic_write_bytes(stem.with_suffix(".md"), ("\n".join(lines) + "\n").encode(), overwrite=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
