"""Benchmark areas ``predict`` and ``train_step``: every registered emulator family."""

from __future__ import annotations

import time

import jax
import numpy as np

import jaxsky
from jaxsky.bench._util import CompileClock, Context, rate_row, timed

__all__ = ["toy_dataset", "bench_emulators", "train_row", "PREFERRED"]

#: Families benchmarked first (the quick mode takes the first one available).
PREFERRED = ("pcagp", "vae", "flow", "ensemble", "hybrid")
_NAMES = ("flux", "scale_radius", "g1", "g2")
_RANGES = {"flux": (1e3, 1e4), "scale_radius": (0.2, 0.8), "g1": (-0.3, 0.3), "g2": (-0.3, 0.3)}
_PSF_FWHM = 0.7  # arcsec, fixed for the toy set (not a parameter)


def toy_dataset(n: int, *, key_seed: int, stamp: int = 32, scale: float = 0.2):
    """A small jaxsky-rendered set: sheared Exponential x Gaussian(FWHM 0.7"), stamp x stamp."""
    from jaxsky.data import Dataset
    from jaxsky.parallel import sharded_draw

    rng = np.random.default_rng(key_seed)
    theta = np.column_stack([rng.uniform(*_RANGES[k], n) for k in _NAMES])
    psf = jaxsky.Gaussian(fwhm=_PSF_FWHM)
    gal = jaxsky.Exponential(scale_radius=theta[:, 1], flux=theta[:, 0]).shear(
        g1=theta[:, 2], g2=theta[:, 3]
    )
    imgs = sharded_draw(jaxsky.Convolve(gal, psf), nx=stamp, ny=stamp, scale=scale, chunk=256)
    psf_img = np.asarray(jaxsky.draw(psf, nx=stamp, ny=stamp, scale=scale))
    return Dataset.from_arrays(
        np.asarray(imgs, np.float32),
        theta,
        _NAMES,
        scale=scale,
        param_units=("ADU", "arcsec", "", ""),
        ranges=_RANGES,
        psfs=psf_img,
        meta={"preset": "bench-toy", "seed": key_seed},
    )


#: GP hyper-parameters are fitted on at most this many points in the benchmark (the cost
#: of a PCA+GP fit grows as n_hyper^3 per Adam step; the defaults use 256).
BENCH_N_HYPER = 64


def _small_config(default: dict, steps: int) -> dict:
    """Override only known keys, also in nested configs (a flow's ``vae``): every non-zero
    ``*steps`` to ``steps``, validation once per fit, no early stopping, GP hyper-parameters
    on at most :data:`BENCH_N_HYPER` points."""
    cfg = {}
    for k, v in default.items():
        if isinstance(v, dict):
            cfg[k] = {**v, **_small_config(v, steps)}
        elif k.endswith("steps") and v:
            cfg[k] = steps
        elif k == "val_every":
            cfg[k] = max(1, steps)
        elif k == "patience":
            cfg[k] = None
        elif k == "n_hyper" and v:
            cfg[k] = min(int(v), BENCH_N_HYPER)
    return cfg


def _small_family_config(family: str, steps: int) -> dict:
    """:func:`_small_config`, reaching into composite families (hybrid residual, ensemble)."""
    from jaxsky.emulators import get_family

    default = get_family(family).default_config()
    cfg = _small_config(default, steps)
    if isinstance(default.get("residual_family"), str):
        cfg["residual"] = _small_config(
            get_family(default["residual_family"]).default_config(), steps
        )
    if isinstance(default.get("members"), list):
        cfg["members"] = [
            {
                **m,
                "config": {
                    **m.get("config", {}),
                    **_small_config(get_family(m["family"]).default_config(), steps),
                },
            }
            for m in default["members"]
        ]
    return cfg


def _has_steps(cfg) -> bool:
    """Whether a config (with nested dicts and lists, e.g. ensemble members) sets ``*steps``."""
    if isinstance(cfg, list):
        return any(_has_steps(v) for v in cfg)
    if not isinstance(cfg, dict):
        return False
    return any(k.endswith("steps") or _has_steps(v) for k, v in cfg.items())


