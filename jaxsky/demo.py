"""``jaxsky demo``: the whole flow in a few minutes.

Renderer against GalSim (gallery, accuracy, gradients, speed), then the ``paper`` training set
generated with GalSim, PCA+GP and VAE emulators trained and compared on an independent hold-out
with HSM and JAX moments, and a gradient-based fit of a noisy galaxy.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import galsim
import jax
import jax.numpy as jnp
import numpy as np

import jaxsky
from jaxsky._demo_pipeline import say as _say
from jaxsky._io import atomic_output_dir
from jaxsky.interop import TIGHT_GSPARAMS, to_galsim
from jaxsky.testing import SETUPS, accuracy_sweep

__all__ = ["run_demo", "gallery_figure"]


def gallery_figure(path, ns=(0.5, 1.0, 2.5, 4.0, 6.0), nx=48, scale=0.2):
    """jaxsky / GalSim / residual for Sersic x Moffat galaxies of several n; returns max error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(ns), figsize=(2.3 * len(ns), 7.2))
    worst = 0.0
    for j, n in enumerate(ns):
        gal = jaxsky.Sersic(n, half_light_radius=0.8, flux=1e4).shear(g1=0.25 - 0.1 * j, g2=0.15)
        obj = jaxsky.Convolve(gal.shift(0.05, -0.03), jaxsky.Moffat(3.0, fwhm=0.7))
        img = np.asarray(jaxsky.draw(obj, nx=nx, ny=nx, scale=scale))
        ref = to_galsim(obj, TIGHT_GSPARAMS).drawImage(nx=nx, ny=nx, scale=scale).array
        res = (img - ref) / ref.max()
        worst = max(worst, float(np.abs(res).max()))
        vmax = np.arcsinh(ref.max() / 20)
        axes[0, j].imshow(np.arcsinh(img / 20), origin="lower", cmap="magma", vmin=0, vmax=vmax)
        axes[1, j].imshow(np.arcsinh(ref / 20), origin="lower", cmap="magma", vmin=0, vmax=vmax)
        im = axes[2, j].imshow(res * 1e5, origin="lower", cmap="RdBu_r", vmin=-3, vmax=3)
        axes[0, j].set_title(f"Sersic n={n:g}")
    for ax, lab in zip(axes[:, 0], ["jaxsky", "GalSim (tight)", "residual / peak x 1e5"]):
        ax.set_ylabel(lab)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[2, :].tolist(), shrink=0.8, label="1e-5 of peak")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return worst


def _gradient_check():
    """d/dtheta of a pixel-weighted sum: jax.grad vs central differences of GalSim images."""
    nx, scale = 32, 0.2
    p0 = dict(flux=2e3, hlr=0.6, n=2.5, g1=0.2, g2=-0.1, dx=0.04, dy=0.02, beta=3.0, fwhm=0.7)
    w = np.random.default_rng(1).uniform(0.5, 1.5, (nx, nx))

    def build(p, lib):
        if lib == "jaxsky":
            gal = jaxsky.Sersic(p["n"], half_light_radius=p["hlr"], flux=p["flux"])
            psf = jaxsky.Moffat(p["beta"], fwhm=p["fwhm"])
            return jaxsky.Convolve(gal.shear(g1=p["g1"], g2=p["g2"]).shift(p["dx"], p["dy"]), psf)
        gsp = TIGHT_GSPARAMS
        gal = galsim.Sersic(p["n"], half_light_radius=p["hlr"], flux=p["flux"], gsparams=gsp)
        psf = galsim.Moffat(p["beta"], fwhm=p["fwhm"], gsparams=gsp)
        return galsim.Convolve(gal.shear(g1=p["g1"], g2=p["g2"]).shift(p["dx"], p["dy"]), psf)

    # Gradients of the PSF-shape parameters pass through the far-field alias correction,
    # whose derivative is only approximate: plan with a 10x tighter alias budget here.
    gsp = jaxsky.GSParams(alias_threshold=1e-6, alias_flux_threshold=1e-6)
    plan = jaxsky.make_plan(build(p0, "jaxsky"), nx, nx, scale, gsparams=gsp)

    def loss(theta):
        p = dict(zip(p0, theta))
        return jnp.sum(w * jaxsky.draw(build(p, "jaxsky"), nx=nx, ny=nx, scale=scale, plan=plan))

    grads = jax.grad(loss)([jnp.asarray(v) for v in p0.values()])
    rows = []
    for (name, v), g in zip(p0.items(), grads):
        h = 1e-3 if name in ("g1", "g2", "dx", "dy") else 1e-3 * abs(v)
        f = [
            np.sum(
                w
                * build(dict(p0, **{name: v + s * h}), "galsim")
                .drawImage(nx=nx, ny=nx, scale=scale, dtype=np.float64)
                .array
            )
            for s in (1, -1)
        ]
        fd = (f[0] - f[1]) / (2 * h)
        rows.append(
            dict(
                parameter=name,
                jax_grad=float(g),
                galsim_fd=float(fd),
                rel_diff=float(abs(float(g) - fd) / max(abs(fd), 1e-12)),
            )
        )
    return rows


