"""``jaxsky train``: fit an emulator on an HDF5 data set and save it."""

from __future__ import annotations

import json

__all__ = ["register", "parse_overrides"]

MODELS = ("pcagp", "vae", "flow", "ensemble", "hybrid")


def parse_overrides(items) -> dict:
    """``["key=value", ...]`` -> dict; values parsed as JSON when possible, else strings."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config {item!r} must look like key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _run(args):
    from pathlib import Path

    import jax

    from jaxsky import emulators

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    config = parse_overrides(args.config)
    if args.model not in emulators.families():
        raise ValueError(
            f"--model {args.model!r} is not available in this installation; "
            f"have {list(emulators.families())}"
        )
    try:
        from jaxsky.data import load as load_data
    except ImportError:
        raise ValueError("this jaxsky has no data loader (jaxsky.data.load)") from None
    dataset = load_data(args.data)
    emu = emulators.fit(
        args.model, dataset, config, key=jax.random.key(args.seed), progress=not args.quiet
    )
    emu.save(out, overwrite=args.overwrite)
    if not args.quiet:
        secs = emu.info.get("train_seconds", float("nan"))
        print(f"trained {args.model} on {len(dataset)} images in {secs:.1f} s -> {out}")


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an emulator (pcagp, vae, flow, ensemble, hybrid) on a data set",
        description=(
            "Fit an emulator on an HDF5 data set written by `jaxsky generate` and save it to "
            "OUT (a directory with emulator.json and state.msgpack, loadable with "
            "jaxsky.emulators.load). Configuration keys override the model's defaults."
        ),
    )
    p.add_argument("--model", required=True, choices=MODELS, help="emulator family")
    p.add_argument("--data", required=True, help="HDF5 data set (jaxsky generate output)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument(
        "--config",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, values in JSON (e.g. n_components=64 groups='[8]')",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run)
