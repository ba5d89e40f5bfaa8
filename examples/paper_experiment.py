"""Reproduce the original experiment: emulators trained on the `paper` preset, compared on a
hold-out with the same independent measurements.

    python examples/paper_experiment.py --n-train 2048 --n-test 512 --out paper-experiment

Writes the data sets, the trained models and `compare/comparison.md` (one row per model).
"""

import argparse
from pathlib import Path

import jax

from jaxsky import data, emulators
from jaxsky.validate import compare


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=2048)
    ap.add_argument("--n-test", type=int, default=512)
    ap.add_argument("--vae-steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="paper-experiment")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    # Training set and an independent hold-out (a different seed stream), both with GalSim.
    data.generate("paper", args.n_train, seed=args.seed, out=out / "train.h5")
    data.generate("paper", args.n_test, seed=args.seed, stream=1, out=out / "holdout.h5")
    train, holdout = data.load(out / "train.h5"), data.load(out / "holdout.h5")
    configs = {
        "pcagp": {},
        "vae": {"decoder": "dense", "steps": args.vae_steps},
    }
    key = jax.random.key(args.seed)
    models = {}
    for name, cfg in configs.items():
        key, k = jax.random.split(key)
        models[name] = emulators.fit(name, train, cfg, key=k)
        models[name].save(out / "models" / name)
    table = compare(models, holdout, out / "compare", split=None, hsm=True)
    for row in table:
        print(
            f"{row['model']:6s} R2={row['r2']:.7f} "
            f"p95 max|res|/peak={row['p95_max_res_over_peak']:.2e} "
            f"flux bias={row['rel_flux_err']:+.1e}"
        )
    print(f"table: {out / 'compare' / 'comparison.md'}")


if __name__ == "__main__":
    main()
