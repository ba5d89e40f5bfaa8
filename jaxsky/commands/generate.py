"""``jaxsky generate``: simulate a training set into one crash-safe HDF5 file."""

from __future__ import annotations

__all__ = ["register"]


def _parse_ranges(items):
    from jaxsky.errors import UserError

    out = {}
    for item in items or ():
        name, sep, rest = item.partition("=")
        lo, sep2, hi = rest.partition(":")
        try:
            if not (sep and sep2 and name):
                raise ValueError
            out[name] = (float(lo), float(hi))
        except ValueError:
            msg = f"--range {item!r} must look like NAME=LOW:HIGH, e.g. flux=1e3:1e5"
            raise UserError(msg) from None
    return out


def _run(args):
    from jaxsky.data.generate import generate

    out = generate(
        args.preset,
        args.n,
        seed=args.seed,
        out=args.out,
        survey=args.survey,
        workers=args.workers,
        shard=args.shard,
        resume=args.resume,
        overwrite=args.overwrite,
        backend=args.backend,
        chunk=args.chunk,
        compression=args.compression,
        catalog=args.catalog,
        kind=args.design,
        stream=args.stream,
        ranges=_parse_ranges(args.range),
        progress=not args.quiet,
    )
    print(f"wrote {out}")


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="simulate a data set (GalSim or jaxsky) into a crash-safe, resumable HDF5 file",
        description=(
            "Lay out a space-filling design for a preset (and survey), render every image with "
            "GalSim (or jaxsky's renderer), and store images, PSFs, parameters, seeds and "
            "provenance in OUT. Killed runs keep their finished chunks in OUT.partial; "
            "continue with --resume. See `jaxsky presets` for presets and surveys."
        ),
    )
    p.add_argument("--preset", required=True, help="galaxy preset (see `jaxsky presets`)")
    p.add_argument("--survey", default=None, help="observing conditions (lsst, hsc, des, ...)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="design and render seed (default: 0)")
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    p.add_argument("--shard", default=None, help="render only shard k/K (k = 0..K-1)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--backend", default="galsim", choices=("galsim", "jaxsky"))
    p.add_argument(
        "--chunk", type=int, default=256, help="images per chunk and storage chunk (default: 256)"
    )
    p.add_argument(
        "--compression",
        default="lzf",
        choices=("lzf", "gzip", "none"),
        help="image compression: lzf (default; fast, h5py), gzip (level 1, any HDF5 tool), none",
    )
    p.add_argument("--catalog", default=None, help="catalogue file/directory (real presets)")
    p.add_argument(
        "--design", default="lhs", choices=("lhs", "sobol", "random"), help="design kind"
    )
    p.add_argument(
        "--stream", type=int, default=0, help="design stream: 0 training, 1+ hold-out sets"
    )
    p.add_argument(
        "--range",
        action="append",
        metavar="NAME=LOW:HIGH",
        help="replace a parameter's declared range (repeatable; analytic presets)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
