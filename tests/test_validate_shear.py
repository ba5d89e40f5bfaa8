"""Shear calibration m/c: GalSim against itself, and a model with a known injected bias."""

import galsim
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsky.render import Convolve, Exponential, Gaussian, draw_batch
from jaxsky.validate.shear import (
    compare_shear_calibration,
    compose_shear,
    param_shear_renderer,
    rotate_shape,
    shear_calibration,
)

NAMES = ("sigma", "g1", "g2")
# round Gaussians of sigma (arcsec) with intrinsic shapes up to |g| = 0.4; 32x32 at 0.2"
THETA = np.array(
    [[0.5, 0.3, -0.1], [0.4, -0.2, 0.25], [0.45, 0.05, 0.4], [0.35, -0.35, -0.15], [0.5, 0.1, 0.0]]
)


def galsim_render(theta, a1, a2):
    """GalSim reference: the intrinsic shear, then the applied shear, on the profile itself."""
    out = []
    for (s, g1, g2), x1, x2 in zip(theta, a1, a2):
        obj = galsim.Gaussian(sigma=s, flux=100.0).shear(g1=g1, g2=g2).shear(g1=x1, g2=x2)
        out.append(obj.drawImage(nx=32, ny=32, scale=0.2, method="no_pixel").array)
    return np.stack(out)


galsim_render.rotate = lambda th, ang: np.column_stack(
    [th[:, 0], *rotate_shape(th[:, 1], th[:, 2], ang)]
)


def jaxsky_predict(theta):
    """A 'model' mapping theta -> images with the jaxsky renderer (parameters are the g's)."""
    t = jnp.asarray(theta)
    gal = Gaussian(sigma=t[:, 0], flux=jnp.full(len(t), 100.0)).shear(g1=t[:, 1], g2=t[:, 2])
    return np.asarray(draw_batch(gal, nx=32, ny=32, scale=0.2, method="no_pixel"))


def test_compose_shear_matches_galsim():
    for g, a in [((0.3, -0.1), (0.02, 0.02)), ((-0.5, 0.4), (-0.02, 0.01))]:
        ref = galsim.Shear(g1=a[0], g2=a[1]) + galsim.Shear(g1=g[0], g2=g[1])
        ours = compose_shear(*g, *a)
        # GalSim's sum s1 + s2 applies s2 first, then s1
        assert ours[0] == pytest.approx(ref.g1, abs=1e-12)
        assert ours[1] == pytest.approx(ref.g2, abs=1e-12)


def test_galsim_against_itself_is_unbiased(x64):
    cal = shear_calibration(galsim_render, THETA, g=0.02, n_rot=4)
    assert cal.n_failed == 0
    for k in range(2):  # m = c = 0 within 3 standard errors (and errors are small)
        assert abs(cal.m[k]) < 3 * cal.m_err[k] + 1e-5, (cal.m, cal.m_err)
        assert abs(cal.c[k]) < 3 * cal.c_err[k] + 1e-6, (cal.c, cal.c_err)
        assert cal.m_err[k] < 1e-3


def test_injected_bias_is_recovered(x64):
    model = param_shear_renderer(jaxsky_predict, NAMES)
    m_inj, c_inj = 0.01, (2e-3, -1e-3)

    def biased(theta, a1, a2):
        return model(theta, (1 + m_inj) * a1 + c_inj[0], (1 + m_inj) * a2 + c_inj[1])

    biased.rotate = model.rotate
    res = compare_shear_calibration(galsim_render, biased, THETA, g=0.02, n_rot=4)
    for k in range(2):
        assert res["dm"][k] == pytest.approx(m_inj, abs=max(3 * res["dm_err"][k], 2e-4))
        assert res["dc"][k] == pytest.approx(c_inj[k], abs=max(3 * res["dc_err"][k], 2e-5))
        # no PSF here: GalSim's m ~ 0, so the relative responsivity bias is the injected m too
        assert res["dm_rel"][k] == pytest.approx(m_inj, abs=max(3 * res["dm_rel_err"][k], 3e-4))
    # the unbiased jaxsky model against GalSim: no difference
    same = compare_shear_calibration(galsim_render, model, THETA, g=0.02, n_rot=4)
    assert np.all(np.abs(same["dm"]) < 1e-4) and np.all(np.abs(same["dc"]) < 1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="g1"):
        param_shear_renderer(jaxsky_predict, ("sigma", "e1", "e2"))
    with pytest.raises(ValueError, match="n_rot"):
        shear_calibration(galsim_render, THETA, n_rot=3)


