"""Analytic presets and surveys against direct GalSim draws computed here."""

import math

import galsim
import numpy as np
import pytest

from jaxsky.data import get_preset, simulate
from jaxsky.data.design import index_seeds
from jaxsky.data.presets import _stamp
from jaxsky.data.presets._stamp import Stamp
from jaxsky.data.presets.analytic import airy_fwhm_unit
from jaxsky.data.surveys import SURVEYS
from jaxsky.errors import UserError


def _galsim_psf(family, fwhm, beta=3.5, obsc=0.0):
    if family == "gaussian":
        return galsim.Gaussian(fwhm=fwhm)
    if family == "moffat":
        return galsim.Moffat(beta=beta, fwhm=fwhm)
    lod = fwhm / airy_fwhm_unit(obsc)
    return galsim.Airy(lam_over_diam=lod, obscuration=obsc)


def _reference(name, v, seed_i):
    """The galaxy of one stored parameter row, built from the preset's documented definition."""
    if name == "paper":
        return galsim.Exponential(scale_radius=v["scale_radius"], flux=v["flux"])
    if name == "sersic":
        return galsim.Sersic(v["n"], half_light_radius=v["half_light_radius"], flux=v["flux"])
    bulge = galsim.DeVaucouleurs(half_light_radius=v["bulge_hlr"])
    disk = galsim.Exponential(half_light_radius=v["disk_hlr"])
    f, bf, kf = v["flux"], v["bulge_fraction"], v.get("knot_fraction", 0.0)
    parts = [bulge.withFlux(f * bf), disk.withFlux(f * (1 - bf) * (1 - kf))]
    if "knot_fraction" in v:
        rng = galsim.BaseDeviate(int(seed_i))
        parts.append(
            galsim.RandomKnots(50, half_light_radius=v["disk_hlr"], flux=f * (1 - bf) * kf, rng=rng)
        )
    return galsim.Add(parts)


@pytest.mark.parametrize(
    "name, shape, scale",
    [
        ("paper", 33, 0.2),
        ("sersic", 64, 0.2),
        ("bulge-disk", 48, 0.2),
        ("bulge-disk-knots", 48, 0.2),
    ],
)
def test_preset_matches_direct_galsim(name, shape, scale):
    ds = simulate(name, 8, seed=11)
    assert ds.images.shape == (8, shape, shape) and ds.psfs.shape == (8, shape, shape)
    assert ds.scale == scale and np.all(ds.noise_sigma == 0)
    for i in range(len(ds)):
        v = dict(zip(ds.param_names, ds.params[i]))
        lo_hi = np.array([ds.ranges[k] for k in ds.param_names])
        assert np.all((ds.params[i] >= lo_hi[:, 0]) & (ds.params[i] <= lo_hi[:, 1]))
        gal = _reference(name, v, ds.meta["render_seeds"][i]).shear(g1=v["g1"], g2=v["g2"])
        family = "gaussian" if name == "paper" else "moffat"
        psf = _galsim_psf(family, v["psf_fwhm"], v.get("psf_beta", 3.5))
        ref = galsim.Convolve(gal, psf).drawImage(nx=shape, ny=shape, scale=scale).array
        # Same GalSim calls -> equal to float32 rounding.
        np.testing.assert_allclose(ds.images[i], ref, rtol=0, atol=1e-6 * ref.max())
        ref_psf = psf.drawImage(nx=shape, ny=shape, scale=scale).array
        np.testing.assert_allclose(ds.psfs[i], ref_psf, rtol=0, atol=1e-6 * ref_psf.max())


