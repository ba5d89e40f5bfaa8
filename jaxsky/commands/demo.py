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
        n_train=args.n_train,
        n_test=args.n_test,
        vae_steps=args.vae_steps,
    )


def register(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="the whole flow: render vs GalSim, generate, train, validate, fit; write a report",
        description=(
            "Render a gallery of Sersic x PSF galaxies with jaxsky and GalSim, measure their "
            "agreement, check gradients against GalSim finite differences and time both; then "
            "generate the paper training set with GalSim, train PCA+GP and VAE emulators, "
            "validate them on an independent hold-out with HSM and JAX moments, and fit a "
            "noisy galaxy by gradients. Writes summary.md/summary.json, PNG plots, the data "
            "sets, the trained models and the validation reports to OUT. Small defaults; "
            "use --n-train 2048 --vae-steps 4000 for the paper's full size."
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
    demo.add_argument(
        "--n-train", type=int, default=512, help="paper training images (default: %(default)s)"
    )
    demo.add_argument(
        "--n-test", type=int, default=128, help="hold-out images (default: %(default)s)"
    )
    demo.add_argument(
        "--vae-steps", type=int, default=6000, help="VAE optimisation steps (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(func=_run)
