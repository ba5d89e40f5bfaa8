"""Shared pieces of the real-galaxy presets: survey PSFs, per-image PSF FWHM, row choice.

Per-image randomness uses :func:`jaxsky.data.design.index_seeds` (one scheme for all presets).
"""

from __future__ import annotations

import numpy as np

from jaxsky.data.design import PURPOSES, index_uniforms
from jaxsky.data.presets.base import Survey

__all__ = [
    "survey_psf",
    "draw_psf",
    "choose_rows",
    "check_survey",
    "HST_F814W",
    "draw_fwhm",
]

# Default conditions when no survey is given.
# HST/ACS F814W: 0.03"/pixel drizzled COSMOS images (Koekemoer et al. 2007); diffraction limit
# lambda/D = 814 nm / 2.4 m = 0.0700", i.e. an unobscured Airy FWHM of 0.072".
HST_F814W = Survey(
    name="hst-acs-f814w",
    scale=0.03,
    stamp=64,
    psf_family="airy",
    psf_fwhm=(0.072, 0.072),
    description="HST/ACS F814W-like: 0.03 arcsec/pixel, Airy PSF (814 nm, 2.4 m, no obscuration)",
    sources=("Koekemoer et al. 2007, ApJS 172, 196 (COSMOS ACS drizzled 0.03 arcsec pixels)",),
)


def check_survey(survey: Survey) -> None:
    """Raise ValueError on a survey whose numbers cannot make an image."""
    lo, hi = survey.psf_fwhm
    if not (survey.scale > 0):
        raise ValueError(f"survey {survey.name!r}: scale={survey.scale} must be > 0 arcsec/pixel")
    if int(survey.stamp) < 4:
        raise ValueError(f"survey {survey.name!r}: stamp={survey.stamp} must be >= 4 pixels")
    if not (0 < lo <= hi):
        raise ValueError(
            f"survey {survey.name!r}: psf_fwhm={survey.psf_fwhm} must satisfy 0 < low <= high"
        )
    if survey.psf_family not in ("moffat", "gaussian", "airy"):
        raise ValueError(
            f"survey {survey.name!r}: psf_family={survey.psf_family!r} is not one of "
            "'moffat', 'gaussian', 'airy'"
        )


def survey_psf(survey: Survey, fwhm: float):
    """The GalSim PSF (unit flux) of ``survey`` with FWHM ``fwhm`` arcsec."""
    import galsim

    if survey.psf_family == "moffat":
        return galsim.Moffat(beta=survey.psf_beta, fwhm=fwhm)
    if survey.psf_family == "gaussian":
        return galsim.Gaussian(fwhm=fwhm)
    if survey.psf_family == "airy":
        # The same obscured-Airy FWHM <-> lambda/D relation as the analytic presets use.
        from jaxsky.data.presets.analytic import airy_fwhm_unit

        obsc = float(getattr(survey, "obscuration", 0.0))
        return galsim.Airy(lam_over_diam=fwhm / airy_fwhm_unit(obsc), obscuration=obsc)
    raise ValueError(f"unknown psf_family {survey.psf_family!r}")


def draw_psf(psf, survey: Survey) -> np.ndarray:
    """Effective PSF image (PSF convolved with the pixel, unit flux) at the survey's scale."""
    n = int(survey.stamp)
    return psf.drawImage(nx=n, ny=n, scale=survey.scale).array.astype(np.float32)


def draw_fwhm(survey: Survey, n: int, seed: int) -> np.ndarray:
    """float64[n] PSF FWHM per image, uniform in the survey's range, seeded by (seed, i)."""
    lo, hi = survey.psf_fwhm
    u = index_uniforms(seed, np.arange(int(n)), PURPOSES["psf_fwhm"])
    return lo + (hi - lo) * u


def choose_rows(
    n: int,
    n_rows: int,
    *,
    seed: int,
    replace: bool | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """int64[n] positions in ``range(n_rows)`` chosen by a seeded generator.

    ``replace=None`` draws without replacement while ``n <= n_rows`` and with replacement
    beyond (each repeat then differs by its random rotation). ``weights`` (>= 0) makes the
    choice proportional to them, as ``galsim.COSMOSCatalog.selectRandomIndex`` does.
    """
    n = int(n)
    if n <= 0:
        raise ValueError(f"n={n} must be >= 1")
    if replace is None:
        replace = n > n_rows
    if not replace and n > n_rows:
        raise ValueError(
            f"n={n} exceeds the {n_rows} catalogue galaxies available without replacement; "
            "pass replace=True"
        )
    p = None
    if weights is not None:
        w = np.clip(np.asarray(weights, np.float64), 0.0, None)
        if not np.isfinite(w).all() or w.sum() <= 0 or (not replace and (w > 0).sum() < n):
            raise ValueError("catalogue weights cannot support this choice (too few > 0)")
        p = w / w.sum()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E1EC7]))
    return np.asarray(rng.choice(n_rows, size=n, replace=replace, p=p), np.int64)