def _fit_time(family, ds, steps, seed):
    """One fit: (wall seconds, seconds of it spent tracing/compiling, emulator, config)."""
    from jaxsky import emulators

    cfg = _small_family_config(family, steps)
    if family == "hybrid":  # the toy set's PSF is fixed, not a parameter column
        cfg["columns"] = {"psf_fwhm": _PSF_FWHM}
    with CompileClock() as clock:
        t0 = time.perf_counter()
        emu = emulators.fit(family, ds, cfg, key=jax.random.key(seed))
        jax.block_until_ready(jax.tree_util.tree_leaves(emu.state))
        wall = time.perf_counter() - t0
    return wall, clock.seconds, emu, cfg


def train_row(fam: str, steps: int, fit_s: float, compile_s: float, *, per_step: bool) -> dict:
    """The train_step row of one fit: run time = fit time - compile time, per step when the
    family trains in steps (else one whole fit)."""
    run_s = max(fit_s - compile_s, 1e-9)
    if per_step:
        return rate_row(
            fam, f"train step: (fit - compile) / {steps} steps, one fit", steps, run_s,
            compile_s=compile_s, unit="steps/s", step_ms=1e3 * run_s / steps, fit_s=fit_s,
            area="train_step",
        )  # fmt: skip
    return rate_row(
        fam, "whole fit (no training steps)", 1, run_s, compile_s=compile_s, unit="fits/s",
        fit_s=fit_s, area="train_step",
    )  # fmt: skip


def bench_emulators(ctx: Context, *, areas=("predict", "train_step"), families=None) -> dict:
    """Per family: one short fit (training-step time = its run time without compilation,
    divided by its steps) and the sharded predict rate of the fitted emulator.

    ``families`` (default: every registered one, :data:`PREFERRED` first) limits the run.
    Quick mode stops after the first family that trains.
    """
    try:
        from jaxsky import emulators
    except ImportError:
        return {"status": "skipped: not available (jaxsky.emulators)"}
    avail = emulators.families() if families is None else tuple(families)
    fams = [f for f in PREFERRED if f in avail] + [f for f in avail if f not in PREFERRED]
    if not fams:
        return {"status": "skipped: not available (no emulator family registered)"}
    n_train = 128 if ctx.quick else 256
    ctx.log(f"emulators {fams}: toy data set of {n_train} stamps")
    ds = toy_dataset(n_train, key_seed=ctx.seed)
    b = ctx.batch(1024, 4096, accel_factor=256)
    thetas = ds.params[np.arange(b) % len(ds.params)]
    steps = 5 if ctx.quick else (20 if ctx.platform == "cpu" else 200)
    rows, errors = [], {}
    for fam in fams:
        if ctx.quick and rows:
            break  # quick mode: the first family that trains
        try:
            ctx.log(f"train {fam}: one fit of {steps} steps")
            fit_s, compile_s, emu, cfg = _fit_time(fam, ds, steps, ctx.seed)
            if "train_step" in areas:
                rows.append(train_row(fam, steps, fit_s, compile_s, per_step=_has_steps(cfg)))
            if "predict" in areas:
                from jaxsky.parallel import sharded_predict

                ctx.log(f"predict {fam}: batch {b}")
                first, best, _ = timed(
                    lambda t, emu=emu: sharded_predict(emu, t), thetas, repeats=2
                )
                rows.append(
                    rate_row(
                        fam,
                        f"predict sharded ({ctx.n_devices} dev)",
                        b,
                        best,
                        compile_s=first - best,
                        area="predict",
                    )
                )
        except Exception as err:  # one family's failure must not hide the others' numbers
            errors[fam] = f"{type(err).__name__}: {err}"[:300]
    out = {"rows": rows, "families": fams, "train_steps": steps, "n_train": n_train}
    if errors:
        out["errors"] = errors
    return out
