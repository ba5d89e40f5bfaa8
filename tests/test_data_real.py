"""COSMOS parametric / real-galaxy presets and their catalogue readers, against direct GalSim."""

from __future__ import annotations

import dataclasses
import math
import pickle
import shutil
import warnings
from pathlib import Path

import galsim
import numpy as np
import pytest
from astropy.io import fits

from jaxsky.data.design import index_seeds
from jaxsky.data.presets.base import Survey
from jaxsky.data.real import (
    PRESETS,
    CosmosParametric,
    CosmosReal,
    open_parametric_catalog,
    open_real_catalog,
)
from jaxsky.data.surveys import get_survey
from jaxsky.errors import DataError

DATA = Path(__file__).parent / "data"
COSMOS = DATA / "real_galaxy_catalog_23.5_example.fits"
COSMOS_FITS = DATA / "real_galaxy_catalog_23.5_example_fits.fits"
AEGIS = DATA / "AEGIS_F814w_catalog.fits"
LSST = Survey(
    name="lsst", scale=0.2, stamp=32, psf_family="moffat", psf_fwhm=(0.6, 0.9), psf_beta=3.5
)
WIDE = Survey(name="wide", scale=0.1, stamp=96, psf_family="gaussian", psf_fwhm=(0.2, 0.3))


def _real(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # AEGIS lacks its noise-correlation file
        return CosmosReal(catalog=AEGIS, **kw)


def test_survey_psf_has_the_requested_fwhm():
    from jaxsky.data.real import survey_psf

    for family, obsc in (("moffat", 0.0), ("gaussian", 0.0), ("airy", 0.0), ("airy", 0.33)):
        sv = Survey(name="s", scale=0.01, stamp=32, psf_family=family, psf_fwhm=(0.1, 0.1))
        sv = dataclasses.replace(sv, obscuration=obsc)
        img = survey_psf(sv, 0.1).drawImage(nx=256, ny=256, scale=0.002, method="no_pixel")
        assert img.calculateFWHM() == pytest.approx(0.1, rel=0.01), (family, obsc)


# ---------------------------------------------------------------------------- readers
def test_presets_registry():
    assert set(PRESETS) >= {"cosmos-parametric", "cosmos-real"}
    assert PRESETS["cosmos-parametric"](catalog=COSMOS).name == "cosmos-parametric"


def test_missing_paths_raise_data_error(tmp_path):
    for factory in (CosmosParametric, CosmosReal):
        with pytest.raises(DataError, match="no catalogue given"):
            factory(catalog=None)
    # the COSMOS example ships without its image file: cosmos-real must say so up front
    with pytest.raises(DataError, match="GAL_FILENAME='real_galaxy_images.fits', which is missing"):
        CosmosReal(catalog=COSMOS)
    with pytest.raises(DataError, match="does not exist"):
        CosmosParametric(catalog=tmp_path / "nope.fits")
    with pytest.raises(DataError, match="no real_galaxy_catalog"):
        CosmosReal(catalog=tmp_path)  # empty directory
    shutil.copy(COSMOS, tmp_path / COSMOS.name)  # the fits sibling is missing
    with pytest.raises(DataError, match="_fits.fits are missing"):
        CosmosParametric(catalog=tmp_path)


def test_not_fits_and_wrong_columns(tmp_path):
    junk = tmp_path / "real_galaxy_catalog_junk.fits"
    junk.write_bytes(b"this is not a FITS file" * 50)
    with pytest.raises(DataError, match="not a readable FITS"):
        CosmosReal(catalog=junk)
    bad = tmp_path / "bad_catalog.fits"
    cols = [fits.Column(name="IDENT", format="K", array=np.arange(3))]
    cols.append(fits.Column(name="MAG", format="D", array=np.ones(3)))
    fits.BinTableHDU.from_columns(cols).writeto(bad)
    with pytest.raises(
        DataError, match=r"bad_catalog.fits lacks required column\(s\) GAL_FILENAME"
    ):
        CosmosReal(catalog=bad)
    shutil.copy(bad, tmp_path / "x_fits.fits")
    with pytest.raises(DataError, match="x_fits.fits lacks required column"):
        CosmosParametric(catalog=tmp_path / "x_fits.fits")
    img = tmp_path / "image_only.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(img)
    with pytest.raises(DataError, match="no FITS table"):
        open_real_catalog(img)


def test_missing_image_file_and_mismatched_tables(tmp_path):
    shutil.copy(AEGIS, tmp_path / AEGIS.name)  # catalogue without its image files
    with pytest.raises(DataError, match="GAL_FILENAME='AEGIS_F814w_images_01.fits'.*missing"):
        CosmosReal(catalog=tmp_path / AEGIS.name)
    # A fits table from another sample (IDENTs differ) must not be paired with the catalogue.
    for f in DATA.glob("AEGIS_F814w_*"):
        shutil.copy(f, tmp_path / f.name)
    t = fits.getdata(COSMOS_FITS, 1)[:5]
    fits.BinTableHDU(t).writeto(tmp_path / "AEGIS_F814w_catalog_fits.fits")
    with pytest.raises(DataError, match="IDENT differs"):
        open_real_catalog(tmp_path / AEGIS.name)


def test_parametric_wrong_shape(tmp_path):
    t = fits.getdata(COSMOS_FITS, 1)
    cols = [
        fits.Column(name=n, format="D", array=np.asarray(t[n], float)[:, 0])
        if n == "sersicfit"
        else fits.Column(name=n, format=t.columns[n].format, array=t[n])
        for n in t.columns.names
    ]
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "real_galaxy_catalog_x_fits.fits")
    shutil.copy(COSMOS, tmp_path / "real_galaxy_catalog_x.fits")
    with pytest.raises(DataError, match="column sersicfit has shape"):
        CosmosParametric(catalog=tmp_path / "real_galaxy_catalog_x.fits")


