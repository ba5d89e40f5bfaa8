"""Galaxy cut-outs from a deep-field image: detection, blend rejection, centring, measurement.

The default image is the Hubble eXtreme Deep Field colour composite that scikit-image ships
(``skimage.data.hubble_deep_field()``, read from the installed wheel, no download). Caveats:

* it is an 8-bit, JPEG-compressed colour composite with a display stretch, not calibrated flux:
  we undo the sRGB transfer curve (IEC 61966-2-1) and take the Rec. 709 luminance
  ``0.2126 R + 0.7152 G + 0.0722 B``, which is still a stretched, saturating (at 255) quantity,
  so ``flux`` is in arbitrary "luminance" units and only ranks brightness;
* its pixel scale is not given; 1000 x 872 pixels span the XDF's ~2.3' x 2.0' (Illingworth et
  al. 2013, ApJS 209, 6), hence the nominal 0.138"/pixel, and its PSF is unknown (HST
  ACS/WFC3 PSFs are ~0.1" FWHM, i.e. about one pixel here);
* sources with saturated (255) pixels -- stars and bright cores -- are rejected.

A calibrated 2-D FITS image (e.g. the XDF mosaics from MAST) can be given instead (``path``);
its pixel scale comes from the header (CD/CDELT) or ``scale=``.

Pipeline: SEP (Barbary 2016, the SExtractor algorithms of Bertin & Arnouts 1996) background
and detection with a segmentation map. A source is rejected when a touching neighbour holds more
than ``blend_frac`` (a separated one more than ``neighbour_frac``) times its flux inside its
stamp, when its own segment reaches the stamp edge, when it has saturated pixels, or when HSM
adaptive moments (Hirata & Seljak 2003) fail (unresolved); smaller neighbours are masked to the
background-subtracted sky level 0. The stamp is re-centred on the adaptive-moment centroid by a
sub-pixel shift of a ``galsim.InterpolatedImage`` (Lanczos-5), so that the centroid sits at
GalSim's stamp centre (between the four central pixels of an even stamp).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from jaxsky.errors import DataError

__all__ = ["XDF_SCALE", "Cutouts", "load_xdf_luminance", "load_image", "extract_cutouts"]

XDF_SCALE = 0.138  # arcsec/pixel, nominal: 138" / 1000 pixels (see module docstring)
MEASURED = ("flux", "hlr", "g1", "g2")
MEASURED_UNITS = ("luminance", "arcsec", "", "")


def load_xdf_luminance() -> np.ndarray:
    """float64[872, 1000] linearised luminance of scikit-image's XDF composite (0..1)."""
    try:
        from skimage import data
    except ImportError as exc:
        raise DataError(
            "the xdf preset needs scikit-image (pip install scikit-image), which ships the "
            "Hubble eXtreme Deep Field image; or pass catalog=<a 2-D FITS image>"
        ) from exc
    rgb = data.hubble_deep_field().astype(np.float64) / 255.0
    # sRGB decoding (IEC 61966-2-1), then Rec. 709 relative luminance.
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lum = lin @ np.array([0.2126, 0.7152, 0.0722])
    lum[(rgb >= 254.5 / 255).any(axis=-1)] = np.inf  # saturated: flagged, rejected later
    return lum


def load_image(path, scale: float | None = None) -> tuple[np.ndarray, float]:
    """A 2-D FITS image (primary or first image HDU) and its pixel scale in arcsec/pixel."""
    from astropy.io import fits

    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise DataError(f"deep-field image {path} does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.data.ndim == 2), None)
            if hdu is None:
                raise DataError(f"deep-field image {path} holds no 2-D image HDU")
            data, hdr = np.asarray(hdu.data, np.float64), hdu.header
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"deep-field image {path} is not a readable FITS file ({exc})") from exc
    if scale is None:
        for key in ("CD2_2", "CDELT2"):
            if key in hdr:
                scale = abs(float(hdr[key])) * 3600.0
                break
        else:
            scale = hdr.get("PIXSCALE")
    if scale is None or not float(scale) > 0:
        raise DataError(f"deep-field image {path}: no pixel scale in the header; pass scale=")
    if min(data.shape) < 16:
        raise DataError(f"deep-field image {path} is too small ({data.shape})")
    data = np.where(np.isfinite(data), data, 0.0)
    return data, float(scale)