def _speed(seed, n_jax=512, n_galsim=24):
    """Random-n Sersic x Moffat 64x64 stamps per second: jaxsky batched vs GalSim loop."""
    rng = np.random.default_rng(seed)
    n = rng.uniform(0.5, 6.0, n_jax)
    hlr = rng.uniform(0.1, 1.5, n_jax)
    beta = rng.uniform(2.0, 5.0, n_jax)
    fwhm = rng.uniform(0.5, 1.0, n_jax)
    objs = jaxsky.Convolve(jaxsky.Sersic(n, half_light_radius=hlr), jaxsky.Moffat(beta, fwhm=fwhm))
    # No plan given: draw_batch gives each galaxy the FFT size it needs (grouped), instead of
    # drawing every galaxy with the largest galaxy's plan.
    t0 = time.perf_counter()
    jaxsky.draw_batch(objs, nx=64, ny=64, scale=0.2).block_until_ready()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jaxsky.draw_batch(objs, nx=64, ny=64, scale=0.2).block_until_ready()
    jax_rate = n_jax / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n_galsim):
        galsim.Convolve(
            galsim.Sersic(n[i], half_light_radius=hlr[i]), galsim.Moffat(beta[i], fwhm=fwhm[i])
        ).drawImage(nx=64, ny=64, scale=0.2)
    gs_rate = n_galsim / (time.perf_counter() - t0)
    return dict(
        n_jax=n_jax,
        n_galsim=n_galsim,
        jaxsky_images_per_s=jax_rate,
        galsim_images_per_s_one_core=gs_rate,
        jaxsky_first_call_s=compile_s,
    )


def run_demo(
    out="jaxsky-demo",
    *,
    overwrite=False,
    n_galaxies=20,
    seed=0,
    quick=False,
    n_train=512,
    n_test=128,
    vae_steps=6000,
):
    for name, value, lo in (
        ("n_galaxies", n_galaxies, 1),
        ("n_train", n_train, 64),
        ("n_test", n_test, 8),
        ("vae_steps", vae_steps, 10),
    ):
        if int(value) != value or value < lo:
            raise ValueError(f"{name}={value} is outside the allowed range [{lo}, inf)")
    from jaxsky._demo_pipeline import emulator_section, fit_section

    out = Path(out)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        _say("rendering the gallery (jaxsky vs GalSim)")
        gallery_err = gallery_figure(tmp / "gallery.png")
        acc = {}
        for name, setup in SETUPS.items():
            _say(f"accuracy on {n_galaxies} random galaxies, setup {name}")
            errs, dfl, _, skipped = accuracy_sweep(setup, n_galaxies, seed, max_fft_size=4096)
            acc[name] = dict(
                redrawn_galsim_too_large=skipped,
                n=n_galaxies,
                median_err_over_peak=float(np.median(errs)),
                max_err_over_peak=float(errs.max()),
                max_rel_flux_err=float(dfl.max()),
            )
        _say("gradients vs GalSim finite differences (float64)")
        with jax.enable_x64(True):
            grads = _gradient_check()
        _say("speed: random-n Sersic x Moffat 64x64")
        speed = _speed(seed, n_jax=64, n_galsim=4) if quick else _speed(seed)
        emu = emulator_section(tmp, seed=seed, n_train=n_train, n_test=n_test, vae_steps=vae_steps)
        fit = fit_section(seed=seed)
        summary = dict(
            jaxsky=jaxsky.__version__,
            galsim=galsim.__version__,
            jax=jax.__version__,
            device=str(jax.devices()[0]),
            python=platform.python_version(),
            gallery_max_err_over_peak=gallery_err,
            accuracy=acc,
            gradients=grads,
            speed=speed,
            emulators=emu,
            fit=fit,
        )
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        (tmp / "summary.md").write_text(_markdown(summary))
    _say(f"wrote {out}/: summary.md, summary.json, gallery.png, data/, models/, validation/")
    print(_markdown(summary))
    return summary


