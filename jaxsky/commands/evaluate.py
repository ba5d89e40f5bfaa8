"""``jaxsky evaluate MODEL DATA --out DIR``: a held-out validation report."""

from __future__ import annotations

__all__ = ["register"]


def _load_data(path):
    try:
        from jaxsky.data import load
    except ImportError:  # the HDF5 reader ships with the data-set issue
        from jaxsky.errors import UserError

        raise UserError("this jaxsky has no HDF5 data reader (jaxsky.data.load)") from None
    return load(path)


def _run(args):
    from jaxsky.emulators import load
    from jaxsky.validate.report import evaluate

    model, data = load(args.model), _load_data(args.data)
    res = evaluate(
        model,
        data,
        args.out,
        split=args.split,
        overwrite=args.overwrite,
        max_images=args.max_images,
        hsm=not args.no_hsm,
        morphology=args.morphology,
        shear=shear_config(model, data, args.shear, args.split),
    )
    med = res["summary"]["max_res_over_peak"].get("median")
    print(f"wrote {args.out}/report.md (median max|res|/peak = {med:.3g})")


def shear_config(model, data, n: int, split: str):
    """Keyword arguments of compare_shear_calibration for ``--shear N`` (None when N = 0):
    the data set's own preset drawn by GalSim against the model through its g1, g2."""
    if not n:
        return None
    from jaxsky.data.presets import get_preset
    from jaxsky.data.surveys import get_survey
    from jaxsky.validate.shear import (
        calibration_thetas,
        param_shear_renderer,
        preset_shear_renderer,
    )

    cfg = data.meta.get("config") or {}
    if not cfg.get("preset"):
        raise ValueError("--shear needs a data set made by `jaxsky generate` (no preset recorded)")
    survey = cfg.get("survey")
    survey = get_survey(survey.get("name") if isinstance(survey, dict) else survey)
    preset = get_preset(cfg["preset"])
    theta = calibration_thetas(data, n, split="test" if split in (None, "all") else split)
    return {
        "render_ref": preset_shear_renderer(preset, survey=survey),
        "render_model": param_shear_renderer(model.predict, model.param_names),
        "theta": theta,
    }


def add_common(p) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--split", default="test", help="train, val, test or all (default: test)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate at most N images")
    p.add_argument("--no-hsm", action="store_true", help="skip GalSim HSM shear measurements")
    p.add_argument("--morphology", action="store_true", help="add Gini/M20/CAS statistics")
    p.add_argument(
        "--shear",
        type=int,
        default=0,
        metavar="N",
        help="shear calibration m/c on N test galaxies against the preset's GalSim images",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure an emulator on held-out images; write report.json/md and plots",
        description=(
            "Predict the held-out images of DATA with MODEL, measure both with the same "
            "independent pipelines (JAX adaptive moments, GalSim HSM with each image's PSF) "
            "and write report.json, report.md and PNG plots to --out."
        ),
    )
    p.add_argument("model", help="saved emulator directory")
    p.add_argument("data", help="HDF5 data set")
    add_common(p)
    p.set_defaults(func=_run)
