"""Validation pipelines against their references: JAX adaptive moments vs GalSim HSM, and the
shear calibration of the jaxsky renderer vs GalSim on the ``paper`` preset.

    python benchmarks/validate.py [--n 200] [--n-shear 20] [--out benchmarks/results]

Writes ``validate.json`` and ``validate.md``: per stamp setup the largest and 99th-percentile
differences |d sigma / sigma|, |d e1|, |d e2|, |d g| in float64 and float32, HSM failures,
time per image (HSM one by one; JAX batched after compilation, compile time separately),
and m, c of the renderer minus GalSim with paired errors.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def moments_vs_hsm(setup, n, seed):
    import galsim
    import jax
    import jax.numpy as jnp

    from jaxsky.interop import to_galsim
    from jaxsky.testing import random_case
    from jaxsky.validate.hsm import hsm_moments
    from jaxsky.validate.moments import batch_adaptive_moments

    rng = np.random.default_rng(seed)
    ims = []
    while len(ims) < n:
        obj, _ = random_case(rng, setup, n_range=(0.5, 4.0))
        gsp = galsim.GSParams(maximum_fft_size=8192)
        try:
            ims.append(
                to_galsim(obj, gsp).drawImage(nx=setup.nx, ny=setup.nx, scale=setup.scale).array
            )
        except galsim.errors.GalSimFFTSizeError:
            continue
    ims = np.stack(ims).astype(np.float64)
    t0 = time.perf_counter()
    ref = hsm_moments(ims)
    t_hsm = (time.perf_counter() - t0) / n
    out = {"setup": setup.name, "n": n, "hsm_failed": ref.n_failed, "hsm_errors": ref.summary()}
    for dtype in ("float64", "float32"):
        with jax.enable_x64(dtype == "float64"):
            x = jnp.asarray(ims, dtype)
            t0 = time.perf_counter()
            jax.block_until_ready(batch_adaptive_moments(x[:8]))
            t_compile = time.perf_counter() - t0
            batch_adaptive_moments(x)  # compile the remainder chunk shapes too
            t0 = time.perf_counter()
            m = jax.block_until_ready(batch_adaptive_moments(x))
            t_run = (time.perf_counter() - t0) / n
        ok = ref.ok & np.asarray(m.converged)
        ds = np.abs(np.asarray(m.sigma, np.float64)[ok] / ref.sigma[ok] - 1)
        de1 = np.abs(np.asarray(m.e1, np.float64)[ok] - ref.e1[ok])
        de2 = np.abs(np.asarray(m.e2, np.float64)[ok] - ref.e2[ok])
        dg = np.hypot(np.asarray(m.g1)[ok] - ref.g1[ok], np.asarray(m.g2)[ok] - ref.g2[ok])
        out[dtype] = {
            "n_compared": int(ok.sum()),
            "jax_not_converged": int((ref.ok & ~np.asarray(m.converged)).sum()),
            **{
                f"max_{k}": float(v.max())
                for k, v in [("dsig", ds), ("de1", de1), ("de2", de2), ("dg", dg)]
            },
            **{
                f"p99_{k}": float(np.quantile(v, 0.99))
                for k, v in [("dsig", ds), ("de1", de1), ("de2", de2), ("dg", dg)]
            },
            "jax_s_per_image": t_run,
            "jax_compile_s": t_compile,
        }
    out["hsm_s_per_image"] = t_hsm
    return out


def shear_vs_galsim(n, seed):
    import jax
    import jax.numpy as jnp

    from jaxsky.data import Dataset
    from jaxsky.data.presets import get_preset
    from jaxsky.render import Convolve, Exponential, Gaussian, draw_batch
    from jaxsky.testing import PAPER_RANGES
    from jaxsky.validate.shear import (
        calibration_thetas,
        compare_shear_calibration,
        param_shear_renderer,
        preset_shear_renderer,
    )

    rng = np.random.default_rng(seed)
    m = 20 * n
    params = np.column_stack([rng.uniform(*PAPER_RANGES[k], m) for k in PAPER_RANGES])
    data = Dataset.from_arrays(np.ones((m, 2, 2)), params, tuple(PAPER_RANGES), scale=0.2)
    theta = calibration_thetas(data, n)

    def predict(th):
        t = jnp.asarray(th)
        gal = Exponential(flux=t[:, 0], scale_radius=t[:, 1]).shear(g1=t[:, 2], g2=t[:, 3])
        return draw_batch(Convolve(gal, Gaussian(fwhm=t[:, 4])), nx=33, ny=33, scale=0.2)

    with jax.enable_x64(True):
        res = compare_shear_calibration(
            preset_shear_renderer(get_preset("paper")),
            param_shear_renderer(predict, data.param_names),
            theta,
            n_rot=4,
        )
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-shear", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    import galsim
    import jax

    from jaxsky.testing import SETUPS

    doc = {
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "versions": {"jax": jax.__version__, "galsim": galsim.__version__},
        "moments": [moments_vs_hsm(s, args.n, args.seed) for s in SETUPS.values()],
        "shear": shear_vs_galsim(args.n_shear, args.seed),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validate.json").write_text(json.dumps(doc, indent=1))
    md = [
        "| setup | dtype | n | max dsig/sig | max de1 | max de2 | max dg | JAX ms/img "
        "| HSM ms/img |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["moments"]:
        for dt in ("float64", "float32"):
            q = r[dt]
            md.append(
                f"| {r['setup']} | {dt} | {q['n_compared']} | {q['max_dsig']:.1e} | "
                f"{q['max_de1']:.1e} | {q['max_de2']:.1e} | {q['max_dg']:.1e} | "
                f"{1e3 * q['jax_s_per_image']:.3f} | {1e3 * r['hsm_s_per_image']:.3f} |"
            )
    sh = doc["shear"]
    md += [
        "",
        f"Shear calibration, jaxsky renderer minus GalSim (`paper`, {sh['model']['n_galaxies']} "
        f"galaxies, 4-fold rings, g = +-0.02, observed adaptive moments):",
        "",
        f"- dm1 = {sh['dm'][0]:.2e} +- {sh['dm_err'][0]:.1e}, dm2 = {sh['dm'][1]:.2e} +- "
        f"{sh['dm_err'][1]:.1e}",
        f"- dc1 = {sh['dc'][0]:.2e} +- {sh['dc_err'][0]:.1e}, dc2 = {sh['dc'][1]:.2e} +- "
        f"{sh['dc_err'][1]:.1e}",
        "",
    ]
    (out / "validate.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
