"""Readers for GalSim real-galaxy and COSMOS parametric catalogues, with checks up front.

Layouts understood (the ones ``galsim_download_cosmos`` writes, and GalSim's test catalogues):

* ``real_galaxy_catalog_<sample>.fits`` -- the real-galaxy table (one row per galaxy: ``IDENT``,
  ``MAG``, ``GAL_FILENAME``/``GAL_HDU``, ``PSF_FILENAME``/``PSF_HDU``, ``PIXEL_SCALE``,
  ``NOISE_VARIANCE`` and optionally ``NOISE_FILENAME``) plus the image and PSF files it names;
* ``real_galaxy_catalog_<sample>_fits.fits`` -- the Sersic and bulge+disk fits
  (``mag_auto``, ``flux_radius``, ``zphot``, ``sersicfit``, ``bulgefit``, ...);
* ``real_galaxy_catalog_<sample>_selection.fits`` -- only needed for GalSim's exclusion cuts.

Everything a preset will need is checked when the catalogue is opened, so a wrong path or a
truncated download fails with a :class:`jaxsky.errors.DataError` naming the file and the
problem before any output exists.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from jaxsky.errors import DataError

__all__ = [
    "RealCatalog",
    "ParametricCatalog",
    "open_real_catalog",
    "open_parametric_catalog",
    "resolve_catalog_file",
]

REAL_COLUMNS = (
    "IDENT",
    "MAG",
    "GAL_FILENAME",
    "PSF_FILENAME",
    "GAL_HDU",
    "PSF_HDU",
    "PIXEL_SCALE",
    "NOISE_VARIANCE",
)
# Columns of the ``_fits.fits`` table that COSMOSCatalog.makeGalaxy(gal_type='parametric') reads.
PARAMETRIC_COLUMNS = (
    "IDENT",
    "mag_auto",
    "flux_radius",
    "zphot",
    "sersicfit",
    "bulgefit",
    "use_bulgefit",
    "viable_sersic",
    "hlr",
    "flux",
)


def _read_table(path: Path, what: str):
    """First binary table of a FITS file as an astropy FITS_rec, or a DataError."""
    from astropy.io import fits

    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            tables = [h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)]
            if not tables:
                raise DataError(f"{what} {path} has no FITS table extension (wrong file?)")
            data = tables[0].data
            if data is None or len(data) == 0:
                raise DataError(f"{what} {path} has an empty table")
            return data.copy()
    except DataError:
        raise
    except Exception as exc:  # astropy raises OSError/ValueError/TypeError on junk files
        raise DataError(f"{what} {path} is not a readable FITS file ({exc})") from exc


def _require_columns(data, path: Path, required, what: str) -> None:
    have = {c.lower() for c in data.columns.names}
    missing = [c for c in required if c.lower() not in have]
    if missing:
        raise DataError(
            f"{what} {path} lacks required column(s) {', '.join(missing)} "
            f"(has: {', '.join(data.columns.names)})"
        )


def resolve_catalog_file(path, *, sample: str | None = None) -> Path:
    """The real-galaxy catalogue FITS file given a file or a ``galsim_download_cosmos`` dir.

    A directory must hold exactly one ``real_galaxy_catalog_*.fits`` (not ``_fits``/``_selection``)
    or one ``*catalog*.fits``, unless ``sample`` (e.g. ``"25.2"``) picks among several.
    """
    if path is None or str(path) == "":
        raise DataError(
            "no catalogue given: pass catalog= (--catalog PATH), a real_galaxy_catalog_*.fits "
            "file or a directory made by galsim_download_cosmos"
        )
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise DataError(f"catalogue path {path} does not exist")
    if path.is_file():
        return path
    cands = sorted(
        p
        for p in path.glob("*catalog*.fits")
        if not p.name.endswith(("_fits.fits", "_selection.fits"))
    )
    if sample is not None:
        cands = [p for p in cands if f"_{sample}" in p.name]
    preferred = [p for p in cands if p.name.startswith("real_galaxy_catalog_")]
    cands = preferred or cands
    if not cands:
        raise DataError(
            f"catalogue directory {path} holds no real_galaxy_catalog_*.fits"
            + (f" for sample {sample!r}" if sample else "")
            + " (download one with galsim_download_cosmos, or pass the catalogue file)"
        )
    if len(cands) > 1:
        names = ", ".join(p.name for p in cands)
        raise DataError(
            f"catalogue directory {path} holds several catalogues ({names}): "
            "pass the file itself or sample='23.5' / '25.2'"
        )
    return cands[0]


@dataclasses.dataclass(frozen=True)
class RealCatalog:
    """A checked ``galsim.RealGalaxyCatalog``: table columns plus what each row needs.

    Attributes:
        file: the catalogue FITS file.
        n: number of galaxies.
        ident: int64[n] COSMOS/AEGIS identifiers.
        mag: float64[n] catalogue magnitude (``MAG``, band in ``band``).
        band: the filter names, e.g. ``("F814W", ...)``.
        pixel_scale: float64[n] pixel scale of the HST images, arcsec/pixel.
        noise_variance: float64[n] pixel noise variance of the HST images.
        noise_files: per-row correlated-noise image path, or None where GalSim's fallback
            (uncorrelated noise of ``noise_variance``) is used because the file is absent.
        fits: name -> float64[n] columns of the ``_fits.fits`` table when it is present
            (``mag_auto``, ``flux_radius`` [pixels], ``zphot``, ``hlr`` [arcsec, Sersic]), else {}.
    """

    file: Path
    n: int
    ident: np.ndarray
    mag: np.ndarray
    band: tuple[str, ...]
    pixel_scale: np.ndarray
    noise_variance: np.ndarray
    noise_files: tuple[str | None, ...]
    fits: dict

    def galsim(self):
        """A ``galsim.RealGalaxyCatalog`` on the same file (built lazily per process)."""
        import galsim

        return galsim.RealGalaxyCatalog(self.file.name, dir=str(self.file.parent))


def _fits_columns(cat_file: Path, n: int, ident: np.ndarray) -> dict:
    """Optional conditioning columns from the sibling ``_fits.fits`` file (aligned by IDENT)."""
    fits_file = cat_file.with_name(cat_file.name.replace(".fits", "_fits.fits"))
    if not fits_file.is_file():
        return {}
    data = _read_table(fits_file, "COSMOS fits table")
    _require_columns(data, fits_file, ("IDENT", "mag_auto", "flux_radius", "zphot"), "table")
    if len(data) != n or not np.array_equal(np.asarray(data["IDENT"], np.int64), ident):
        raise DataError(
            f"{fits_file} does not match {cat_file} row by row (IDENT differs): "
            "the files come from different samples"
        )
    out = {k: np.asarray(data[k], np.float64) for k in ("mag_auto", "flux_radius", "zphot")}
    if "hlr" in {c.lower() for c in data.columns.names}:
        out["hlr"] = np.asarray(data["hlr"], np.float64)[:, 0]  # Sersic-fit half-light radius
    return out


def open_real_catalog(path, *, sample: str | None = None, check_files: bool = True):
    """Open and check a real-galaxy catalogue (file or directory), see :class:`RealCatalog`.

    Raises:
        DataError: the file is missing, not FITS, lacks columns, or an image/PSF file it
            names is missing (with ``check_files``).
    """
    import galsim

    cat_file = resolve_catalog_file(path, sample=sample)
    data = _read_table(cat_file, "real-galaxy catalogue")
    _require_columns(data, cat_file, REAL_COLUMNS, "real-galaxy catalogue")
    n = len(data)
    names = {c.lower() for c in data.columns.names}
    if check_files:
        for col in ("GAL_FILENAME", "PSF_FILENAME"):
            for f in sorted({str(s).strip() for s in data[col]}):
                if not (cat_file.parent / f).is_file():
                    raise DataError(
                        f"real-galaxy catalogue {cat_file} names {col}={f!r}, which is missing "
                        f"from {cat_file.parent}"
                    )
    noise_files: list[str | None] = [None] * n
    if "noise_filename" in names:
        share = Path(galsim.meta_data.share_dir)
        for i, f in enumerate(str(s).strip() for s in data["NOISE_FILENAME"]):
            # GalSim reads the noise file from the catalogue dir; galsim_download_cosmos puts it
            # there and GalSim ships the 23.5/25.2 one in its share dir, so look in both.
            for d in (cat_file.parent, share):
                if (d / f).is_file():
                    noise_files[i] = str(d / f)
                    break
    ident = np.asarray(data["IDENT"], np.int64)
    scale = np.asarray(data["PIXEL_SCALE"], np.float64)
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        raise DataError(f"real-galaxy catalogue {cat_file} has PIXEL_SCALE <= 0 or NaN")
    return RealCatalog(
        file=cat_file,
        n=n,
        ident=ident,
        mag=np.asarray(data["MAG"], np.float64),
        band=tuple(str(b).strip() for b in data["BAND"]) if "band" in names else ("",) * n,
        pixel_scale=scale,
        noise_variance=np.asarray(data["NOISE_VARIANCE"], np.float64),
        noise_files=tuple(noise_files),
        fits=_fits_columns(cat_file, n, ident),
    )


@dataclasses.dataclass(frozen=True)
class ParametricCatalog:
    """A checked COSMOS parametric-fit catalogue for ``galsim.COSMOSCatalog(use_real=False)``.

    Attributes:
        file: the real-galaxy catalogue file GalSim is given (its ``_fits.fits`` sibling holds
            the fits; a file that itself holds the fit columns works too).
        fits_file: the table actually read.
        n: rows in the table (before any exclusion).
        ident: int64[n]; mag_auto: float64[n] (AB, F814W); flux_radius: float64[n]
            (SExtractor, HST pixels of 0.03"); zphot: float64[n].
    """

    file: Path
    fits_file: Path
    n: int
    ident: np.ndarray
    mag_auto: np.ndarray
    flux_radius: np.ndarray
    zphot: np.ndarray

    def galsim(self, exclusion_level: str = "none"):
        """The ``galsim.COSMOSCatalog`` on this file (parametric galaxies only)."""
        import galsim

        return galsim.COSMOSCatalog(
            self.file.name,
            dir=str(self.file.parent),
            use_real=False,
            exclusion_level=exclusion_level,
        )


def open_parametric_catalog(path, *, sample: str | None = None) -> ParametricCatalog:
    """Open and check the COSMOS Sersic / bulge+disk fit table (file or directory).

    ``path`` may be the ``real_galaxy_catalog_*.fits`` file, its ``_fits.fits`` sibling, or a
    directory holding them. The image files are not needed.
    """
    p = Path(os.path.expanduser(str(path))) if path else None
    if p is not None and p.is_file() and p.name.endswith("_fits.fits"):
        cat_file = p.with_name(p.name[: -len("_fits.fits")] + ".fits")
        fits_file = p
    else:
        cat_file = resolve_catalog_file(p, sample=sample)
        fits_file = cat_file.with_name(cat_file.name.replace(".fits", "_fits.fits"))
        if not fits_file.is_file():
            # GalSim also accepts a single file that holds the fit columns itself.
            data = _read_table(cat_file, "COSMOS catalogue")
            if "fit_status" not in {c.lower() for c in data.columns.names}:
                raise DataError(
                    f"COSMOS parametric fits {fits_file} are missing (needed next to {cat_file})"
                )
            fits_file = cat_file
    data = _read_table(fits_file, "COSMOS parametric-fit table")
    _require_columns(data, fits_file, PARAMETRIC_COLUMNS, "COSMOS parametric-fit table")
    n = len(data)
    for col, width in (("sersicfit", 8), ("bulgefit", 16)):
        shape = np.shape(data[col])
        if len(shape) != 2 or shape[1] != width:
            raise DataError(
                f"COSMOS parametric-fit table {fits_file}: column {col} has shape {shape}, "
                f"expected ({n}, {width})"
            )
    if cat_file != fits_file and not cat_file.is_file():
        # GalSim opens the named file first even with use_real=False: it has to exist.
        raise DataError(f"COSMOS catalogue {cat_file} is missing (next to {fits_file})")
    return ParametricCatalog(
        file=cat_file,
        fits_file=fits_file,
        n=n,
        ident=np.asarray(data["IDENT"], np.int64),
        mag_auto=np.asarray(data["mag_auto"], np.float64),
        flux_radius=np.asarray(data["flux_radius"], np.float64),
        zphot=np.asarray(data["zphot"], np.float64),
    )
