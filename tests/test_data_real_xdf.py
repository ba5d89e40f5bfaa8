"""The xdf preset: detection, blend rejection, centring and measurements on a GalSim scene."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.io import fits

from jaxsky.data.presets.base import Survey
from jaxsky.data.real import XDF
from jaxsky.errors import DataError

SCALE = 0.1
SIGMA = 0.01
LSST = Survey(
    name="lsst", scale=0.2, stamp=32, psf_family="moffat", psf_fwhm=(0.6, 0.9), psf_beta=3.5
)
# Isolated galaxies (profile, 0-based x, y pixel position) and a blended pair.
ISOLATED = [
    (galsim.Exponential(half_light_radius=0.4, flux=100.0).shear(g1=0.2, g2=-0.1), 50.3, 60.7),
    (galsim.Gaussian(sigma=0.25, flux=60.0).shear(g1=-0.15, g2=0.25), 140.6, 50.2),
    (galsim.Exponential(half_light_radius=0.3, flux=80.0).shear(g1=0.0, g2=0.3), 60.2, 150.4),
]
PAIR = [
    (galsim.Exponential(half_light_radius=0.35, flux=70.0), 150.0, 150.0),
    (galsim.Exponential(half_light_radius=0.3, flux=50.0), 156.5, 152.0),
]


def _scene(path, *, galaxies=ISOLATED + PAIR, header_scale=True):
    """A 200x200 field: galaxies drawn by GalSim at sub-pixel positions, sky 0.5, noise SIGMA."""
    img = galsim.ImageD(200, 200, scale=SCALE)
    for gal, x, y in galaxies:
        # GalSim's pixel (i, j) 1-based has centre i; our positions are 0-based array indices.
        pos = galsim.PositionD(x + 1, y + 1)
        stamp = gal.drawImage(nx=64, ny=64, scale=SCALE, center=pos)
        b = stamp.bounds & img.bounds
        img[b] += stamp[b]
    rng = np.random.default_rng(1)
    arr = img.array + 0.5 + SIGMA * rng.standard_normal(img.array.shape)
    hdu = fits.PrimaryHDU(arr)
    if header_scale:
        hdu.header["CD2_2"] = SCALE / 3600.0
    hdu.writeto(path)
    return path


def _match(preset, k):
    """The ISOLATED entry nearest to accepted source k (and its distance in pixels)."""
    x, y = preset.cutouts.position[k]
    d = [np.hypot(x - gx, y - gy) for _, gx, gy in ISOLATED]
    return ISOLATED[int(np.argmin(d))], float(min(d))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return _scene(tmp_path_factory.mktemp("xdf") / "scene.fits")


def test_detection_rejects_blends_and_measures_the_right_galaxy(scene):
    preset = XDF(catalog=scene, stamp=32)
    cut = preset.cutouts
    assert len(cut.params) == 3  # the three isolated galaxies, not the pair
    assert cut.rejected["blend"] == 2 and cut.scale == pytest.approx(SCALE)
    assert list(cut.params[:, 0]) == sorted(cut.params[:, 0], reverse=True)  # flux-descending
    for k in range(3):
        (gal, gx, gy), dist = _match(preset, k)
        assert dist < 0.05  # adaptive-moment centroid at the drawn position
        ref = gal.drawImage(nx=64, ny=64, scale=SCALE)  # noiseless reference, centred
        flux, hlr, g1, g2 = cut.params[k]
        assert flux == pytest.approx(gal.flux, rel=0.03)
        # circular half-light radius of the pixel-convolved profile, from a 10x finer draw
        fine = galsim.Convolve(gal, galsim.Pixel(SCALE)).drawImage(
            nx=640, ny=640, scale=SCALE / 10, method="no_pixel"
        )
        assert hlr == pytest.approx(fine.calculateHLR(), rel=0.03)
        shape = galsim.hsm.FindAdaptiveMom(ref).observed_shape
        assert abs(g1 - shape.g1) < 0.02 and abs(g2 - shape.g2) < 0.02


def test_native_images_are_centred_and_belong_to_their_params(scene):
    preset = XDF(catalog=scene, stamp=32)
    design = preset.design(3, seed=0)
    assert preset.stamp_shape() == (32, 32)
    for i, k in enumerate(design.rows):
        np.testing.assert_array_equal(design.params[i], preset.cutouts.params[k])
        (gal, gx, gy), _ = _match(preset, k)
        assert abs(design.extra["field_x"][i] - gx) < 0.05
        assert abs(design.extra["field_y"][i] - gy) < 0.05
        res = preset.simulate(design, i, seed=0)
        ref = gal.drawImage(nx=32, ny=32, scale=SCALE).array  # the same galaxy, centred
        resid = res.image - ref
        assert np.sqrt(np.mean(resid**2)) < 2 * SIGMA, f"image {i} is not galaxy {k}"
        mom = galsim.hsm.FindAdaptiveMom(galsim.Image(res.image.astype(np.float64), scale=1.0))
        centre = galsim.Image(res.image, scale=1.0).true_center
        assert abs(mom.moments_centroid.x - centre.x) < 0.05
        assert abs(mom.moments_centroid.y - centre.y) < 0.05


def test_psf_matched_images_match_galsim(scene):
    preset = XDF(catalog=scene, stamp=32)
    design = preset.design(3, seed=1, survey=LSST)
    for i, k in enumerate(design.rows):
        (gal, _, _), _ = _match(preset, k)
        res = preset.simulate(design, i, seed=1, survey=LSST)
        psf = galsim.Moffat(beta=3.5, fwhm=design.extra["psf_fwhm"][i])
        ref = galsim.Convolve(gal, psf).drawImage(nx=32, ny=32, scale=0.2).array
        # differences: the native 0.1" pixel (not deconvolved) and the scene's noise
        assert np.abs(res.image - ref).max() < 0.015 * ref.max()
        np.testing.assert_allclose(res.psf, psf.drawImage(nx=32, ny=32, scale=0.2).array, atol=1e-7)
    fine = Survey(name="fine", scale=0.05, stamp=32, psf_family="gaussian", psf_fwhm=(0.5, 0.6))
    with pytest.raises(ValueError, match="finer than"):
        preset.design(2, seed=0, survey=fine)
    sharp = Survey(name="sharp", scale=0.1, stamp=32, psf_family="gaussian", psf_fwhm=(0.1, 0.2))
    with pytest.raises(ValueError, match="two native pixels"):
        preset.design(2, seed=0, survey=sharp)


def test_determinism(scene):
    a, b = XDF(catalog=scene), XDF(catalog=scene)
    np.testing.assert_array_equal(a.cutouts.params, b.cutouts.params)
    da, db = a.design(5, seed=3), b.design(5, seed=3)  # n > 3 sources: with replacement
    np.testing.assert_array_equal(da.rows, db.rows)
    np.testing.assert_array_equal(a.simulate(da, 4, seed=3).image, b.simulate(db, 4, seed=3).image)


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        XDF(catalog=tmp_path / "none.fits")
    with pytest.raises(DataError, match="no pixel scale"):
        XDF(catalog=_scene(tmp_path / "noscale.fits", header_scale=False))
    assert XDF(catalog=tmp_path / "noscale.fits", scale=SCALE).cutouts.scale == SCALE
    table = tmp_path / "table.fits"
    fits.BinTableHDU.from_columns([fits.Column(name="A", format="D", array=[1.0])]).writeto(table)
    with pytest.raises(DataError, match="no 2-D image"):
        XDF(catalog=table)
    (tmp_path / "junk.fits").write_bytes(b"junk" * 100)
    with pytest.raises(DataError, match="not a readable FITS"):
        XDF(catalog=tmp_path / "junk.fits")
    with pytest.raises(DataError, match="no isolated source"):
        XDF(catalog=_scene(tmp_path / "empty.fits", galaxies=PAIR))


def test_skimage_xdf():
    pytest.importorskip("skimage")
    pytest.importorskip("sep")
    preset = XDF()  # the composite ships in the scikit-image wheel: no download
    cfg = preset.config()
    assert cfg["n_accepted"] >= 50 and "not calibrated" in cfg["caveats"]
    assert np.all(np.isfinite(preset.cutouts.params)) and np.all(preset.cutouts.params[:, 1] > 0)
    design = preset.design(4, seed=0)
    for i in range(4):
        img = preset.simulate(design, i, seed=0).image.astype(np.float64)
        assert img.shape == (32, 32) and np.isfinite(img).all()
        mom = galsim.hsm.FindAdaptiveMom(galsim.Image(img, scale=1.0))
        assert abs(mom.moments_centroid.x - 16.5) < 0.1 and abs(mom.moments_centroid.y - 16.5) < 0.1