def test_directory_layout(tmp_path):
    for f in DATA.glob("real_galaxy_catalog_23.5_example*"):
        shutil.copy(f, tmp_path / f.name)
    cat = open_parametric_catalog(tmp_path)
    assert cat.file.name == COSMOS.name and cat.n == 100
    shutil.copy(COSMOS, tmp_path / "real_galaxy_catalog_25.2.fits")
    with pytest.raises(DataError, match="several catalogues"):
        open_parametric_catalog(tmp_path)
    assert open_parametric_catalog(tmp_path, sample="23.5").n == 100
    assert CosmosParametric(catalog=tmp_path / COSMOS_FITS.name).catalog.n == 100
    (tmp_path / COSMOS.name.replace(".fits", "_selection.fits")).unlink()
    with pytest.raises(DataError, match="GalSim cannot read.*exclusion_level='marginal'"):
        CosmosParametric(catalog=tmp_path / COSMOS.name, exclusion_level="marginal")


# ---------------------------------------------------------------------------- cosmos-parametric
def test_parametric_images_and_params_come_from_the_same_galaxy():
    preset = CosmosParametric(catalog=COSMOS)
    design = preset.design(6, seed=11, survey=WIDE)
    ref_tab = fits.getdata(COSMOS_FITS, 1)
    ref_cat = galsim.COSMOSCatalog(
        COSMOS.name, dir=str(DATA), use_real=False, exclusion_level="none"
    )
    assert len(set(design.rows.tolist())) == 6  # without replacement
    offsets = []
    for i, row in enumerate(design.rows):
        # params are exactly the catalogue values of that row
        want = [ref_tab["mag_auto"][row], ref_tab["flux_radius"][row], ref_tab["zphot"][row]]
        np.testing.assert_array_equal(design.params[i], np.asarray(want, np.float64))
        res = preset.simulate(design, i, seed=11, survey=WIDE)
        # image == a direct GalSim draw of the same row, rotation and PSF
        gal = ref_cat.makeGalaxy(int(row), gal_type="parametric")
        gal = gal.rotate(design.extra["rotation"][i] * galsim.radians)
        psf = galsim.Gaussian(fwhm=design.extra["psf_fwhm"][i])
        ref = galsim.Convolve(gal, psf).drawImage(nx=96, ny=96, scale=0.1).array
        np.testing.assert_allclose(res.image, ref, rtol=0, atol=1e-6 * ref.max())
        ref_psf = psf.drawImage(nx=96, ny=96, scale=0.1).array
        np.testing.assert_allclose(res.psf, ref_psf, atol=1e-7)
        offsets.append(-2.5 * math.log10(res.image.sum()) - design.params[i, 0])
    # Independent of GalSim's indexing: the image flux matches the row's own mag_auto with one
    # zero-point (scatter ~0.1 mag); a shuffled pairing would scatter by magnitudes.
    offsets = np.array(offsets)
    assert np.abs(offsets - np.median(offsets)).max() < 0.3
    shuffled = offsets + design.params[:, 0] - np.roll(design.params[:, 0], 1)
    assert np.abs(shuffled - np.median(shuffled)).max() > 0.3


