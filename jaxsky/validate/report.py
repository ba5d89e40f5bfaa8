"""Held-out evaluation of a model on a data set: report.json, report.md and PNG plots.

A *model* is a :class:`jaxsky.emulators.Emulator` or any callable ``theta float[B, P] ->
images float[B, ny, nx]`` (optionally with ``info`` like an Emulator's, and ``name``). The
report is written with :func:`jaxsky._io.atomic_output_dir`: it appears complete or not at all.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxsky._io import atomic_output_dir
from jaxsky.errors import DataError
from jaxsky.validate import metrics as M
from jaxsky.validate import plots
from jaxsky.validate.population import population_check

__all__ = [
    "population_table",
    "Model",
    "as_model",
    "check_compatible",
    "measure",
    "evaluate",
    "compare",
    "learning_curve",
]

HEADLINE = ("mse", "r2", "max_res_over_peak", "rel_flux_err", "dsigma_over_sigma", "de1", "de2")


class Model(NamedTuple):
    """A uniform view of what is evaluated: a name, a batched predict and optional info."""

    name: str
    predict: Any
    info: dict | None
    identity: dict


def as_model(model, *, name: str | None = None) -> Model:
    """Wrap an Emulator or a callable ``theta -> images`` as a :class:`Model`."""
    if isinstance(model, Model):
        return model
    info = getattr(model, "info", None)
    family = getattr(model, "family", None)
    if family is not None and hasattr(model, "predict"):
        ident = {"family": family, "config": dict(model.config), "info": dict(info or {})}
        return Model(name or family, lambda th: model.predict(th), dict(info), ident)
    if not callable(model):
        raise ValueError(f"model must be an Emulator or a callable, got {type(model).__name__}")
    nm = name or getattr(model, "name", None) or getattr(model, "__name__", "model")
    return Model(str(nm), model, dict(info) if info else None, {"callable": str(nm)})


def check_compatible(model: Model, dataset) -> None:
    """Raise ValueError when the model and the data differ in stamp, scale or parameters."""
    info = model.info
    if info is None:
        return
    if "shape" in info and tuple(info["shape"]) != tuple(dataset.shape):
        raise ValueError(
            f"model {model.name!r} makes {tuple(info['shape'])} stamps; the data set has "
            f"{tuple(dataset.shape)}"
        )
    if "scale" in info and not math.isclose(float(info["scale"]), dataset.scale, rel_tol=1e-9):
        raise ValueError(
            f"model {model.name!r} has pixel scale {info['scale']} arcsec; the data set has "
            f"{dataset.scale}"
        )
    if "param_names" in info and tuple(info["param_names"]) != tuple(dataset.param_names):
        raise ValueError(
            f"model {model.name!r} takes parameters {tuple(info['param_names'])}; the data set "
            f"has {tuple(dataset.param_names)}"
        )


def _predict(model: Model, theta, shape, chunk=256) -> np.ndarray:
    parts = [np.asarray(model.predict(theta[i : i + chunk])) for i in range(0, len(theta), chunk)]
    pred = np.concatenate(parts).astype(np.float64)
    if pred.shape != (len(theta), *shape):
        raise ValueError(
            f"model {model.name!r} returned images of shape {pred.shape}; expected "
            f"{(len(theta), *shape)}"
        )
    bad = ~np.isfinite(pred).all(axis=(1, 2))
    if bad.any():
        raise ValueError(
            f"model {model.name!r} returned NaN/inf for {int(bad.sum())} of {len(theta)} images "
            f"(first at theta={theta[np.argmax(bad)].tolist()})"
        )
    return pred


def _select(dataset, split, max_images):
    if len(dataset) == 0:
        raise DataError("the data set is empty (N=0)")
    part = dataset if split in (None, "all") else dataset.split(split)
    n = len(part) if max_images is None else min(int(max_images), len(part))
    if n <= 0:
        raise ValueError(f"max_images={max_images} must be >= 1")
    if n < len(part):
        part = part.subset(np.arange(n))
    truth = np.asarray(part.images[:], dtype=np.float64)
    if not np.isfinite(truth).all():
        raise DataError("the data set's images contain NaN or infinite values")
    return part, truth


def measure(
    model, dataset, *, split="test", max_images=None, hsm=True, morphology=False,
    noise_realisations: int = 0, key=None,
):  # fmt: skip
    """All metrics of ``model`` on ``dataset`` (no files). Returns (result dict, arrays).

    ``noise_realisations`` > 0 adds a noise-matched population check
    (``"population_noise_matched"``): each emulated image gets white noise of its truth
    stamp's border sigma in that many realisations from ``key`` (:mod:`jaxsky.validate.noise`).
    """
    if int(noise_realisations) < 0:
        raise ValueError(f"noise_realisations={noise_realisations} must be >= 0")
    if noise_realisations and key is None:
        raise ValueError("noise_realisations > 0 needs a PRNG key (key=jax.random.key(seed))")
    mdl = as_model(model)
    check_compatible(mdl, dataset)
    part, truth = _select(dataset, split, max_images)
    pred = _predict(mdl, part.params, part.shape)
    per = M.image_metrics(truth, pred)
    mom, mom_fail = M.moment_metrics(truth, pred)
    per.update({k: mom[k] for k in ("dsigma_over_sigma", "de1", "de2", "dg1", "dg2")})
    stats_t = {k: mom[f"{k}_true"] for k in ("sigma", "e1", "e2")}
    stats_p = {k: mom[f"{k}_pred"] for k in ("sigma", "e1", "e2")}
    stats_t["flux"], stats_p["flux"] = truth.sum(axis=(1, 2)), pred.sum(axis=(1, 2))
    stats_t["pixel_over_peak"] = (truth / np.abs(truth).max(axis=(1, 2), keepdims=True)).ravel()
    stats_p["pixel_over_peak"] = (pred / np.abs(truth).max(axis=(1, 2), keepdims=True)).ravel()
    failures = {"moments": mom_fail}
    if hsm and part.psfs is not None:
        from jaxsky.validate.hsm import hsm_shear

        psfs = np.asarray(part.psfs[:], dtype=np.float64)
        ht, hp = hsm_shear(truth, psfs), hsm_shear(pred, psfs)
        for nm, h, st in (("truth", ht, stats_t), ("pred", hp, stats_p)):
            st["hsm_shear1"], st["hsm_shear2"] = h.shear1, h.shear2
            failures[f"hsm_{nm}"] = h.summary()
        per["dhsm_shear1"] = hp.shear1 - ht.shear1
        per["dhsm_shear2"] = hp.shear2 - ht.shear2
    if morphology:
        from jaxsky.validate.morphology import batch_morphology

        mt, mp = batch_morphology(truth), batch_morphology(pred)
        for k in mt:
            stats_t[f"morph_{k}"], stats_p[f"morph_{k}"] = mt[k], mp[k]
            per[f"d{k}"] = mp[k] - mt[k]
    res = {
        "model": {"name": mdl.name, **mdl.identity},
        "data": {
            "n_total": len(dataset),
            "split": split,
            "n_evaluated": len(part),
            "shape": list(part.shape),
            "scale": part.scale,
            "param_names": list(part.param_names),
            "meta": _meta_identity(part.meta),
        },
        "summary": M.summarize(per),
        "population": population_check(
            {k: mom[f"{k}_true"] for k in ("sigma", "g1", "g2")},
            {k: mom[f"{k}_pred"] for k in ("sigma", "g1", "g2")},
        ),
        "wasserstein": M.wasserstein_distances(stats_t, stats_p),
        "binned": M.binned(per, part.params, part.param_names),
        "failures": failures,
        "power_spectrum": {k: v.tolist() for k, v in M.residual_power(truth, pred).items()},
        "pixel_histogram": {k: v.tolist() for k, v in M.pixel_histograms(truth, pred).items()},
        "per_image": {k: np.asarray(v).tolist() for k, v in per.items()},
    }
    pop = {
        nm: {"abs_g": np.hypot(mom[f"g1_{nm}"], mom[f"g2_{nm}"]), "sigma": mom[f"sigma_{nm}"]}
        for nm in ("true", "pred")
    }
    if noise_realisations:
        res["population_noise_matched"] = _noise_matched(truth, pred, mom, noise_realisations, key)
    return res, {"truth": truth, "pred": pred, "params": part.params, "per": per, "pop": pop}


def _noise_matched(truth, pred, mom, n_real, key) -> dict:
    from jaxsky.validate.noise import border_sigma, noisy_moments

    sig = border_sigma(truth)
    # float32 like moment_metrics, so that both sets go through the same arithmetic
    noisy = noisy_moments(pred.astype(np.float32), sig, key=key, n_real=int(n_real))
    # the emulated |g| is the mean over realisations of |g| (each realisation, like the
    # truth's one, carries its own noise bias): passed as (g1, g2) = (mean |g|, 0)
    pred = {"sigma": noisy["sigma"], "g1": noisy["abs_g"], "g2": np.zeros_like(noisy["abs_g"])}
    pop = population_check({k: mom[f"{k}_true"] for k in ("sigma", "g1", "g2")}, pred)
    pop["noise"] = {
        "realisations": int(n_real),
        "sigma_median": float(np.median(sig)),
        "estimate": "1.4826 x MAD of each truth stamp's 3-pixel border (zeros skipped)",
        "n_converged_median": float(np.median(noisy["n_converged"])),
    }
    return pop


def _meta_identity(meta) -> dict:
    """The data set's provenance without bulky per-image arrays (e.g. render seeds)."""
    out = {}
    for k, v in dict(meta).items():
        if isinstance(v, np.ndarray) and v.size > 16:
            out[k] = f"<array {v.shape} {v.dtype}>"
        else:
            out[k] = v
    return out