def test_paper_preset_reference_vs_jaxsky_model(x64):
    """The GalSim `paper` preset against the jaxsky renderer through composed theta: dm ~ 0."""
    from jaxsky.data import Dataset
    from jaxsky.data.presets import get_preset
    from jaxsky.testing import PAPER_RANGES
    from jaxsky.validate.shear import calibration_thetas, preset_shear_renderer

    preset = get_preset("paper")
    rng = np.random.default_rng(1)  # only the parameter table matters for the selection
    params = np.column_stack([rng.uniform(*PAPER_RANGES[k], 30) for k in PAPER_RANGES])
    data = Dataset.from_arrays(np.ones((30, 4, 4)), params, tuple(PAPER_RANGES), scale=0.2)
    theta = calibration_thetas(data, 3)
    assert np.all(np.hypot(theta[:, 2], theta[:, 3]) < 0.46)

    def predict(th):
        t = jnp.asarray(th)
        gal = Exponential(flux=t[:, 0], scale_radius=t[:, 1]).shear(g1=t[:, 2], g2=t[:, 3])
        return draw_batch(Convolve(gal, Gaussian(fwhm=t[:, 4])), nx=33, ny=33, scale=0.2)

    model = param_shear_renderer(predict, data.param_names)
    assert calibration_thetas(data, 100).shape[1] == 5
    res = compare_shear_calibration(preset_shear_renderer(preset), model, theta, n_rot=2)
    for k in range(2):  # renderer matches GalSim to ~1e-5 of the peak
        assert abs(res["dm"][k]) < max(3 * res["dm_err"][k], 1e-4)
        assert abs(res["dc"][k]) < max(3 * res["dc_err"][k], 1e-5)


def test_hsm_ring_with_each_galaxys_psf(x64):
    """PSF-corrected (HSM re-Gaussianization) ring test with per-galaxy PSF images on a
    `paper` variant whose PSF is resolved (FWHM 2.5-3.5 px): renderer minus GalSim dm ~ 0,
    and GalSim's own m is a PSF-corrected one (far from the ~-0.1 to -0.8 moment dilution)."""
    from jaxsky.data.presets import get_preset
    from jaxsky.validate.shear import preset_psf_images, preset_shear_renderer

    preset = get_preset("paper", ranges={"psf_fwhm": (0.5, 0.7)})
    # flux, scale radius 0.5-0.8" (resolved), intrinsic shapes, PSF FWHM
    theta = np.array(
        [[3e4, 0.6, 0.2, -0.1, 0.6], [5e4, 0.8, -0.15, 0.2, 0.5], [2e4, 0.5, 0.0, 0.3, 0.7]]
    )
    psfs = preset_psf_images(preset, theta)
    assert psfs.shape == (3, 33, 33) and np.allclose(psfs.sum(axis=(1, 2)), 1, atol=1e-3)

    def predict(th):
        t = jnp.asarray(th)
        gal = Exponential(flux=t[:, 0], scale_radius=t[:, 1]).shear(g1=t[:, 2], g2=t[:, 3])
        return draw_batch(Convolve(gal, Gaussian(fwhm=t[:, 4])), nx=33, ny=33, scale=0.2)

    model = param_shear_renderer(predict, preset.param_names)
    ref = preset_shear_renderer(preset)
    res = compare_shear_calibration(ref, model, theta, n_rot=2, method="hsm", psfs=psfs)
    assert res["reference"]["n_failed"] == 0 and res["model"]["n_failed"] == 0
    assert abs(res["reference"]["m1"]) < 0.05 and abs(res["reference"]["m2"]) < 0.05
    moments = shear_calibration(ref, theta, n_rot=2)
    assert np.all(moments.m < -0.1)  # observed moments are PSF-diluted

    def biased(th, a1, a2):  # a model whose response to shear is 1% too strong
        return model(th, 1.01 * a1, 1.01 * a2)

    biased.rotate = model.rotate
    obs = compare_shear_calibration(ref, biased, theta, n_rot=2)
    for k in range(2):  # observed moments: dm is diluted, dm_rel undoes the dilution
        assert obs["dm"][k] == pytest.approx(0.01 * (1 + moments.m[k]), rel=0.1)
        assert obs["dm_rel"][k] == pytest.approx(0.01, rel=0.02)
    for k in range(2):
        assert abs(res["dm"][k]) < max(3 * res["dm_err"][k], 1e-3)
        assert abs(res["dc"][k]) < max(3 * res["dc_err"][k], 1e-4)
    with pytest.raises(ValueError, match="psfs"):
        shear_calibration(ref, theta, n_rot=2, method="hsm")
    with pytest.raises(ValueError, match="columns"):
        preset_psf_images(preset, theta[:, :4])
