"""Benchmark areas ``generate`` (data-set generation rate) and ``fit`` (galaxies fitted/s)."""

from __future__ import annotations

import time

import numpy as np

import jaxsky
from jaxsky.bench._util import Context, rate_row, timed

__all__ = ["bench_generate", "bench_fit"]


def _stamp_fn(stamp: int, scale: float, plan):
    """theta = (flux, hlr, n, g1, g2) -> Sersic x Moffat(beta 3.5, FWHM 0.7") stamp."""

    def one(t):
        gal = jaxsky.Sersic(t[2], half_light_radius=t[1], flux=t[0]).shear(g1=t[3], g2=t[4])
        obj = jaxsky.Convolve(gal, jaxsky.Moffat(3.5, fwhm=0.7))
        return jaxsky.draw(obj, nx=stamp, ny=stamp, scale=scale, plan=plan)

    return one


def _thetas(rng, n):
    return np.column_stack(
        [
            rng.uniform(1e3, 1e4, n),
            rng.uniform(0.2, 1.0, n),
            rng.uniform(0.5, 4.0, n),
            rng.uniform(-0.3, 0.3, n),
            rng.uniform(-0.3, 0.3, n),
        ]
    )


def bench_generate(ctx: Context) -> dict:
    """Stamps/s written to HDF5 by :func:`jaxsky.parallel.stream_to_hdf5` vs GalSim drawing."""
    from jaxsky.bench.render import GALSIM_DEFAULT_LEVEL
    from jaxsky.interop import to_galsim
    from jaxsky.parallel import stream_to_hdf5

    stamp, scale = 48, 0.2
    n = ctx.batch(64, 1024, accel_factor=256)
    chunk = min(n, ctx.batch(64, 256, accel_factor=64))
    th = _thetas(ctx.rng(3), n)
    # One plan for the whole declared range (largest hlr, smallest and largest n).
    corners = _thetas(ctx.rng(4), 64)
    corners[:, 1] = 1.0
    corners[::2, 2], corners[1::2, 2] = 0.5, 4.0
    cobj = jaxsky.Convolve(
        jaxsky.Sersic(corners[:, 2], half_light_radius=corners[:, 1], flux=corners[:, 0]),
        jaxsky.Moffat(3.5, fwhm=0.7),
    )
    plan = jaxsky.make_plan(cobj, stamp, stamp, scale, gsparams=GALSIM_DEFAULT_LEVEL)
    fn = _stamp_fn(stamp, scale, plan)
    ctx.log(f"generate: {n} stamps {stamp}x{stamp} to HDF5 in chunks of {chunk}")
    # Warm-up (compile) on a small file, then the timed stream.
    t0 = time.perf_counter()
    stream_to_hdf5(fn, th[:chunk], ctx.tmp / "warm.h5", chunk=chunk, progress=False, overwrite=True)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream_to_hdf5(fn, th, ctx.tmp / "gen.h5", chunk=chunk, progress=False, overwrite=True)
    run = time.perf_counter() - t0
    n_gs = 8 if ctx.quick else 32
    gobjs = []
    for t in th[:n_gs]:
        gal = jaxsky.Sersic(float(t[2]), half_light_radius=float(t[1]), flux=float(t[0]))
        gobjs.append(
            to_galsim(
                jaxsky.Convolve(
                    gal.shear(g1=float(t[3]), g2=float(t[4])), jaxsky.Moffat(3.5, fwhm=0.7)
                )
            )
        )
    t0 = time.perf_counter()
    for g in gobjs:
        g.drawImage(nx=stamp, ny=stamp, scale=scale)
    gs_rate = n_gs / (time.perf_counter() - t0)
    import os

    rows = [
        rate_row("sersic_x_moffat_48", "galsim drawImage (1 core, no I/O)", n_gs, n_gs / gs_rate),
        rate_row(
            "sersic_x_moffat_48",
            "jaxsky stream_to_hdf5 (render+gzip+write)",
            n,
            run,
            compile_s=max(0.0, warm - run * chunk / n),
            chunk=chunk,
            plan=plan._asdict(),
            reference=gs_rate * (os.cpu_count() or 1),
        ),
    ]
    if not ctx.quick:  # simulate's jaxsky backend compiles for a minute on a small CPU
        rows += _data_api_rows(ctx)
    return {"rows": rows}


def _data_api_rows(ctx: Context) -> list:
    """``jaxsky.data.simulate`` (the data sets' own generator) with both backends."""
    try:
        from jaxsky.data import simulate
    except ImportError:
        return [dict(case="jaxsky.data", impl="simulate", status="skipped: not available")]
    n = ctx.batch(16, 64, accel_factor=64)
    rows = []
    ref = None
    for backend in ("galsim", "jaxsky"):
        ctx.log(f"generate: jaxsky.data.simulate('sersic', {n}, backend={backend!r})")
        try:
            first, best, _ = timed(
                lambda backend=backend: simulate("sersic", n, seed=ctx.seed, backend=backend),
                repeats=1,
            )
        except Exception as err:  # report, do not hide the other backend's number
            rows.append(
                dict(
                    case="preset sersic",
                    impl=f"simulate {backend}",
                    status=f"error: {type(err).__name__}: {err}"[:300],
                )
            )
            continue
        row = rate_row(
            "preset sersic",
            f"jaxsky.data.simulate backend={backend} (1 process)",
            n,
            best,
            compile_s=max(0.0, first - best),
            reference=ref,
        )
        ref = ref or row["rate"]
        rows.append(row)
    return rows


def bench_fit(ctx: Context) -> dict:
    """Galaxies/s fitted by ``jaxsky.infer.fit_sersic`` on noisy jaxsky-rendered stamps."""
    try:
        from jaxsky.infer import fit_sersic
    except ImportError:
        return {"status": "skipped: not available (jaxsky.infer.fit_sersic)"}
    from jaxsky.parallel import sharded_draw

    stamp, scale = 32, 0.2
    b = ctx.batch(8, 64, accel_factor=64)
    rng = ctx.rng(5)
    truth = _thetas(rng, b)
    truth[:, 1] = rng.uniform(0.3, 0.8, b)
    psf = jaxsky.Moffat(3.5, fwhm=0.7)
    gal = jaxsky.Sersic(truth[:, 2], half_light_radius=truth[:, 1], flux=truth[:, 0])
    imgs = np.asarray(
        sharded_draw(
            jaxsky.Convolve(gal.shear(g1=truth[:, 3], g2=truth[:, 4]), psf),
            nx=stamp,
            ny=stamp,
            scale=scale,
        )
    )
    sigma = 2.0  # peak S/N of tens to hundreds for flux 1e3-1e4
    noisy = imgs + sigma * rng.standard_normal(imgs.shape).astype(imgs.dtype)
    ctx.log(f"fit: fit_sersic on {b} stamps {stamp}x{stamp}")

    def run():
        return fit_sersic(noisy, sigma**2, psf, scale=scale)

    first, best, res = timed(run, repeats=1)
    conv = float(np.mean(np.asarray(res["converged"])))
    n_err = float(np.median(np.abs(np.asarray(res["n"]) - truth[:, 2])))
    return {
        "rows": [
            rate_row(
                "sersic_x_moffat_32",
                "jaxsky.infer.fit_sersic (MAP + Laplace)",
                b,
                best,
                unit="galaxies/s",
                compile_s=max(0.0, first - best),
                converged_fraction=conv,
                median_abs_n_error=n_err,
            )
        ]
    }
