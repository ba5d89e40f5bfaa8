"""``jaxsky bench``: render, gradient, emulator, generation and fit speed on this device."""

from __future__ import annotations

__all__ = ["register", "add_arguments", "run"]


def run(args) -> None:
    from jaxsky.bench import parse_only, results_table, run_benchmarks, update_readme

    if args.readme:
        update_readme(args.readme, args.out)
        print(f"updated the performance table in {args.readme} from {args.out}")
        return
    if args.table:
        print(results_table(args.out, include_quick=args.quick), end="")
        return
    run_benchmarks(
        quick=args.quick,
        only=parse_only(args.only),
        out=args.out,
        overwrite=args.overwrite,
        seed=args.seed,
    )


def add_arguments(p) -> None:
    from jaxsky.bench import AREAS

    p.add_argument("--quick", action="store_true", help="small batches (< 2 min on a laptop CPU)")
    p.add_argument(
        "--only",
        default=None,
        metavar="AREA,...",
        help=f"comma-separated areas out of {','.join(AREAS)} (default: all)",
    )
    p.add_argument(
        "--out", default="benchmarks/results", help="results directory (default: %(default)s)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing results files")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--table",
        action="store_true",
        help="print the markdown performance table of all results in --out and exit",
    )
    p.add_argument(
        "--readme",
        default=None,
        metavar="README.md",
        help="fill the table between <!-- bench-table:start/end --> in this file from --out",
    )


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark rendering, gradients, emulators, generation and fitting on this device",
        description=(
            "Measure, side by side in one run, jaxsky rendering against GalSim, value_and_grad "
            "cost, emulator predict throughput and training-step time, data-set generation rate "
            "and fit rate; compile time separate from run time; peak memory. Writes "
            "<platform>-<device>[-quick].json and .md to --out. Runs unchanged on CPU/GPU/TPU."
        ),
    )
    add_arguments(p)
    p.set_defaults(func=run)
