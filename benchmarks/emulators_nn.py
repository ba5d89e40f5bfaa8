"""Benchmark the learned emulators (VAE, flow, hybrid) against PCA+GP on the ``paper`` set.

    python benchmarks/emulators_nn.py [--n-train 2048] [--n-val 256] [--n-test 512]
        [--vae-steps 3000] [--models pcagp,vae,hybrid] [--seed 0]

Training and validation images come from ``jaxsky.data.simulate("paper", ...)`` (the real paper
preset: Exponential x Gaussian PSF, 33x33 at 0.2"/pixel, Latin hypercube; ``--backend galsim``,
the reference, by default); the hold-out set is an independent design (``stream=1``). For
every model: median R^2 (per image, about its own mean), 95th-percentile max|residual|/peak,
median flux bias (sum ratio - 1), train time, predict throughput (warm, batch = hold-out
size) and compile time. Writes ``benchmarks/results/emulators_nn-<platform>.json`` and ``.md``.
Timings on a shared CPU are inflated by whatever else runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

import jaxsky
from jaxsky.data import simulate
from jaxsky.emulators import fit

VAE_CONFIG = dict(
    mode="conditional",
    latent_dim=32,
    dec_features=[64, 32, 16],
    dense=256,
    mlp_features=[256, 256, 256],
    batch_size=64,
    lr=1e-3,
    patience=30,
    val_every=200,
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
    t0 = time.perf_counter()
    em = fit(name, ds, config, key=key, progress=True)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = np.asarray(em.predict(held.params))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(em.predict(held.params))
    t_run = time.perf_counter() - t0
    out = metrics(pred, held.images)
    out.update(
        train_seconds=t_fit,
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
    ap.add_argument("--vae-steps", type=int, default=3000)
    ap.add_argument("--models", default="pcagp,vae,hybrid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="galsim", choices=("galsim", "jaxsky"))
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
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


def write(args, results, t_data):
    doc = {
        "benchmark": "emulators_nn",
        "platform": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "machine": platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "versions": {"jaxsky": jaxsky.__version__, "jax": jax.__version__},
        "n_train": args.n_train,
        "n_val": args.n_val,
        "n_test": args.n_test,
        "data_seconds": t_data,
        "results": results,
        "note": "CPU shared with other jobs: timings are upper bounds",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"emulators_nn-{jax.default_backend()}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    lines = [
        f"# emulators_nn ({doc['device']}, {args.n_train} train / {args.n_test} hold-out)",
        "",
        "| model | median R^2 | p95 max res/peak | median flux bias | train s | pred img/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {name} | {r['median_r2']:.6f} | {r['p95_maxres_over_peak']:.2e} | "
            f"{r['median_flux_bias']:+.1e} | {r['train_seconds']:.0f} | "
            f"{r['predict_images_per_second']:.0f} |"
        )
    lines += ["", doc["note"]]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
