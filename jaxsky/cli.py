"""The ``jaxsky`` command line. Argument parsing only: every command calls the library.

Each sub-command lives in its own module under :mod:`jaxsky.commands` and defines
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments). Modules are listed in ``COMMANDS`` in the order ``--help`` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxsky.errors import UserError

__all__ = ["main", "build_parser", "UserError", "COMMANDS"]

COMMANDS = (
    "demo",
    "presets",
    "generate",
    "merge",
    "train",
    "evaluate",
    "compare",
    "fit",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxsky",
        description="Differentiable, fast galaxy images in JAX, validated against GalSim.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"jaxsky.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"jaxsky.commands.{name}":
                raise
            continue  # command not built yet in this checkout
        module.register(sub)
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