@pytest.mark.parametrize(
    "name, survey",
    [("paper", None), ("sersic", None), ("bulge-disk-knots", None), ("paper", "euclid-vis")],
)
def test_simulate_range_is_drawimage_bit_for_bit(name, survey):
    # The generator's reused-stamp path against GalSim's own drawImage of the same objects.
    p = get_preset(name)
    sv = SURVEYS[survey] if survey else None
    d = p.design(4, seed=3, survey=sv)
    ims, pss = p.simulate_range(d, 1, 4, seed=3, survey=sv)
    ny, nx = p.stamp_shape(sv)
    scale = p.pixel_scale(sv)
    pix = galsim.Pixel(scale)
    seeds = index_seeds(3, np.arange(1, 4), 0)
    for j, i in enumerate(range(1, 4)):
        v = dict(zip(p._names(sv), d.params[i]))
        gal, psf = p.galsim_galaxy(v, rng_seed=int(seeds[j])), p.galsim_psf(v, sv)
        im = galsim.ImageF(nx, ny, scale=scale)
        ref = galsim.Convolve(gal, psf, pix).drawImage(image=im, method="no_pixel").array
        np.testing.assert_array_equal(ims[j], ref)
        ref_psf = galsim.Convolve(psf, pix).drawImage(image=im, method="no_pixel").array
        np.testing.assert_array_equal(pss[j], ref_psf)


def test_simulate_range_into_reused_arrays():
    p = get_preset("paper")
    d = p.design(5, seed=1)
    ref = p.simulate_range(d, 0, 5, seed=1)
    out = (np.full((4, 33, 33), np.nan, np.float32), np.full((4, 33, 33), np.nan, np.float32))
    a = p.simulate_range(d, 0, 4, seed=1, out=out)
    assert a[0].base is out[0] and np.array_equal(a[0], ref[0][:4])
    b = p.simulate_range(d, 4, 5, seed=1, out=out)  # a short last chunk: leading rows only
    np.testing.assert_array_equal(b[0], ref[0][4:])
    np.testing.assert_array_equal(b[1], ref[1][4:])
    with pytest.raises(ValueError, match="cannot hold"):
        p.simulate_range(d, 0, 5, seed=1, out=out)


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize("nx, ny", [(33, 33), (32, 21)])
def test_stamp_draw_is_drawimage(nx, ny, lean):
    # Real-space (analytic_x) and FFT profiles of different FFT sizes, off-centre, odd and even
    # stamps, one stamp reused for all.
    stamp = Stamp(nx, ny, 0.3, lean=lean)
    pix, psf = galsim.Pixel(0.3), galsim.Moffat(beta=3, fwhm=0.8)
    objs = [galsim.Gaussian(sigma=0.7).shift(0.13, -0.4)]
    for hlr, g1 in ((0.9, 0.3), (0.2, -0.5), (2.5, 0.1), (0.9, 0.0)):
        gal = galsim.Exponential(half_light_radius=hlr).shear(g1=g1, g2=-0.1)
        objs.append(galsim.Convolve(gal, psf, pix).shift(0.2, 0.05))
    objs.append(galsim.Convolve(galsim.Sersic(3.1, half_light_radius=0.5), psf, pix))
    for obj in objs:
        ref = obj.drawImage(nx=nx, ny=ny, scale=0.3, method="no_pixel").array
        np.testing.assert_array_equal(stamp.draw(obj), ref)


def test_lean_path_active_and_falls_back(monkeypatch):
    # Active on the supported GalSim (if this fails after a GalSim upgrade, generation still
    # gives the same pixels through the public drawFFT, only slower).
    assert _stamp.lean_ok()
    # A GalSim whose internals changed: the self-check fails and the public path is used.
    monkeypatch.setattr(_stamp, "_OK", {})
    monkeypatch.setattr(galsim._galsim, "irfft", None)
    assert not _stamp.lean_ok() and not Stamp(33, 33, 0.2)._lean
    obj = galsim.Convolve(galsim.Exponential(scale_radius=0.5), galsim.Pixel(0.2))
    monkeypatch.undo()  # the public drawFFT needs irfft
    ref = obj.drawImage(nx=33, ny=33, scale=0.2, method="no_pixel").array
    np.testing.assert_array_equal(Stamp(33, 33, 0.2, lean=False).draw(obj), ref)


