"""``jaxsky fit``: Sersic x PSF fits of a stamp set, written as a catalogue."""

from __future__ import annotations

__all__ = ["register"]


def _run(args):
    from pathlib import Path

    import numpy as np

    from jaxsky.errors import UserError
    from jaxsky.infer import FLAGS, fit_sersic, sersic_plan
    from jaxsky.infer.catalog import read_stamps, write_catalog
    from jaxsky.infer.sersic import SERSIC_CONFIG
    from jaxsky.render import Gaussian, Moffat

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    st = read_stamps(args.stamps)
    scale = args.scale if args.scale is not None else st["scale"]
    if scale is None:
        raise UserError(f"{args.stamps} records no pixel scale; pass --scale ARCSEC_PER_PIXEL")
    variance = st["variance"] if args.variance is None else args.variance
    if variance is None:
        raise UserError(f"{args.stamps} holds no variance or noise_sigma; pass --variance V")
    if args.psf_beta is None:
        psf = Gaussian(fwhm=args.psf_fwhm)
    else:
        psf = Moffat(args.psf_beta, fwhm=args.psf_fwhm)
    images = st["images"]
    if images.ndim == 2:
        images = images[None]
    ny, nx = images.shape[-2:]
    plan = None
    if args.max_hlr is not None:
        plan = sersic_plan(psf, nx, ny, scale, args.max_hlr)
        if args.n_fft is not None:
            if args.n_fft < max(nx, ny):
                raise UserError(f"--n-fft {args.n_fft} must be >= the stamp size {max(nx, ny)}")
            plan = plan._replace(n_fft=args.n_fft)
        if args.alias_rings is not None:
            plan = plan._replace(alias_rings=args.alias_rings)
    elif args.n_fft is not None or args.alias_rings is not None:
        raise UserError("--n-fft and --alias-rings need --max-hlr")
    config = SERSIC_CONFIG
    if args.steps is not None:
        config = config._replace(newton_steps=args.steps)
    config = config._replace(chunk_size=args.chunk_size)
    res = fit_sersic(
        images,
        variance,
        psf,
        scale=scale,
        mask=st["mask"],
        plan=plan,
        config=config,
        bad_variance="mask" if args.mask_bad_variance else "raise",
    )
    res["index"] = np.arange(len(res["flux"]))
    meta = {"stamps": str(args.stamps), "scale": float(scale), "flags": str(FLAGS)}
    write_catalog(out, res, overwrite=args.overwrite, meta=meta)
    n_ok = int(np.sum(res["converged"]))
    print(f"fitted {len(res['flux'])} stamps ({n_ok} converged) -> {out}")


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit Sersic x PSF models to a stamp set (HDF5 or FITS); write a catalogue",
        description=(
            "Maximum-likelihood Sersic x PSF fits (flux, half_light_radius, n, g1, g2, dx, dy "
            "with Laplace errors) of every stamp, written to a CSV, FITS or HDF5 catalogue "
            "with per-galaxy flags (1 not converged, 2 no errors, 4 at a bound, 8 masked "
            "pixels, 16 non-finite, 32 too few pixels) and a 'converged' column."
        ),
    )
    p.add_argument("stamps", help="HDF5 (images, variance|noise_sigma, attr scale) or FITS cube")
    p.add_argument("--out", required=True, help="catalogue path: .csv, .fits or .h5")
    p.add_argument("--overwrite", action="store_true", help="replace an existing catalogue")
    p.add_argument("--scale", type=float, help="pixel scale, arcsec/pixel (else from the file)")
    p.add_argument("--variance", type=float, help="pixel-noise variance (else from the file)")
    p.add_argument("--psf-fwhm", type=float, required=True, help="PSF FWHM, arcsec")
    p.add_argument("--psf-beta", type=float, help="Moffat beta (omit for a Gaussian PSF)")
    p.add_argument("--max-hlr", type=float, help="largest half-light radius to plan FFTs for")
    p.add_argument("--n-fft", type=int, help="override the FFT size (with --max-hlr)")
    p.add_argument(
        "--alias-rings", type=int, help="wrap-around correction rings, 0-3 (with --max-hlr)"
    )
    p.add_argument("--steps", type=int, help="damped-Newton iterations (default 20)")
    p.add_argument("--chunk-size", type=int, default=128, help="galaxies per vmapped call")
    p.add_argument(
        "--mask-bad-variance", action="store_true", help="mask pixels with variance <= 0"
    )
    p.set_defaults(func=_run)