def test_parametric_with_exclusion_keeps_rows_aligned():
    """GalSim's cuts renumber galaxies; rows must still name the drawn galaxy's table row."""
    preset = CosmosParametric(catalog=COSMOS, exclusion_level="marginal")
    ref_cat = galsim.COSMOSCatalog(
        COSMOS.name, dir=str(DATA), use_real=False, exclusion_level="marginal"
    )
    assert len(ref_cat.orig_index) < 100  # the cut removes rows, so indices shift
    design = preset.design(4, seed=2, survey=WIDE)
    ident = fits.getdata(COSMOS_FITS, 1)["IDENT"]
    for i, row in enumerate(design.rows):
        pos = int(np.flatnonzero(ref_cat.orig_index == row)[0])
        assert ref_cat.getParametricRecord(pos)["IDENT"] == ident[row]
        gal = ref_cat.makeGalaxy(pos, gal_type="parametric")
        gal = gal.rotate(design.extra["rotation"][i] * galsim.radians)
        psf = galsim.Gaussian(fwhm=design.extra["psf_fwhm"][i])
        ref = galsim.Convolve(gal, psf).drawImage(nx=96, ny=96, scale=0.1).array
        res = preset.simulate(design, i, seed=2, survey=WIDE)
        np.testing.assert_allclose(res.image, ref, rtol=0, atol=1e-6 * ref.max())


def test_parametric_determinism_and_replacement():
    preset = CosmosParametric(catalog=COSMOS)
    a, b = preset.design(5, seed=3), preset.design(5, seed=3)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.extra["rotation"], b.extra["rotation"])
    assert not np.array_equal(a.rows, preset.design(5, seed=4).rows)
    # prefix-stable rotations: image i's rotation depends on (seed, i) only
    np.testing.assert_array_equal(
        preset.design(3, seed=3).extra["rotation"], a.extra["rotation"][:3]
    )
    im1 = preset.simulate(a, 2, seed=3).image
    clone = pickle.loads(pickle.dumps(preset))  # what a worker process receives
    np.testing.assert_array_equal(clone.simulate(a, 2, seed=3).image, im1)
    assert preset.stamp_shape() == (64, 64) and preset.pixel_scale() == 0.03
    with pytest.raises(ValueError, match="replace=True"):
        CosmosParametric(catalog=COSMOS, replace=False).design(101, seed=0)
    many = preset.design(150, seed=0)  # auto: with replacement beyond the catalogue size
    assert many.rows.max() < 100 and len(set(many.rows.tolist())) < 150
    with pytest.raises(ValueError, match="n=0"):
        preset.design(0, seed=0)


def test_real_catalog_reads_aligned_fit_columns():
    cat = open_real_catalog(COSMOS, check_files=False)
    tab = fits.getdata(COSMOS_FITS, 1)
    np.testing.assert_array_equal(cat.ident, tab["IDENT"])
    for k in ("mag_auto", "flux_radius", "zphot"):
        np.testing.assert_array_equal(cat.fits[k], np.asarray(tab[k], np.float64))
    np.testing.assert_array_equal(cat.fits["hlr"], np.asarray(tab["hlr"][:, 0], np.float64))
    # COSMOS 23.5 names acs_I_unrot_sci_20_cf.fits, which GalSim ships in its share dir
    assert all(f is not None and f.endswith("acs_I_unrot_sci_20_cf.fits") for f in cat.noise_files)


def test_parametric_weighted_choice():
    """Rows drawn with weights: frequencies follow WEIGHT (chi-square vs the weights)."""
    from scipy import stats

    w = np.asarray(fits.getdata(COSMOS, 1)["WEIGHT"], np.float64)
    w = np.where(np.arange(100) < 10, 5 * w, w)  # make the test sensitive: 10 heavy rows
    from jaxsky.data.real._common import choose_rows

    rows = choose_rows(20000, 100, seed=1, replace=True, weights=w)
    counts = np.bincount(rows, minlength=100)
    assert stats.chisquare(counts, 20000 * w / w.sum()).pvalue > 1e-3
    assert stats.chisquare(counts).pvalue < 1e-6  # and not uniform
    preset = CosmosParametric(catalog=COSMOS, weighted=True)
    assert preset.design(20, seed=1).rows.shape == (20,)


def test_real_galaxies_example(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("skimage")
    out = tmp_path / "gallery.png"
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "examples/real_galaxies.py"), "--out", str(out), "--n", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000 and "wrote" in r.stdout
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # never overwrites
    assert r.returncode != 0 and "--overwrite" in r.stderr


# ---------------------------------------------------------------------------- cosmos-real
def _reference_catalog(tmp_path) -> galsim.RealGalaxyCatalog:
    """The AEGIS catalogue without NOISE_FILENAME: GalSim's documented uncorrelated fallback."""
    t = fits.getdata(AEGIS, 1)
    cols = [t.columns[n] for n in t.columns.names if n != "NOISE_FILENAME"]
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "ref_catalog.fits")
    # An absolute file name with dir=DATA: GalSim reads the table there, the images from DATA.
    return galsim.RealGalaxyCatalog(str(tmp_path / "ref_catalog.fits"), dir=str(DATA))


