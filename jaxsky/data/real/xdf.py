"""``xdf``: real HST galaxies cut from the Hubble eXtreme Deep Field (or any deep FITS image).

See :mod:`jaxsky.data.real.xdf_detect` for the detection pipeline and the caveats of the
scikit-image composite (8-bit colour, display-stretched, not calibrated flux).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxsky.data.presets.base import Design, SimResult, Survey
from jaxsky.data.real._catalog_preset import CatalogPreset
from jaxsky.data.real._common import draw_psf, survey_psf
from jaxsky.data.real.xdf_detect import (
    MEASURED,
    MEASURED_UNITS,
    XDF_SCALE,
    extract_cutouts,
    load_image,
    load_xdf_luminance,
)

__all__ = ["XDF"]

# HST ACS/WFC3 optical PSFs are ~0.1" FWHM (ACS/WFC3 instrument handbooks); the composite's
# true PSF is unknown, so the native-resolution PSF stored is this nominal Gaussian.
NATIVE_PSF_FWHM = 0.1


class XDF(CatalogPreset):
    """Isolated, centred galaxies from a deep field, with measured conditions.

    Conditions, measured at native resolution: ``flux`` (sum over the source's footprint:
    luminance units for the scikit-image composite, image units for a FITS image), ``hlr``
    (half-light radius of the footprint's growth curve about the centroid, arcsec), ``g1``,
    ``g2`` (HSM adaptive-moment observed shape, Hirata & Seljak 2003; includes the native PSF).

    Without a survey, images are the centred native stamps (``stamp`` pixels at the field's
    scale; stored PSF: a nominal 0.1"-FWHM Gaussian, see ``config()``). With a survey, each
    stamp (an interpolated image) is convolved with the survey PSF and drawn at the survey's
    scale; the native HST blur (about one 0.138" pixel) is not deconvolved, so the true
    effective PSF is slightly broader than the stored survey PSF (a ~2% FWHM effect for a
    0.7" seeing). Surveys with pixels finer than the field's, or a PSF FWHM below two native
    pixels, are refused.

    Args:
        catalog: None for scikit-image's XDF composite, or a 2-D FITS image path.
        scale: arcsec/pixel of the image (default: XDF 0.138 nominal, or the FITS header).
        stamp: native stamp side in pixels. margin: extra pixels kept for shifts/rotations.
        thresh, minarea, blend_frac, neighbour_frac, min_snr, grow: detection and selection, see
            :func:`jaxsky.data.real.xdf_detect.extract_cutouts`.
        replace, rotate: row choice with replacement; random rotation per image (default off:
            the pixels are real data, rotation interpolates them).
        flux_scale: factor applied to every image (and not to the measured ``flux``).
    """

    name = "xdf"
    description = "isolated galaxies cut from the Hubble XDF (scikit-image composite) or a FITS"

    def __init__(
        self,
        catalog=None,
        *,
        scale: float | None = None,
        stamp: int = 32,
        margin: int = 6,
        thresh: float = 3.0,
        minarea: int = 10,
        blend_frac: float = 0.05,
        neighbour_frac: float = 0.5,
        min_snr: float = 30.0,
        grow: int = 3,
        replace: bool | None = None,
        rotate: bool = False,
        flux_scale: float = 1.0,
    ):
        super().__init__(replace=replace, weighted=False, rotate=rotate, flux_scale=flux_scale)
        if catalog is None:
            image, self.source = load_xdf_luminance(), "skimage.data.hubble_deep_field()"
            scale = XDF_SCALE if scale is None else float(scale)
        else:
            image, scale = load_image(catalog, scale)
            self.source = str(catalog)
        self.options = dict(
            stamp=int(stamp),
            margin=int(margin),
            thresh=float(thresh),
            minarea=int(minarea),
            blend_frac=float(blend_frac),
            neighbour_frac=float(neighbour_frac),
            min_snr=float(min_snr),
            grow=int(grow),
        )
        self.cutouts = extract_cutouts(image, scale=scale, **self.options)
        self.param_names = MEASURED
        units = "luminance" if catalog is None else "image units"
        self.param_units = (units, *MEASURED_UNITS[1:])
        self._cond = self.cutouts.params
        self._row_ids = np.arange(len(self._cond), dtype=np.int64)
        self.default_survey = Survey(
            name="xdf-native",
            scale=float(scale),
            stamp=int(stamp),
            psf_family="gaussian",
            psf_fwhm=(NATIVE_PSF_FWHM, NATIVE_PSF_FWHM),
            description="native pixels of the deep field; nominal PSF",
        )

    def design(
        self, n: int, *, seed: int, survey: Survey | None = None, kind: str = "lhs"
    ) -> Design:
        """Seeded choice of sources (see CatalogPreset.design); ``extra`` also records each
        source's centroid in the field (``field_x``, ``field_y``: 0-based pixels)."""
        d = super().design(n, seed=seed, survey=survey, kind=kind)
        pos = self.cutouts.position[d.rows]
        extra = {**d.extra, "field_x": pos[:, 0].copy(), "field_y": pos[:, 1].copy()}
        return Design(params=d.params, rows=d.rows, extra=extra)

    def check_target(self, survey: Survey, rows=None) -> None:
        if survey is self.default_survey:
            return
        sc = self.cutouts.scale
        if survey.scale < sc:
            raise ValueError(
                f"survey {survey.name!r}: scale={survey.scale} arcsec/pixel is finer than the "
                f"deep field's {sc}"
            )
        if survey.psf_fwhm[0] < 2 * sc:
            raise ValueError(
                f"survey {survey.name!r}: psf_fwhm low={survey.psf_fwhm[0]} arcsec is below two "
                f"native pixels ({2 * sc:.3f} arcsec): the field cannot be PSF-matched to it"
            )

    def profile(self, design: Design, i: int):
        """The centred (and rotated) ``galsim.InterpolatedImage`` of image ``i``, arcsec units."""
        import galsim

        k = self._pos_of(design, i)
        sc = self.cutouts.scale
        ii = galsim.InterpolatedImage(
            galsim.Image(np.ascontiguousarray(self.cutouts.stamps[k]), scale=sc),
            x_interpolant=galsim.Lanczos(5),
            normalization="flux",
        )
        dx, dy = self.cutouts.offsets[k] * sc
        return ii.shift(-dx, -dy).rotate(float(design.extra["rotation"][i]) * galsim.radians)

    def simulate(
        self, design: Design, i: int, *, seed: int, survey: Survey | None = None
    ) -> SimResult:
        """Centred stamp of source ``design.rows[i]`` (native, or PSF-matched to ``survey``)."""
        import galsim

        target = self.survey_or_default(survey)
        psf = survey_psf(target, float(design.extra["psf_fwhm"][i]))
        n = int(target.stamp)
        if survey is None:
            img = self.profile(design, i).drawImage(
                nx=n, ny=n, scale=target.scale, method="no_pixel"
            )
        else:
            self.check_target(target)
            obj = galsim.Convolve(self.profile(design, i), psf)
            img = obj.drawImage(nx=n, ny=n, scale=target.scale)
        image = (self.flux_scale * img.array).astype(np.float32)
        return SimResult(image=image, psf=draw_psf(psf, target))

    def config(self) -> dict[str, Any]:
        c = self.cutouts
        return {
            **super().config(),
            "source": self.source,
            "scale": c.scale,
            **self.options,
            "n_detected": c.n_detected,
            "n_accepted": len(c.params),
            "rejected": dict(c.rejected),
            "native_psf": f"nominal Gaussian FWHM {NATIVE_PSF_FWHM} arcsec (true PSF unknown)",
            "caveats": "8-bit display-stretched colour composite; luminance is not calibrated flux"
            if self.source.startswith("skimage")
            else "",
        }
