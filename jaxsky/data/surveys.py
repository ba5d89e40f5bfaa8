"""Observing conditions of public surveys, combinable with any galaxy preset.

Each :class:`~jaxsky.data.presets.base.Survey` fixes the pixel scale, the stamp size, the PSF
family and the range its FWHM is drawn from (uniformly, per image), and the sky noise.

Numbers and their sources (the same ones the LSST DESC ``surveycodex`` package collects):
pixel scales, zero points (AB mag giving 1 electron/s), sky brightness (mag/arcsec^2),
full-depth exposure times and median PSF FWHM of one band per survey. The FWHM range around
that median is jaxsky's assumption (stated per survey). Fluxes are in electrons collected
over the full-depth exposure, so the sky noise per pixel is Poisson in the sky alone:

    sigma = sqrt(t_exp * 10^(-0.4 (mu_sky - zp)) * scale^2)    [electrons / pixel]

(the background-limited regime; e.g. Bosch et al. 2018 sec. 4, or GalSim demo noise models).
The ``paper``-preset flux range 1e4-1e5 electrons then spans about mag 24.6-27.1 in LSST i.
"""

from __future__ import annotations

import math

from jaxsky.data.presets.base import Survey

__all__ = ["SURVEYS", "get_survey", "list_surveys", "sky_sigma"]

_CODEX = "LSSTDESC surveycodex, https://github.com/LSSTDESC/surveycodex (data/{}.yaml)"


def sky_sigma(sky_mag: float, zeropoint: float, exptime: float, scale: float) -> float:
    """Sky-noise sigma (electrons/pixel) of a background-limited full-depth image."""
    return math.sqrt(exptime * 10 ** (-0.4 * (sky_mag - zeropoint)) * scale**2)


def _survey(name, *, band, scale, stamp, family, fwhm, beta, sky, zp, texp, obsc, desc, src):
    sigma = sky_sigma(sky, zp, texp, scale)
    return Survey(
        name=name,
        scale=scale,
        stamp=stamp,
        psf_family=family,
        psf_fwhm=fwhm,
        psf_beta=beta,
        noise_sigma=round(sigma, 4),
        description=desc,
        sources=tuple(src)
        + (
            f"band {band}: sky {sky} mag/arcsec^2, zeropoint {zp} mag (1 e-/s), "
            f"exposure {texp} s; obscuration {obsc}",
        ),
        obscuration=obsc,
        band=band,
        sky_brightness=sky,
        zeropoint=zp,
        exposure_time=texp,
    )


SURVEYS: dict[str, Survey] = {
    "lsst": _survey(
        "lsst",
        band="i",
        scale=0.2,
        stamp=33,
        family="moffat",
        fwhm=(0.6, 1.0),
        beta=3.5,
        sky=20.48,
        zp=27.78,
        texp=5520.0,
        obsc=0.39,
        desc='Rubin LSST 10-year i-band coadd: 0.2"/px, Moffat PSF FWHM 0.6-1.0"',
        src=(
            _CODEX.format("LSST"),
            "Ivezic et al. 2019 (arXiv:0805.2366) Tables 1-2: sky, visits x 30 s, seeing "
            '(median i FWHM 0.79" at airmass 1.2; range 0.6-1.0" assumed)',
            "Moffat beta=3.5 as in the LSST DESC DC2 / WeakLensingDeblending simulations",
        ),
    ),
    "hsc": _survey(
        "hsc",
        band="i",
        scale=0.168,
        stamp=41,
        family="moffat",
        fwhm=(0.45, 0.8),
        beta=3.5,
        sky=19.7,
        zp=28.61,
        texp=1200.0,
        obsc=0.02,
        desc='Subaru HSC-SSP Wide i band: 0.168"/px, Moffat PSF FWHM 0.45-0.8"',
        src=(
            _CODEX.format("HSC"),
            "Aihara et al. 2022 (arXiv:2108.13045) Table 1: Wide i 1200 s, median seeing "
            '0.61" (range 0.45-0.8" assumed)',
        ),
    ),
    "des": _survey(
        "des",
        band="i",
        scale=0.263,
        stamp=31,
        family="moffat",
        fwhm=(0.7, 1.1),
        beta=3.5,
        sky=19.89,
        zp=26.86,
        texp=900.0,
        obsc=0.18,
        desc='DES wide i band (10 x 90 s): 0.263"/px, Moffat PSF FWHM 0.7-1.1"',
        src=(
            _CODEX.format("DES"),
            'Abbott et al. 2018 DES DR1 (arXiv:1801.03181) Table 1: sky, median FWHM 0.88" '
            '(range 0.7-1.1" assumed); DECam 0.263"/px',
        ),
    ),
    "euclid-vis": _survey(
        "euclid-vis",
        band="VIS",
        scale=0.1,
        stamp=64,
        family="airy",
        fwhm=(0.16, 0.18),
        beta=0.0,
        sky=22.3203,
        zp=25.91,
        texp=565.0,
        obsc=0.13,
        desc='Euclid VIS wide survey: 0.1"/px, obscured Airy PSF FWHM 0.16-0.18"',
        src=(
            _CODEX.format("Euclid_VIS"),
            'Laureijs et al. 2011 (arXiv:1110.3193) p. 3: 0.1"/px, PSF FWHM <= 0.18"; '
            "Cropper et al. 2016 (arXiv:1608.08603) sec. 3.1, 6, 8: obscuration, 565 s, "
            'PSF ~0.17"',
        ),
    ),
    "hst-acs": _survey(
        "hst-acs",
        band="F814W",
        scale=0.03,
        stamp=128,
        family="airy",
        fwhm=(0.085, 0.105),
        beta=0.0,
        sky=22.0,
        zp=25.94,
        texp=2028.0,
        obsc=0.33,
        desc='HST/ACS F814W as in COSMOS: 0.03"/px drizzled, obscured Airy PSF FWHM ~0.095"',
        src=(
            _CODEX.format("COSMOS"),
            'Koekemoer et al. 2007 (ApJS 172, 196) sec. 2.2, 4, 5: 2028 s, 0.03"/px, '
            'FWHM ~0.095" (range 0.085-0.105" assumed); sky 22 mag/arcsec^2 as surveycodex',
        ),
    ),
}


def get_survey(name: str | Survey | None) -> Survey | None:
    """Look up a survey by name (``None`` and :class:`Survey` pass through)."""
    if name is None or isinstance(name, Survey):
        return name
    key = str(name).lower()
    if key not in SURVEYS:
        raise ValueError(f"unknown survey {name!r}; choose one of {sorted(SURVEYS)}")
    return SURVEYS[key]


def list_surveys() -> list[str]:
    """Names of the built-in surveys."""
    return sorted(SURVEYS)
