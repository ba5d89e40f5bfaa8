"""The ``jaxsky`` command line. Argument parsing only: every command calls the library."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit code 2."""


def _demo(args):
    from jaxsky.demo import run_demo

    run_demo(
        args.out,
        overwrite=args.overwrite,
        n_galaxies=args.n_galaxies,
        seed=args.seed,
        quick=args.quick,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxsky",
        description="Differentiable, fast galaxy images in JAX, validated against GalSim.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser(
        "demo",
        help="render a gallery, compare with GalSim, check gradients and speed; write a report",
        description=(
            "Render a gallery of Sersic x PSF galaxies with jaxsky and GalSim, measure their "
            "agreement on random galaxies, check gradients against GalSim finite differences, "
            "time both, and write PNG plots plus summary.md/summary.json to OUT."
        ),
    )
    demo.add_argument(
        "--out", default="jaxsky-demo", help="output directory (default: %(default)s)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    demo.add_argument(
        "--n-galaxies", type=int, default=20, help="random galaxies per accuracy setup"
    )
    demo.add_argument("--quick", action="store_true", help="smaller speed measurement")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from jaxsky import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except (UserError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"jaxsky {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxsky {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
