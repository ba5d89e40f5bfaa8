"""``jaxsky demo``: the README's first command."""

from __future__ import annotations

__all__ = ["register"]


def _run(args):
    from jaxsky.demo import run_demo

    run_demo(
        args.out,
        overwrite=args.overwrite,
        n_galaxies=args.n_galaxies,
        seed=args.seed,
        quick=args.quick,
    )


def register(sub) -> None:
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
    demo.set_defaults(func=_run)