def _markdown(s):
    lines = [
        "# jaxsky demo",
        "",
        f"jaxsky {s['jaxsky']}, GalSim {s['galsim']}, JAX {s['jax']} on {s['device']}",
        "",
        "![gallery](gallery.png)",
        "",
        "## Accuracy against GalSim (tight GSParams)",
        "",
        "| setup | galaxies | median err/peak | max err/peak | max flux err |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, a in s["accuracy"].items():
        lines.append(
            f"| {k} | {a['n']} | {a['median_err_over_peak']:.1e} | "
            f"{a['max_err_over_peak']:.1e} | {a['max_rel_flux_err']:.1e} |"
        )
    lines += [
        "",
        "## Gradients: jax.grad vs GalSim central differences",
        "",
        "| parameter | jax.grad | GalSim FD | rel. diff |",
        "| --- | --- | --- | --- |",
    ]
    for r in s["gradients"]:
        lines.append(
            f"| {r['parameter']} | {r['jax_grad']:.6g} | {r['galsim_fd']:.6g} | "
            f"{r['rel_diff']:.1e} |"
        )
    sp = s["speed"]
    lines += [
        "",
        "## Speed (random-n Sersic x Moffat, 64x64)",
        "",
        f"jaxsky batched ({sp['n_jax']} galaxies, tight accuracy): "
        f"{sp['jaxsky_images_per_s']:.0f} images/s; GalSim (default GSParams, "
        f"{sp['n_galsim']} galaxies): {sp['galsim_images_per_s_one_core']:.1f} images/s on "
        "one core (first jaxsky call, with compilation: "
        f"{sp['jaxsky_first_call_s']:.0f} s). Small batches spread over many FFT plans and "
        "understate jaxsky; benchmarks/render.py has the full, matched-accuracy comparison.",
        "",
    ]
    e = s["emulators"]
    lines += [
        f"## Emulators on the paper set ({e['n_train']} GalSim training images, "
        f"{e['n_test']} independent hold-out)",
        "",
        "Medians over the hold-out; full reports and plots in `validation/`.",
        "",
        "| model | train s | R^2 | max res/peak (p95) | flux err | dsigma/sigma | de1 | de2 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def f(x):
        return "n/a" if x is None else f"{x:.3g}"

    def r2(x):
        return "n/a" if x is None else f"{x:.7f}"

    for r in e["table"]:
        lines.append(
            f"| {r['model']} | {r['train_s']:.0f} | {r2(r.get('r2'))} | "
            f"{f(r.get('p95_max_res_over_peak'))} | {f(r.get('rel_flux_err'))} | "
            f"{f(r.get('dsigma_over_sigma'))} | {f(r.get('de1'))} | {f(r.get('de2'))} |"
        )
    fit = s["fit"]
    lines += [
        "",
        f"## Gradient-based fit of a noisy galaxy (SNR {fit['snr']:.0f}, "
        f"converged: {fit['converged']}, {fit['seconds']:.0f} s incl. compilation)",
        "",
        "| parameter | truth | fit | error | z |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in fit["rows"]:
        lines.append(
            f"| {r['parameter']} | {r['truth']:.4g} | {r['fit']:.4g} | {r['err']:.2g} | "
            f"{r['z']:+.2f} |"
        )
    lines.append("")
    return "\n".join(lines)
