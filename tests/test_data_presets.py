"""Analytic presets and surveys against direct GalSim draws computed here."""

import math

import galsim
import numpy as np
import pytest

from jaxsky.data import get_preset, simulate
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
