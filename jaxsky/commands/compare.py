"""``jaxsky compare MODEL... --data DATA --out DIR``: several models in one table and figure."""

from __future__ import annotations

from pathlib import Path

__all__ = ["register"]


def _run(args):
    from jaxsky.commands.evaluate import _load_data, shear_config
    from jaxsky.emulators import load
    from jaxsky.validate.report import compare

    models = {}
    for path in args.models:
        name = Path(path).name
        if name in models:
            raise ValueError(f"two models are named {name!r}; give their directories other names")
        models[name] = load(path)
    data = _load_data(args.data)
    table = compare(
        models,
        data,
        args.out,
        split=args.split,
        overwrite=args.overwrite,
        max_images=args.max_images,
        hsm=not args.no_hsm,
        morphology=args.morphology,
        shear=(lambda m: shear_config(m, data, args.shear, args.split)) if args.shear else None,
    )
    print(f"wrote {args.out}/comparison.md ({len(table)} models)")


def register(sub) -> None:
    from jaxsky.commands.evaluate import add_common

    p = sub.add_parser(
        "compare",
        help="evaluate several emulators on the same held-out set: one table and figure",
    )
    p.add_argument("models", nargs="+", help="saved emulator directories")
    p.add_argument("--data", required=True, help="HDF5 data set")
    add_common(p)
    p.set_defaults(func=_run)
