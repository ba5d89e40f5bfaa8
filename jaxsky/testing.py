"""Random galaxy workloads for accuracy checks against GalSim (used by tests and tools).

The workload is the one issue 2 names: Sersic n in [0.5, 6], |g| <= 0.6, shifts within a
pixel, a Moffat (beta 2-5) or Gaussian PSF with FWHM 0.5-1.0", on three stamp setups.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxsky.render import Convolve, Gaussian, Moffat, Sersic

_FIT_PARAMS = ("flux", "half_light_radius", "n", "g1", "g2", "dx", "dy")

__all__ = [
    "Setup",
    "SETUPS",
    "random_case",
    "PAPER_RANGES",
    "paper_like_dataset",
    "NoisyStamps",
    "galsim_sersic_stamps",
]


class Setup(NamedTuple):
    name: str
    nx: int
    scale: float
    hlr: tuple[float, float]
    psf_fwhm: tuple[float, float] = (0.5, 1.0)


SETUPS = {
    "ground33": Setup("ground33", 33, 0.2, (0.1, 1.5)),
    "ground64": Setup("ground64", 64, 0.2, (0.1, 1.5)),
    "hst64": Setup("hst64", 64, 0.03, (0.05, 0.5)),
}


def random_case(
    rng: np.random.Generator, setup: Setup, *, n_range=(0.5, 6.0), g_max=0.6, psf: str | None = None
):
    """One random Sersic x PSF profile and its parameters (a dict)."""
    g = g_max * np.sqrt(rng.uniform())
    phi = rng.uniform(0, 2 * np.pi)
    p = dict(
        n=rng.uniform(*n_range),
        hlr=rng.uniform(*setup.hlr),
        flux=rng.uniform(1e3, 1e5),
        g1=g * np.cos(phi),
        g2=g * np.sin(phi),
        dx=rng.uniform(-0.5, 0.5) * setup.scale,
        dy=rng.uniform(-0.5, 0.5) * setup.scale,
        psf=psf or ("moffat" if rng.uniform() < 0.5 else "gaussian"),
        psf_fwhm=rng.uniform(*setup.psf_fwhm),
        psf_beta=rng.uniform(2.0, 5.0),
    )
    gal = (
        Sersic(p["n"], half_light_radius=p["hlr"], flux=p["flux"])
        .shear(g1=p["g1"], g2=p["g2"])
        .shift(p["dx"], p["dy"])
    )
    if p["psf"] == "moffat":
        psf_obj = Moffat(p["psf_beta"], fwhm=p["psf_fwhm"])
    else:
        psf_obj = Gaussian(fwhm=p["psf_fwhm"])
    return Convolve([gal, psf_obj]), p


class ReferenceTooExpensive(RuntimeError):
    """GalSim would need an FFT larger than allowed to draw the reference."""


def galsim_reference(obj, nx, ny, scale, method="auto", gsparams=None, max_fft_size=None):
    """GalSim's image of ``obj`` at the tight reference accuracy.

    With ``max_fft_size``, raises :class:`ReferenceTooExpensive` instead of letting GalSim
    run a larger FFT (n = 6 galaxies with hlr > 1" can need 10^4 x 10^4).
    """
    import warnings

    import galsim

    from jaxsky.interop import TIGHT_GSPARAMS, to_galsim

    gsp = gsparams or TIGHT_GSPARAMS
    if max_fft_size is not None:
        gsp = gsp.withParams(maximum_fft_size=max_fft_size)
    gobj = to_galsim(obj, gsp)
    with warnings.catch_warnings():
        warnings.simplefilter("error", galsim.errors.GalSimFFTSizeWarning)
        try:
            return gobj.drawImage(nx=nx, ny=ny, scale=scale, method=method).array
        except (galsim.errors.GalSimFFTSizeError, galsim.errors.GalSimFFTSizeWarning) as err:
            raise ReferenceTooExpensive(str(err).splitlines()[0]) from err


def compare_with_galsim(
    obj, nx: int, ny: int, scale: float, method: str = "auto", gsparams=None, max_fft_size=None
):
    """(max |jaxsky - GalSim| / peak, |delta flux| / flux, jaxsky image, GalSim image)."""
    import jaxsky

    ref = galsim_reference(obj, nx, ny, scale, method, gsparams, max_fft_size)
    img = np.asarray(jaxsky.draw(obj, nx=nx, ny=ny, scale=scale, method=method))
    err = float(np.abs(img - ref).max() / np.abs(ref).max())
    dflux = float(abs(img.sum() / ref.sum() - 1.0))
    return err, dflux, img, ref


def accuracy_sweep(setup: Setup, n_galaxies: int, seed: int, progress=None, max_fft_size=None):
    """Errors of ``n_galaxies`` random galaxies of ``setup`` against tight GalSim.

    Returns (errors, flux errors, parameters, number skipped because the GalSim reference
    needed an FFT above ``max_fft_size``); skipped galaxies are replaced by new draws.
    """
    rng = np.random.default_rng(seed)
    errs, dflux, params, skipped = [], [], [], 0
    while len(errs) < n_galaxies:
        obj, p = random_case(rng, setup)
        try:
            e, d, _, _ = compare_with_galsim(
                obj, setup.nx, setup.nx, setup.scale, max_fft_size=max_fft_size
            )
        except ReferenceTooExpensive:
            skipped += 1
            continue
        errs.append(e)
        dflux.append(d)
        params.append(p)
        if progress is not None:
            progress()
    return np.array(errs), np.array(dflux), params, skipped


PAPER_RANGES = {
    "flux": (1e4, 1e5),
    "scale_radius": (0.1, 1.0),
    "g1": (-0.5, 0.5),
    "g2": (-0.5, 0.5),
    "psf_fwhm": (0.2, 0.4),
}


def paper_like_dataset(n: int, *, seed: int = 0, g_max: float = 0.7, noise_sigma: float = 0.0):
    """A small in-memory ``paper``-like set rendered with jaxsky (for tests and examples).

    Exponential(flux, scale_radius) sheared by (g1, g2), convolved with a Gaussian PSF of
    ``psf_fwhm``, 33x33 at 0.2"/pixel, parameters on a seeded Latin hypercube over
    ``PAPER_RANGES`` (rows with |g| >= g_max are redrawn). The reference generator with GalSim
    lives in :mod:`jaxsky.data`; jaxsky matches GalSim here to ~1e-5 of the peak.
    """
    import jax.numpy as jnp
    from scipy.stats import qmc

    from jaxsky.data import Dataset
    from jaxsky.render import Exponential, draw_batch

    names = tuple(PAPER_RANGES)
    lo = np.array([PAPER_RANGES[k][0] for k in names])
    hi = np.array([PAPER_RANGES[k][1] for k in names])
    rows, s = [], seed
    while sum(len(r) for r in rows) < n:
        u = qmc.LatinHypercube(d=len(names), seed=s).random(n)
        t = lo + u * (hi - lo)
        rows.append(t[np.hypot(t[:, 2], t[:, 3]) < g_max])
        s += 1_000_003
    theta = np.concatenate(rows)[:n]
    gal = Exponential(flux=jnp.asarray(theta[:, 0]), scale_radius=jnp.asarray(theta[:, 1]))
    gal = gal.shear(g1=jnp.asarray(theta[:, 2]), g2=jnp.asarray(theta[:, 3]))
    psf = Gaussian(fwhm=jnp.asarray(theta[:, 4]))
    images = np.asarray(draw_batch(Convolve(gal, psf), nx=33, ny=33, scale=0.2))
    psf_images = np.asarray(draw_batch(psf.withFlux(jnp.ones(n)), nx=33, ny=33, scale=0.2))
    return Dataset.from_arrays(
        images,
        theta,
        names,
        scale=0.2,
        param_units=("ADU", "arcsec", "", "", "arcsec"),
        ranges=PAPER_RANGES,
        psfs=psf_images,
        noise_sigma=noise_sigma,
        split_seed=seed,
        meta={"preset": "paper-like (jaxsky renderer)", "seed": seed},
    )


class NoisyStamps(NamedTuple):
    """Noisy GalSim stamps with known truth (see :func:`galsim_sersic_stamps`).

    truth: {name: float[B]} for flux, half_light_radius (arcsec), n, g1, g2, dx, dy (arcsec);
    images: float32[B, nx, nx]; variance: float[B] per-pixel noise variance; snr: float[B]
    optimal signal-to-noise; psf: the matching jaxsky Moffat PSF profile.
    """

    truth: dict
    images: np.ndarray
    variance: np.ndarray
    snr: np.ndarray
    psf: object


def galsim_sersic_stamps(
    n: int,
    *,
    seed: int = 0,
    nx: int = 64,
    scale: float = 0.2,
    psf_beta: float = 3.0,
    psf_fwhm: float = 0.7,
    flux=(500.0, 5000.0),
    hlr=(0.25, 0.8),
    sersic_n=(0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
    g_max: float = 0.4,
    max_shift: float = 0.5,
    snr=(20.0, 200.0),
) -> NoisyStamps:
    """``n`` GalSim Sersic x Moffat stamps with white Gaussian noise, for fit validation.

    Per galaxy: flux uniform in ``flux``; half-light radius uniform in ``hlr`` (arcsec); Sersic
    index drawn from ``sersic_n``; reduced shear uniform on the disc |g| <= ``g_max``; centre
    offsets uniform within +-``max_shift`` pixels; noise sigma set so that the optimal SNR
    sqrt(sum(image^2)) / sigma is uniform in ``snr`` (the SNR convention of e.g. Bernstein &
    Jarvis 2002). GalSim draws with its default accuracy; reproducible from ``seed``.
    """
    import galsim

    if n < 1 or nx < 2 or not scale > 0:
        raise ValueError(f"need n >= 1, nx >= 2 and scale > 0; got n={n}, nx={nx}, scale={scale}")
    rng = np.random.default_rng(seed)
    gmag, gphi = g_max * np.sqrt(rng.uniform(size=n)), rng.uniform(0, np.pi, n)
    values = (
        rng.uniform(*flux, n),
        rng.uniform(*hlr, n),
        rng.choice(np.asarray(sersic_n, float), n),
        gmag * np.cos(2 * gphi),
        gmag * np.sin(2 * gphi),
        rng.uniform(-max_shift, max_shift, n) * scale,
        rng.uniform(-max_shift, max_shift, n) * scale,
    )
    truth = dict(zip(_FIT_PARAMS, values))
    gpsf = galsim.Moffat(psf_beta, fwhm=psf_fwhm)
    images = np.empty((n, nx, nx), np.float32)
    var, snrs = np.empty(n), rng.uniform(*snr, n)
    for i in range(n):
        t = {k: float(v[i]) for k, v in truth.items()}
        gal = galsim.Sersic(t["n"], half_light_radius=t["half_light_radius"], flux=t["flux"])
        gal = gal.shear(g1=t["g1"], g2=t["g2"]).shift(t["dx"], t["dy"])
        img = galsim.Convolve(gal, gpsf).drawImage(nx=nx, ny=nx, scale=scale).array
        sigma = np.sqrt(np.sum(img**2)) / snrs[i]
        var[i] = sigma**2
        images[i] = img + rng.normal(0, sigma, img.shape)
    return NoisyStamps(truth, images, var, snrs, Moffat(psf_beta, fwhm=psf_fwhm))