@pytest.mark.parametrize("noise_pad", [False, True])
def test_real_images_match_direct_galsim(tmp_path, noise_pad):
    preset = _real(noise_pad=noise_pad)
    design = preset.design(4, seed=5, survey=LSST)
    rgc = _reference_catalog(tmp_path)
    mags = fits.getdata(AEGIS, 1)["MAG"]
    pad = math.sqrt(2) * 32 * 0.2 if noise_pad else 0
    for i, row in enumerate(design.rows):
        assert design.params[i, 0] == mags[row]
        res = preset.simulate(design, i, seed=5, survey=LSST)
        rng = galsim.BaseDeviate(int(index_seeds(5, [i], 0)[0]))  # the stored render seed
        gal = galsim.RealGalaxy(rgc, index=int(row), rng=rng, noise_pad_size=pad)
        gal = gal.rotate(design.extra["rotation"][i] * galsim.radians)
        psf = galsim.Moffat(beta=3.5, fwhm=design.extra["psf_fwhm"][i])
        ref = galsim.Convolve(gal, psf).drawImage(nx=32, ny=32, scale=0.2).array
        np.testing.assert_allclose(res.image, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
        np.testing.assert_allclose(res.psf, psf.drawImage(nx=32, ny=32, scale=0.2).array, atol=1e-7)


def test_real_image_flux_is_its_own_stamp_flux():
    """Alignment check independent of GalSim: drawn flux == sum of that row's HST stamp."""
    preset = _real(noise_pad=False)
    big = Survey(name="big", scale=0.2, stamp=64, psf_family="moffat", psf_fwhm=(0.6, 0.9))
    design = preset.design(5, seed=1, survey=big)
    tab = fits.getdata(AEGIS, 1)
    for i, row in enumerate(design.rows):
        stamp = fits.getdata(DATA / tab["GAL_FILENAME"][row].strip(), int(tab["GAL_HDU"][row]))
        flux = preset.simulate(design, i, seed=1, survey=big).image.sum()
        np.testing.assert_allclose(flux, stamp.sum(), rtol=0.005)  # rows differ by >= 3%


def test_real_determinism_psf_check_and_conditions():
    preset = _real()
    d = preset.design(3, seed=9, survey=LSST)
    a = preset.simulate(d, 1, seed=9, survey=LSST).image
    np.testing.assert_array_equal(a, preset.simulate(d, 1, seed=9, survey=LSST).image)
    assert not np.array_equal(a, preset.simulate(d, 1, seed=10, survey=LSST).image)  # noise pad
    sharp = Survey(name="sharp", scale=0.05, stamp=32, psf_family="airy", psf_fwhm=(0.08, 0.1))
    with pytest.raises(ValueError, match="not broader than the HST PSF"):
        preset.design(2, seed=0, survey=sharp)
    fine = Survey(name="fine", scale=0.02, stamp=32, psf_family="gaussian", psf_fwhm=(0.5, 0.6))
    with pytest.raises(ValueError, match="finer than"):
        preset.design(2, seed=0, survey=fine)
    with pytest.raises(DataError, match="provides: mag"):
        _real(conditions=("mag", "zphot"))
    scaled = _real(flux_scale=2.5)
    np.testing.assert_allclose(scaled.simulate(d, 1, seed=9, survey=LSST).image, 2.5 * a, rtol=1e-6)
    with pytest.raises(ValueError, match="flux_scale=0"):
        _real(flux_scale=0)
    assert "uncorrelated" in preset.config()["noise_model"]
    lsst = get_survey("lsst")  # the default conditions
    assert preset.param_names == ("mag",) and preset.stamp_shape() == (lsst.stamp,) * 2
    assert preset.pixel_scale() == lsst.scale


def test_real_design_draws_depend_only_on_seed_and_index():
    """Rotation and PSF FWHM of image i come from index_seeds (purposes 3 and 2): the same
    whatever N, inside their ranges, different per seed, and roughly uniform."""
    preset = _real(replace=True)
    small, big = preset.design(3, seed=9, survey=LSST), preset.design(400, seed=9, survey=LSST)
    for key in ("rotation", "psf_fwhm"):
        np.testing.assert_array_equal(small.extra[key], big.extra[key][:3])
    rot, fwhm = big.extra["rotation"], big.extra["psf_fwhm"]
    assert 0 <= rot.min() and rot.max() < 2 * np.pi and 0.6 <= fwhm.min() and fwhm.max() < 0.9
    # Kolmogorov-Smirnov against uniform: loose, but fails for a constant or a skewed map.
    from scipy.stats import kstest

    assert kstest(rot / (2 * np.pi), "uniform").pvalue > 1e-3
    assert kstest((fwhm - 0.6) / 0.3, "uniform").pvalue > 1e-3
    assert not np.allclose(rot / (2 * np.pi), (fwhm - 0.6) / 0.3)  # independent purposes
    other = preset.design(3, seed=10, survey=LSST)
    assert not np.array_equal(other.extra["rotation"], small.extra["rotation"])