@dataclasses.dataclass(frozen=True)
class Cutouts:
    """Accepted sources of a deep field, in a deterministic order (flux descending).

    Attributes:
        stamps: float64[N, S+2m, S+2m] background-subtracted cut-outs (neighbours masked),
            uncentred, margin ``m`` pixels around the final S x S stamp.
        offsets: float64[N, 2] (dx, dy) pixel offset of the adaptive-moment centroid from the
            cut-out's true centre (GalSim convention).
        params: float64[N, 4] flux and hlr [arcsec] in the footprint (segment dilated by
            ``grow`` pixels, neighbours masked), HSM observed shape g1, g2.
        position: float64[N, 2] (x, y) centroid in the field, 0-based pixels.
        scale: arcsec/pixel; stamp: S; margin: m.
        n_detected: sources SEP found; rejected: reason -> count.
    """

    stamps: np.ndarray
    offsets: np.ndarray
    params: np.ndarray
    position: np.ndarray
    scale: float
    stamp: int
    margin: int
    n_detected: int
    rejected: dict


def _half_light_radius(img: np.ndarray, x0: float, y0: float, flux: float) -> float:
    """Radius (pixels) about (x0, y0) (0-based, pixel centres) enclosing half of ``flux``.

    SExtractor's FLUX_RADIUS (Bertin & Arnouts 1996) via ``sep.flux_radius``: exact circular
    apertures with 5x5 sub-pixel sampling, linearly interpolated growth curve.
    """
    import sep

    rmax = 0.5 * min(img.shape)
    r, _ = sep.flux_radius(
        np.ascontiguousarray(img, np.float64), [x0], [y0], [rmax], 0.5, normflux=[flux], subpix=5
    )
    return float(r[0])


