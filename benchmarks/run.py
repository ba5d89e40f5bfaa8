"""Run every jaxsky benchmark on this device: a thin wrapper around :mod:`jaxsky.bench`.

    python benchmarks/run.py [--quick] [--only render,grad,...] [--out benchmarks/results]
    python benchmarks/run.py --table      # the README's performance table from the results

Same options as ``jaxsky bench`` (which calls the same code, also from an installed package).
"""

from __future__ import annotations

import argparse
import sys

from jaxsky.commands.bench import add_arguments, run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        run(args)
    except (ValueError, FileExistsError) as err:
        print(f"benchmarks/run.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
