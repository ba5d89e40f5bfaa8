"""GalSim HSM on batches of stamps, with every failure counted and reported, never dropped.

:func:`hsm_moments` runs ``galsim.hsm.FindAdaptiveMom`` (adaptive moments, Hirata & Seljak
2003) and :func:`hsm_shear` runs ``galsim.hsm.EstimateShear`` with each image's own PSF
(re-Gaussianization by default, Hirata & Seljak 2003 Sec. 2.4; also BJ, LINEAR, KSB). Both
return an :class:`HSMResult` whose ``ok`` mask marks successful measurements; failed entries are
NaN and their GalSim error messages are kept in ``errors``.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np

__all__ = ["HSMResult", "hsm_moments", "hsm_shear", "SHEAR_METHODS"]

SHEAR_METHODS = ("REGAUSS", "LINEAR", "BJ", "KSB")


class HSMResult(NamedTuple):
    """Per-image HSM outputs (float64[B] arrays, NaN where the measurement failed).

    Attributes:
        ok: bool[B] measurement succeeded.
        sigma: adaptive-moment size det(M)^(1/4), pixels.
        e1, e2: observed distortion; g1, g2: observed reduced shear.
        amp: best-fit Gaussian flux; x0, y0: centroid in pixels from the stamp centre.
        shear1, shear2: PSF-corrected shear estimate (``hsm_shear`` only, else NaN):
            distortion e for REGAUSS/LINEAR/BJ, reduced shear g for KSB (GalSim's meaning).
        resolution: PSF-corrected resolution factor R2 (``hsm_shear`` only).
        errors: dict index -> GalSim error message of each failure.
    """

    ok: np.ndarray
    sigma: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    g1: np.ndarray
    g2: np.ndarray
    amp: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    shear1: np.ndarray
    shear2: np.ndarray
    resolution: np.ndarray
    errors: dict

    @property
    def n_failed(self) -> int:
        return int((~self.ok).sum())

    def summary(self) -> dict:
        """JSON-able counts: total, failed, and the distinct error messages with counts."""
        msgs = Counter(m.splitlines()[0][:200] for m in self.errors.values())
        return {
            "n": int(self.ok.size),
            "n_failed": self.n_failed,
            "failed_index": sorted(int(i) for i in self.errors),
            "messages": dict(msgs.most_common()),
        }


def _check_images(images, name="images") -> np.ndarray:
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B>0, ny, nx), got {arr.shape}")
    return arr


def _empty(n: int) -> dict:
    keys = [f for f in HSMResult._fields if f not in ("ok", "errors")]
    return {k: np.full(n, np.nan) for k in keys}


def _fill(out, i, res, image):
    import galsim

    shape = res.observed_shape
    out["sigma"][i] = res.moments_sigma
    out["e1"][i], out["e2"][i] = shape.e1, shape.e2
    out["g1"][i], out["g2"][i] = shape.g1, shape.g2
    out["amp"][i] = res.moments_amp
    c = image.true_center if isinstance(image, galsim.Image) else None
    out["x0"][i] = res.moments_centroid.x - c.x
    out["y0"][i] = res.moments_centroid.y - c.y


def hsm_moments(images, *, guess_sig: float = 5.0, hsmparams=None) -> HSMResult:
    """``FindAdaptiveMom`` of every image float[B, ny, nx] (pixel units)."""
    import galsim

    arr = _check_images(images)
    n = arr.shape[0]
    out, ok, errors = _empty(n), np.zeros(n, bool), {}
    for i in range(n):
        im = galsim.Image(arr[i])
        try:
            res = galsim.hsm.FindAdaptiveMom(im, guess_sig=guess_sig, hsmparams=hsmparams)
        except (galsim.errors.GalSimError, RuntimeError, ValueError) as err:
            errors[i] = f"{type(err).__name__}: {err}"
            continue
        _fill(out, i, res, im)
        ok[i] = True
    return HSMResult(ok=ok, errors=errors, **out)


def hsm_shear(
    images, psfs, *, method: str = "REGAUSS", guess_sig_gal: float = 5.0, hsmparams=None
) -> HSMResult:
    """PSF-corrected ``EstimateShear`` of images float[B, ny, nx] with PSFs float[B, py, px].

    A single PSF float[py, px] is used for every image. Failures (small or unresolved
    galaxies, non-converging moments) are NaN with ``ok`` False and the message kept.
    """
    import galsim

    if method not in SHEAR_METHODS:
        raise ValueError(f"method={method!r} is not one of {SHEAR_METHODS}")
    arr = _check_images(images)
    p = _check_images(psfs, "psfs")
    n = arr.shape[0]
    if p.shape[0] == 1 and n > 1:
        p = np.broadcast_to(p, (n, *p.shape[1:]))
    if p.shape[0] != n:
        raise ValueError(f"psfs has {p.shape[0]} stamps for {n} images")
    out, ok, errors = _empty(n), np.zeros(n, bool), {}
    for i in range(n):
        im, psf = galsim.Image(arr[i]), galsim.Image(np.ascontiguousarray(p[i]))
        try:
            res = galsim.hsm.EstimateShear(
                im,
                psf,
                shear_est=method,
                guess_sig_gal=guess_sig_gal,
                strict=True,
                hsmparams=hsmparams,
            )
        except (galsim.errors.GalSimError, RuntimeError, ValueError) as err:
            errors[i] = f"{type(err).__name__}: {err}"
            continue
        if res.correction_status != 0 or res.error_message:
            errors[i] = res.error_message or f"correction_status={res.correction_status}"
            continue
        _fill(out, i, res, im)
        if method == "KSB":
            out["shear1"][i], out["shear2"][i] = res.corrected_g1, res.corrected_g2
        else:
            out["shear1"][i], out["shear2"][i] = res.corrected_e1, res.corrected_e2
        out["resolution"][i] = res.resolution_factor
        ok[i] = True
    return HSMResult(ok=ok, errors=errors, **out)