def extract_cutouts(
    image: np.ndarray,
    *,
    scale: float,
    stamp: int = 32,
    margin: int = 6,
    thresh: float = 3.0,
    minarea: int = 10,
    blend_frac: float = 0.05,
    neighbour_frac: float = 0.5,
    min_snr: float = 30.0,
    grow: int = 3,
) -> Cutouts:
    """Detect sources in ``image`` (float[ny, nx]) and cut centred, unblended stamps.

    Args:
        image: the field; ``inf`` marks saturated pixels (their sources are rejected).
        scale: arcsec/pixel. stamp: S, stamp side in pixels (even or odd).
        thresh: detection threshold in units of the global background rms.
        blend_frac: reject a source when a neighbour whose segment touches its own (within 2
            pixels) holds more than this fraction of its flux inside the S x S stamp.
        neighbour_frac: the same for neighbours separated by sky; smaller intrusions are
            masked (set to the background level 0).
        min_snr: minimum footprint flux / (rms sqrt(footprint pixels)).
        grow: pixels by which the source's segment is dilated into the footprint in which flux
            and half-light radius are measured.
    """
    import galsim
    import sep
    from scipy import ndimage

    if stamp < 8 or margin < 0:
        raise ValueError(f"stamp={stamp} must be >= 8 and margin={margin} >= 0")
    if not (0 < blend_frac and 0 < neighbour_frac):
        raise ValueError(f"blend_frac={blend_frac}, neighbour_frac={neighbour_frac} must be > 0")
    sat = ~np.isfinite(image)
    # Saturated pixels take the brightest finite value so that their sources are detected
    # (and then rejected), not cut into rings around a hole.
    peak = float(np.max(image[~sat])) if (~sat).any() else 0.0
    data = np.ascontiguousarray(np.where(sat, peak, image), dtype=np.float64)
    bkg = sep.Background(data, mask=sat)
    sub = data - bkg.back()
    rms = float(bkg.globalrms)
    if not rms > 0:
        raise DataError("the deep-field image has no measurable background noise (rms = 0)")
    objs, seg = sep.extract(sub, thresh, err=rms, minarea=minarea, segmentation_map=True)
    ny, nx = sub.shape
    h = (stamp + 2 * margin) // 2
    size = stamp + 2 * margin
    rejected = {"edge": 0, "saturated": 0, "blend": 0, "truncated": 0, "faint": 0, "unresolved": 0}
    order = np.lexsort((objs["x"], -objs["flux"]))  # flux descending, ties by x: deterministic
    keep_stamps, keep_off, keep_par, keep_pos = [], [], [], []
    for k in order:
        o = objs[k]
        ix, iy = int(round(o["x"])), int(round(o["y"]))
        x0, y0 = ix - h, iy - h
        if x0 < 0 or y0 < 0 or x0 + size > nx or y0 + size > ny:
            rejected["edge"] += 1
            continue
        win = (slice(y0, y0 + size), slice(x0, x0 + size))
        sseg = seg[win]
        if (sat[win] & (sseg == k + 1)).any():
            rejected["saturated"] += 1
            continue
        # Blend: a neighbour whose light inside the final stamp exceeds blend_frac of ours when
        # its segment touches ours (within 2 pixels), or neighbour_frac when it is separated.
        inner_win = (slice(margin, margin + stamp), slice(margin, margin + stamp))
        iseg, isub = sseg[inner_win], sub[win][inner_win]
        near = ndimage.binary_dilation(iseg == k + 1, iterations=2)
        blended = False
        for j in np.setdiff1d(np.unique(iseg), [0, k + 1]):
            frac = isub[iseg == j].sum() / o["flux"]
            blended |= frac > (blend_frac if (near & (iseg == j)).any() else neighbour_frac)
        if blended:
            rejected["blend"] += 1
            continue
        inner = sseg[margin : margin + stamp, margin : margin + stamp] == k + 1
        own = sseg == k + 1
        if own.sum() != inner.sum() or inner[[0, -1], :].any() or inner[:, [0, -1]].any():
            rejected["truncated"] += 1
            continue
        cut = np.where((sseg > 0) & (sseg != k + 1), 0.0, sub[win])
        try:
            mom = galsim.hsm.FindAdaptiveMom(galsim.Image(cut, scale=1.0))
        except galsim.errors.GalSimHSMError:
            rejected["unresolved"] += 1
            continue
        gim = galsim.Image(cut, scale=1.0)
        off = np.array(
            [mom.moments_centroid.x - gim.true_center.x, mom.moments_centroid.y - gim.true_center.y]
        )
        # Flux and half-light radius inside the source's footprint (its segment dilated by
        # `grow` pixels), so sky noise far from the galaxy does not enter the growth curve.
        foot = ndimage.binary_dilation(sseg == k + 1, iterations=grow)
        meas = np.where(foot, cut, 0.0)
        flux = float(meas.sum())
        if not flux >= min_snr * rms * np.sqrt(foot.sum()):
            rejected["faint"] += 1
            continue
        xc, yc = (size - 1) / 2.0 + off[0], (size - 1) / 2.0 + off[1]
        hlr = _half_light_radius(meas, xc, yc, flux) * scale
        shape = mom.observed_shape
        keep_stamps.append(cut)
        keep_off.append(off)
        keep_par.append([flux, hlr, shape.g1, shape.g2])
        keep_pos.append([x0 + (size - 1) / 2.0 + off[0], y0 + (size - 1) / 2.0 + off[1]])
    if not keep_stamps:
        raise DataError(
            f"no isolated source found in the deep-field image ({len(objs)} detected; "
            f"rejected: {rejected})"
        )
    return Cutouts(
        stamps=np.stack(keep_stamps),
        offsets=np.array(keep_off),
        params=np.array(keep_par, np.float64),
        position=np.array(keep_pos),
        scale=float(scale),
        stamp=int(stamp),
        margin=int(margin),
        n_detected=len(objs),
        rejected=rejected,
    )
