"""COSMOS presets: parametric fits (``cosmos-parametric``) and real HST galaxies (``cosmos-real``).

Both draw, for image ``i`` of a design, the catalogue row ``design.rows[i]`` whose catalogue
values are ``design.params[i]``: the image and its parameters come from the same galaxy by
construction (the original scripts paired real images with other galaxies' parameters).

Flux units are the catalogue's: GalSim's COSMOS convention (HST/ACS F814W counts for a 1 s
exposure over the HST collecting area) for ``cosmos-parametric``, the HST stamps' own pixel
units for ``cosmos-real``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from jaxsky.data.design import PURPOSES, index_seeds
from jaxsky.data.presets.base import Design, SimResult, Survey
from jaxsky.data.real._catalog_preset import CatalogPreset
from jaxsky.data.real._common import HST_F814W, draw_psf, survey_psf
from jaxsky.data.real.catalog import _read_table, open_parametric_catalog, open_real_catalog
from jaxsky.data.surveys import get_survey
from jaxsky.errors import DataError

__all__ = ["CosmosParametric", "CosmosReal"]

_UNITS = {"mag": "mag", "mag_auto": "mag", "flux_radius": "pixel", "zphot": "", "hlr": "arcsec"}


def _weights(cat_file, rows) -> np.ndarray:
    """float64[len(rows)] catalogue WEIGHT (COSMOS selection-effect correction) of ``rows``."""
    t = _read_table(cat_file, "real-galaxy catalogue")
    if "weight" not in {c.lower() for c in t.columns.names}:
        raise DataError(f"weighted=True but {cat_file} has no WEIGHT column")
    return np.asarray(t["WEIGHT"], np.float64)[rows]


class CosmosParametric(CatalogPreset):
    """Galaxies from the COSMOS Sersic / bulge+disk fits (GalSim ``COSMOSCatalog``).

    Conditions (as galsim-hub, Lanusse et al. 2021): ``mag_auto`` (F814W AB mag),
    ``flux_radius`` (SExtractor half-light radius, HST pixels of 0.03"), ``zphot``.
    Image ``i`` is ``makeGalaxy(row, gal_type='parametric')`` rotated by
    ``design.extra['rotation'][i]``, convolved with the survey PSF of FWHM
    ``design.extra['psf_fwhm'][i]`` and drawn at the survey's pixel scale (default:
    HST/ACS F814W-like, 0.03"/pixel, 64x64).

    Args:
        catalog: the ``real_galaxy_catalog_*.fits`` file, its ``_fits.fits`` sibling, or a
            ``galsim_download_cosmos`` directory.
        sample: '23.5' or '25.2' when a directory holds both.
        exclusion_level: GalSim's cut ('none' keeps every row; others need the
            ``_selection.fits`` file).
        replace: row choice with replacement (None: only when n exceeds the usable rows).
        weighted: choose rows in proportion to the catalogue ``WEIGHT`` column.
        rotate: random rotation per image (seeded by (seed, i)).
        flux_scale: factor applied to every image (catalogue -> survey flux units).
    """

    name = "cosmos-parametric"
    description = "COSMOS Sersic / bulge+disk fits (GalSim COSMOSCatalog), galsim-hub conditions"
    param_names = ("mag_auto", "flux_radius", "zphot")
    param_units = ("mag", "pixel", "")
    default_survey = HST_F814W

    def __init__(
        self,
        catalog,
        *,
        sample: str | None = None,
        exclusion_level: str = "none",
        replace: bool | None = None,
        weighted: bool = False,
        rotate: bool = True,
        flux_scale: float = 1.0,
    ):
        super().__init__(replace=replace, weighted=weighted, rotate=rotate, flux_scale=flux_scale)
        self.catalog = open_parametric_catalog(catalog, sample=sample)
        self.exclusion_level = exclusion_level
        self._gs = None
        gs = self._galsim()
        self._row_ids = np.asarray(gs.orig_index, np.int64)
        if len(self._row_ids) == 0:
            raise DataError(
                f"{self.catalog.file}: no galaxy passes exclusion_level={exclusion_level!r}"
            )
        c = self.catalog
        self._cond = np.stack([c.mag_auto, c.flux_radius, c.zphot], axis=1)[self._row_ids]
        self._weights = _weights(self.catalog.file, self._row_ids) if weighted else None

    def _galsim(self):
        if self._gs is None:
            try:
                self._gs = self.catalog.galsim(self.exclusion_level)
            except Exception as exc:  # GalSim raises OSError/KeyError/GalSimValueError
                raise DataError(
                    f"GalSim cannot read the COSMOS catalogue {self.catalog.file} with "
                    f"exclusion_level={self.exclusion_level!r}: {exc}"
                ) from exc
        return self._gs

    def __getstate__(self):  # the GalSim catalogue is rebuilt in each worker process
        return {**self.__dict__, "_gs": None}

    def galaxy(self, design: Design, i: int):
        """The (rotated, PSF-free) GalSim profile of image ``i``."""
        import galsim

        gal = self._galsim().makeGalaxy(self._pos_of(design, i), gal_type="parametric")
        return gal.rotate(float(design.extra["rotation"][i]) * galsim.radians)

    def simulate(
        self, design: Design, i: int, *, seed: int, survey: Survey | None = None
    ) -> SimResult:
        """Noiseless image of ``design.rows[i]`` and the effective PSF; independent of ``seed``."""
        import galsim

        survey = self.survey_or_default(survey)
        psf = survey_psf(survey, float(design.extra["psf_fwhm"][i]))
        n = int(survey.stamp)
        img = galsim.Convolve(self.galaxy(design, i), psf).drawImage(nx=n, ny=n, scale=survey.scale)
        image = (self.flux_scale * img.array).astype(np.float32)
        return SimResult(image=image, psf=draw_psf(psf, survey))

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "catalog": str(self.catalog.file.resolve()),
            "fits_file": str(self.catalog.fits_file.resolve()),
            "exclusion_level": self.exclusion_level,
            "n_rows": len(self._row_ids),
            "flux_units": "HST/ACS F814W counts, 1 s, HST area (GalSim COSMOSCatalog)",
        }


class CosmosReal(CatalogPreset):
    """Real HST galaxies (``galsim.RealGalaxy``) PSF-matched to a target survey.

    GalSim deconvolves each galaxy by its HST PSF, rotates it, convolves it with the survey PSF
    and draws it at the survey pixel scale (default: the ``lsst`` survey, 0.2"/pixel, 33x33,
    Moffat beta 3.5 with FWHM 0.6-1.0").
    The target PSF must be broader than the HST PSF (checked: the survey's smallest FWHM must be
    at least ``min_fwhm_ratio`` times the largest HST PSF FWHM of the chosen rows, and its pixels
    no finer than the HST ones), otherwise the deconvolution amplifies noise: a ValueError.

    Conditions: by default ``mag_auto, flux_radius, zphot`` when the ``_fits.fits`` sibling is
    present (COSMOS samples), else ``mag`` (the catalogue ``MAG``; e.g. GalSim's AEGIS test
    catalogue has no fits table). ``conditions=`` picks from ``mag``, ``mag_auto``,
    ``flux_radius``, ``zphot``, ``hlr`` (Sersic-fit half-light radius, arcsec).

    Noise: the HST stamps carry their own (correlated) noise, which is part of each image. With
    ``noise_pad=True`` the stamp is padded with noise of the same correlation function out to
    the rotated target stamp (GalSim's ``noise_pad_size``), seeded by (seed, i), so no sharp edge
    appears; ``noise_pad=False`` pads with zeros. Where the catalogue's NOISE_FILENAME is absent
    (neither next to the catalogue nor in GalSim's share dir) the padding is uncorrelated noise
    of the catalogue NOISE_VARIANCE (GalSim's own fallback) and ``config()['noise_model']``
    says so. ``flux_scale`` multiplies every image (catalogue -> survey flux units).
    """

    name = "cosmos-real"
    description = "real HST galaxies from a GalSim RealGalaxyCatalog, PSF-matched to a survey"
    # No survey given: the ``lsst`` survey's pixels, stamp and PSF (jaxsky.data.surveys).
    default_survey = get_survey("lsst")

    def __init__(
        self,
        catalog,
        *,
        sample: str | None = None,
        conditions: tuple[str, ...] | None = None,
        replace: bool | None = None,
        weighted: bool = False,
        rotate: bool = True,
        noise_pad: bool = True,
        min_fwhm_ratio: float = 1.25,
        flux_scale: float = 1.0,
    ):
        super().__init__(replace=replace, weighted=weighted, rotate=rotate, flux_scale=flux_scale)
        self.catalog = cat = open_real_catalog(catalog, sample=sample)
        avail = {"mag": cat.mag, **cat.fits}
        if conditions is None:
            conditions = ("mag_auto", "flux_radius", "zphot") if cat.fits else ("mag",)
        bad = [c for c in conditions if c not in avail]
        if bad or not conditions:
            raise DataError(
                f"conditions {bad or conditions} not available in {cat.file}; "
                f"this catalogue provides: {', '.join(avail)}"
            )
        self.param_names = tuple(conditions)
        self.param_units = tuple(_UNITS[c] for c in conditions)
        self._cond = np.stack([avail[c] for c in conditions], axis=1)
        self._row_ids = np.arange(cat.n, dtype=np.int64)
        self.noise_pad = bool(noise_pad)
        self.min_fwhm_ratio = float(min_fwhm_ratio)
        self._gs = None
        self._weights = _weights(cat.file, self._row_ids) if weighted else None
        self._fwhm_cache: dict[int, float] = {}
        if any(f is None for f in cat.noise_files):
            warnings.warn(
                f"{cat.file}: noise-correlation file(s) missing; padding with uncorrelated noise "
                "of NOISE_VARIANCE (GalSim's fallback)",
                stacklevel=2,
            )

    def _galsim(self):
        if self._gs is None:
            self._gs = self.catalog.galsim()
        return self._gs

    def __getstate__(self):
        return {**self.__dict__, "_gs": None}

    def hst_psf_fwhm(self, row: int) -> float:
        """FWHM (arcsec) of the HST PSF image of catalogue row ``row``."""
        if row not in self._fwhm_cache:
            self._fwhm_cache[row] = float(self._galsim().getPSFImage(row).calculateFWHM())
        return self._fwhm_cache[row]

    def check_target(self, survey: Survey, rows=None) -> None:
        """ValueError unless ``survey``'s PSF is broader, and pixels coarser, than HST's."""
        rows = self._row_ids if rows is None else np.unique(rows)
        scale = float(self.catalog.pixel_scale[rows].max())
        if survey.scale < scale:
            raise ValueError(
                f"survey {survey.name!r}: scale={survey.scale} arcsec/pixel is finer than the "
                f"catalogue's {scale}: real galaxies cannot be drawn at higher resolution"
            )
        # PSF images of up to 32 rows (evenly spread) bound the HST PSF size cheaply.
        probe = rows[np.linspace(0, len(rows) - 1, min(len(rows), 32)).astype(int)]
        hst = max(self.hst_psf_fwhm(int(r)) for r in probe)
        need = self.min_fwhm_ratio * hst
        if survey.psf_fwhm[0] < need:
            raise ValueError(
                f"survey {survey.name!r}: psf_fwhm low={survey.psf_fwhm[0]} arcsec is not broader "
                f"than the HST PSF ({hst:.3f} arcsec FWHM): PSF matching needs >= {need:.3f} "
                f"(min_fwhm_ratio={self.min_fwhm_ratio})"
            )

    def galaxy(self, design: Design, i: int, *, seed: int, survey: Survey):
        """The rotated, HST-PSF-deconvolved ``galsim.RealGalaxy`` of image ``i``."""
        import galsim

        row = self._row_ids[self._pos_of(design, i)]
        # The image's render seed (stored as /render_seeds); 0 would mean "seed from the clock".
        rng = galsim.BaseDeviate(int(index_seeds(seed, [i], PURPOSES["render"])[0]) or 1)
        # Pad to the diagonal of the target stamp so that every rotation stays covered.
        pad = math.sqrt(2) * survey.stamp * survey.scale if self.noise_pad else 0
        gsc = self._galsim()
        if self.catalog.noise_files[row] is not None:
            gal = galsim.RealGalaxy(gsc, index=int(row), rng=rng, noise_pad_size=pad)
        else:
            # GalSim's tuple form (as COSMOSGalaxy uses) with no noise image: uncorrelated noise.
            src = (
                gsc.getGalImage(int(row)),
                gsc.getPSFImage(int(row)),
                None,
                float(self.catalog.pixel_scale[row]),
                float(self.catalog.noise_variance[row]),
            )
            gal = galsim.RealGalaxy(src, rng=rng, noise_pad_size=pad)
        return gal.rotate(float(design.extra["rotation"][i]) * galsim.radians)

    def simulate(
        self, design: Design, i: int, *, seed: int, survey: Survey | None = None
    ) -> SimResult:
        """PSF-matched image of ``design.rows[i]`` and the survey's effective PSF image."""
        import galsim

        survey = self.survey_or_default(survey)
        fwhm = float(design.extra["psf_fwhm"][i])
        row = int(design.rows[i])
        if fwhm < self.min_fwhm_ratio * self.hst_psf_fwhm(row):
            raise ValueError(
                f"image {i}: target PSF FWHM {fwhm} arcsec is not broader than the HST PSF of "
                f"row {row} ({self.hst_psf_fwhm(row):.3f} arcsec)"
            )
        psf = survey_psf(survey, fwhm)
        gal = self.galaxy(design, i, seed=seed, survey=survey)
        n = int(survey.stamp)
        img = galsim.Convolve(gal, psf).drawImage(nx=n, ny=n, scale=survey.scale)
        image = (self.flux_scale * img.array).astype(np.float32)
        return SimResult(image=image, psf=draw_psf(psf, survey))

    def config(self) -> dict[str, Any]:
        missing = sum(f is None for f in self.catalog.noise_files)
        return {
            **super().config(),
            "catalog": str(self.catalog.file.resolve()),
            "n_rows": self.catalog.n,
            "noise_pad": self.noise_pad,
            "noise_model": (
                "correlated noise from NOISE_FILENAME"
                if missing == 0
                else f"uncorrelated NOISE_VARIANCE for {missing} of {self.catalog.n} rows "
                "(noise file missing)"
            ),
            "min_fwhm_ratio": self.min_fwhm_ratio,
            "flux_units": "HST image units of the catalogue stamps",
        }