def test_paper_ranges_and_shear_box():
    p = get_preset("paper")
    assert p.param_names == ("flux", "scale_radius", "g1", "g2", "psf_fwhm")
    assert p.ranges() == {
        "flux": (1e4, 1e5),
        "scale_radius": (0.1, 1.0),
        "g1": (-0.5, 0.5),
        "g2": (-0.5, 0.5),
        "psf_fwhm": (0.2, 0.4),
    }


def test_disc_shear_presets_stay_inside():
    d = get_preset("sersic").design(128, seed=0)
    g = np.hypot(d.params[:, 3], d.params[:, 4])
    assert g.max() < 0.6 and g.min() >= 0


def test_knots_are_stochastic_but_seeded():
    a = simulate("bulge-disk-knots", 4, seed=1)
    b = simulate("bulge-disk-knots", 4, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert len(set(a.meta["render_seeds"])) == 4


@pytest.mark.parametrize("survey", sorted(SURVEYS))
def test_survey_conditions(survey):
    s = SURVEYS[survey]
    ds = simulate("paper", 3, seed=2, survey=survey)
    assert ds.images.shape == (3, s.stamp, s.stamp) and ds.scale == s.scale
    lo, hi = ds.ranges["psf_fwhm"]
    assert (lo, hi) == s.psf_fwhm
    # Background-limited sky noise from the cited numbers, recomputed here.
    sky, zp, texp = s.sky_brightness, s.zeropoint, s.exposure_time
    sigma = math.sqrt(texp * 10 ** (-0.4 * (sky - zp)) * s.scale**2)
    np.testing.assert_allclose(ds.noise_sigma, sigma, rtol=1e-5)
    v = dict(zip(ds.param_names, ds.params[0]))
    psf = _galsim_psf(s.psf_family, v["psf_fwhm"], s.psf_beta, s.obscuration)
    ref = psf.drawImage(nx=s.stamp, ny=s.stamp, scale=s.scale).array
    np.testing.assert_allclose(ds.psfs[0], ref, atol=1e-6 * ref.max())
    # Noisy realisations are reproducible and have the stated sigma.
    n1, n2 = ds.noisy([0]), ds.noisy([0])
    np.testing.assert_array_equal(n1, n2)
    assert abs(np.std(n1[0] - ds.images[0]) / sigma - 1) < 0.2


@pytest.mark.parametrize("obsc", [0.0, 0.13, 0.33])
def test_airy_fwhm(obsc):
    # The half-maximum radius of GalSim's own obscured Airy profile.
    fwhm = airy_fwhm_unit(obsc)
    airy = galsim.Airy(lam_over_diam=1.0, obscuration=obsc)
    ratio = airy.xValue(galsim.PositionD(fwhm / 2, 0)) / airy.xValue(galsim.PositionD(0, 0))
    assert abs(ratio - 0.5) < 1e-6


def test_jaxsky_backend_matches_galsim():
    a = simulate("paper", 4, seed=5)
    b = simulate("paper", 4, seed=5, backend="jaxsky")
    np.testing.assert_array_equal(a.params, b.params)
    peak = a.images.max(axis=(1, 2), keepdims=True)
    assert np.max(np.abs(a.images - b.images) / peak) < 1e-3
    assert np.max(np.abs(a.psfs - b.psfs)) < 1e-3 * a.psfs.max()


def test_jaxsky_backend_refused_where_not_validated():
    with pytest.raises(UserError, match="jaxsky backend"):
        simulate("bulge-disk", 2, seed=0, backend="jaxsky")
    with pytest.raises(UserError, match="jaxsky backend"):
        simulate("paper", 2, seed=0, survey="euclid-vis", backend="jaxsky")


def test_holdout_stream():
    a = simulate("paper", 4, seed=5)
    b = simulate("paper", 4, seed=5, stream=1)
    assert not np.isin(a.params, b.params).any()


def test_jax_free_sersic_range_matches_renderer():
    from jaxsky.data.presets import analytic
    from jaxsky.render import SERSIC_N_RANGE

    assert tuple(analytic.SERSIC_N_RANGE) == tuple(SERSIC_N_RANGE)