def _data_label(meta) -> str:
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    preset = meta.get("preset") or cfg.get("preset") or "?"
    survey = cfg.get("survey")
    survey = survey.get("name") if isinstance(survey, dict) else survey
    path = meta.get("path")
    return (
        f"preset `{preset}`" + (f" x `{survey}`" if survey else "") + (f" ({path})" if path else "")
    )


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None  # strict JSON has no NaN
    if isinstance(o, str | int | float | bool) or o is None:
        return o
    return str(o)


def _markdown(res: dict, figures: list[str]) -> str:
    d, s = res["data"], res["summary"]
    lines = [
        f"# Validation report: {res['model']['name']}",
        "",
        f"Data: {_data_label(d['meta'])}, split `{d['split']}`, "
        f"{d['n_evaluated']} of {d['n_total']} images, {d['shape'][0]}x{d['shape'][1]} at "
        f"{d['scale']} arcsec/pixel. Written {res['created']}.",
        "",
        "| metric | median | mean | 95% of abs | max abs | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k, v in s.items():
        if v.get("n"):
            lines.append(
                f"| {k} | {v['median']:.3g} | {v['mean']:.3g} | {v['p95_abs']:.3g} | "
                f"{v['max_abs']:.3g} | {v['n']} |"
            )
    if "population" in res:
        pop = res["population"]
        lines += [
            "",
            f"Population means (adaptive moments, {pop['n_used']} galaxies, "
            f"{pop['n_failed']} failed):",
            "",
            *population_table(pop),
        ]
    if "population_noise_matched" in res:
        pop = res["population_noise_matched"]
        nz = pop["noise"]
        lines += [
            "",
            f"Noise-matched population means (emulated images + white noise of each truth "
            f"stamp's border sigma, median {nz['sigma_median']:.3g}; mean over "
            f"{nz['realisations']} realisations per galaxy; {pop['n_used']} galaxies):",
            "",
            *population_table(pop),
        ]
    lines += ["", "Wasserstein-1 distances (truth vs emulated distributions):", ""]
    lines += [f"- {k}: {v:.3g}" for k, v in res["wasserstein"].items() if v is not None]
    lines += ["", "Measurement failures (counted, never dropped silently):", ""]
    for k, v in res["failures"].items():
        lines.append(f"- {k}: `{json.dumps(v)[:300]}`")
    if "shear" in res:
        sh = res["shear"]
        lines += ["", "Shear calibration (model minus reference, paired):", ""]
        for a in range(2):
            lines.append(
                f"- m{a + 1}: {sh['dm'][a]:.2e} +- {sh['dm_err'][a]:.1e}, "
                f"c{a + 1}: {sh['dc'][a]:.2e} +- {sh['dc_err'][a]:.1e}"
            )
    lines += [""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def _write(out_dir, res, arrays, overwrite, learning=None):
    res["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        figs = []
        t, p, th, per = arrays["truth"], arrays["pred"], arrays["params"], arrays["per"]
        plots.gallery(t, p, tmp / "gallery.png")
        plots.residual_vs_params(
            th, res["data"]["param_names"], per, tmp / "residual_vs_params.png"
        )
        plots.metric_histograms(per, tmp / "metric_histograms.png")
        plots.power_spectra(res["power_spectrum"], res["pixel_histogram"], tmp / "spectra.png")
        figs = ["gallery.png", "residual_vs_params.png", "metric_histograms.png", "spectra.png"]
        if "pop" in arrays:
            plots.population(arrays["pop"]["true"], arrays["pop"]["pred"], tmp / "population.png")
            figs.append("population.png")
        if learning:
            res["learning_curve"] = learning
            plots.learning_curves(learning, tmp / "learning_curve.png")
            figs.append("learning_curve.png")
        (tmp / "report.json").write_text(json.dumps(_jsonable(res), indent=1, allow_nan=False))
        (tmp / "report.md").write_text(_markdown(res, figs))
    return Path(out_dir)


def evaluate(
    model,
    dataset,
    out_dir,
    *,
    split: str | None = "test",
    overwrite: bool = False,
    max_images: int | None = None,
    hsm: bool = True,
    morphology: bool = False,
    shear: dict | None = None,
    learning: list | None = None,
    noise_realisations: int = 0,
    key=None,
) -> dict:
    """Measure ``model`` on ``dataset``'s ``split`` and write the report to ``out_dir``.

    ``shear``: optional keyword arguments of :func:`jaxsky.validate.shear.
    compare_shear_calibration` (``render_ref``, ``render_model``, ``theta``...) whose result is
    stored under ``"shear"``; ``learning``: rows from :func:`learning_curve`;
    ``noise_realisations``, ``key``: see :func:`measure`. Returns the report.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:  # fail before the (long) measurement
        raise FileExistsError(f"{out_dir} exists; pass --overwrite to replace it")
    res, arrays = measure(
        model, dataset, split=split, max_images=max_images, hsm=hsm, morphology=morphology,
        noise_realisations=noise_realisations, key=key,
    )  # fmt: skip
    if shear:
        from jaxsky.validate.shear import compare_shear_calibration

        kw = dict(shear)
        res["shear"] = compare_shear_calibration(kw.pop("render_ref"), kw.pop("render_model"), **kw)
    _write(out_dir, res, arrays, overwrite, learning)
    return res


def compare(
    models, dataset, out_dir, *, split="test", overwrite=False, shear=None, **kw
) -> list[dict]:
    """Evaluate several models on the same held-out set: one table (json+md) and one figure.

    ``models``: a dict name -> model, or a list of models. Each model's full report goes to
    ``out_dir/<name>/``. ``shear``: optional callable model -> keyword arguments of
    :func:`jaxsky.validate.shear.compare_shear_calibration`, adding dm/dc to the table.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass --overwrite to replace it")
    items = models.items() if isinstance(models, dict) else [(None, m) for m in models]
    wrapped = [as_model(m, name=n) for n, m in items]
    if not wrapped:
        raise ValueError("compare needs at least one model")
    names = [m.name for m in wrapped]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    for m in wrapped:  # every bad input before any measurement
        check_compatible(m, dataset)
    results = [(m, *measure(m, dataset, split=split, **kw)) for m in wrapped]
    table = []
    for (m, res, _), orig in zip(results, [mm for _, mm in items]):
        row = {"model": m.name}
        row.update({k: res["summary"].get(k, {}).get("median") for k in HEADLINE})
        row["p95_max_res_over_peak"] = res["summary"]["max_res_over_peak"].get("p95_abs")
        if shear is not None:
            from jaxsky.validate.shear import compare_shear_calibration

            skw = dict(shear(orig))
            res["shear"] = sh = compare_shear_calibration(
                skw.pop("render_ref"), skw.pop("render_model"), **skw
            )
            row.update({"dm1": sh["dm"][0], "dm2": sh["dm"][1], "dc1": sh["dc"][0]})
            row.update({"dc2": sh["dc"][1]})
        table.append(row)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        for m, res, arrays in results:
            _write(tmp / m.name, res, arrays, False)
        plots.comparison(table, tmp / "comparison.png")
        (tmp / "comparison.json").write_text(json.dumps(_jsonable(table), indent=1))
        hdr = ["model", *HEADLINE, "p95_max_res_over_peak"]
        hdr += ["dm1", "dm2", "dc1", "dc2"] if shear is not None else []
        md = ["| " + " | ".join(hdr) + " |", "|" + " --- |" * len(hdr)]
        for r in table:
            cells = [r["model"]] + [_cell(k, r[k]) for k in hdr[1:]]
            md.append("| " + " | ".join(cells) + " |")
        md += ["", "![comparison](comparison.png)", ""]
        (tmp / "comparison.md").write_text("# Model comparison (medians)\n\n" + "\n".join(md))
    return table


def learning_curve(
    family: str, dataset, sizes, *, key, configs=None, split="test", max_images=None
) -> list[dict]:
    """Train ``family`` on the first n training images for each n in ``sizes`` (and each config
    in ``configs``, e.g. ``[{"latent_dim": 4}, {"latent_dim": 16}]``) and evaluate on ``split``.

    Rows: ``{"n_train", "label", "config", <median of each headline metric>}``.
    """
    import jax

    from jaxsky.data.dataset import SPLITS
    from jaxsky.emulators import fit

    split_of = np.asarray(dataset.split_of)
    train_idx = np.flatnonzero(split_of == SPLITS.index("train"))
    val_idx = np.flatnonzero(split_of == SPLITS.index("val"))
    rows = []
    for cfg in configs or [None]:
        for n in sizes:
            if not 0 < n <= len(train_idx):
                raise ValueError(f"size {n} must be in [1, {len(train_idx)}] (training images)")
            sub = dataset.subset(np.concatenate([train_idx[:n], val_idx]))
            key, k = jax.random.split(key)
            emu = fit(family, sub, cfg, key=k)
            res, _ = measure(emu, dataset, split=split, max_images=max_images, hsm=False)
            row = {"n_train": int(n), "label": json.dumps(cfg) if cfg else "", "config": cfg}
            row.update({m: res["summary"].get(m, {}).get("median") for m in HEADLINE})
            rows.append(row)
    return rows


def _cell(name, value) -> str:
    """Table cell: R^2 needs its decimals (0.99999 vs 0.999), the rest 3 significant digits."""
    if value is None:
        return "n/a"
    return f"{value:.7f}" if name == "r2" else f"{value:.3g}"


def population_table(pop: dict) -> list[str]:
    """Markdown rows of a :func:`~jaxsky.validate.population_check` result (mean |g|, size)."""
    lines = [
        "| quantity | truth mean ± SE | emulated mean ± SE | (emu - truth) / SE | relative "
        "| within 1 SE |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for q, label in (("abs_g", "mean abs(g)"), ("sigma", "mean sigma (px)")):
        v = pop[q]
        lines.append(
            f"| {label} | {v['truth_mean']:.4g} ± {v['truth_se']:.2g} | "
            f"{v['pred_mean']:.4g} ± {v['pred_se']:.2g} | {v['diff_in_se']:+.2f} | "
            f"{100 * v['rel_diff']:+.2f}% | {'yes' if v['within_1se'] else 'no'} |"
        )
    return lines
