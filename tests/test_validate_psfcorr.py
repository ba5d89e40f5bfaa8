"""PSF-corrected adaptive moments, the resolution factor, and their use in the shear ring test."""

import galsim
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxsky.validate.psfcorr import batch_corrected_shape, corrected_shape
from jaxsky.validate.shear import (
    paired_bias,
    ring_images,
    rotate_shape,
    shear_calibration,
)

SCALE = 0.2


def _gauss(sigma, g1=0.0, g2=0.0, n=48, psf=None):
    obj = galsim.Gaussian(sigma=sigma, flux=1.0).shear(g1=g1, g2=g2)
    if psf is not None:
        obj = galsim.Convolve(obj, psf)
    return obj.drawImage(nx=n, ny=n, scale=SCALE, method="no_pixel").array.astype(np.float64)


@pytest.mark.parametrize(
    "sig,g,psf_sig,psf_g",
    [(0.5, (0.2, -0.1), 0.4, (0.0, 0.0)), (0.35, (-0.3, 0.25), 0.45, (0.05, -0.03))],
)
def test_gaussians_are_corrected_exactly(x64, sig, g, psf_sig, psf_g):
    """Gaussian galaxy x Gaussian PSF: moments add, so the corrected shape is the galaxy's
    shear and R2 = 1 - T_P / (T_G + T_P) with T of a sheared Gaussian in closed form."""
    psf = galsim.Gaussian(sigma=psf_sig).shear(g1=psf_g[0], g2=psf_g[1])
    image = _gauss(sig, *g, psf=psf)
    psf_im = psf.drawImage(nx=48, ny=48, scale=SCALE, method="no_pixel").array
    r = corrected_shape(jnp.asarray(image), jnp.asarray(psf_im, jnp.float64))
    assert bool(r.converged)
    assert float(r.g1) == pytest.approx(g[0], abs=2e-6)
    assert float(r.g2) == pytest.approx(g[1], abs=2e-6)

    def trace(s, gg):  # tr(s^2 A A^T) for GalSim's area-preserving shear matrix A
        q = gg[0] ** 2 + gg[1] ** 2
        return s**2 * 2 * (1 + q) / (1 - q)

    t_g, t_p = trace(sig, g), trace(psf_sig, psf_g)
    assert float(r.r2) == pytest.approx(1 - t_p / (t_g + t_p), abs=1e-6)
    # GalSim HSM's linear PSF correction has no kurtosis term for Gaussians: same shape
    h = galsim.hsm.EstimateShear(
        galsim.Image(image, scale=SCALE), galsim.Image(psf_im, scale=SCALE), shear_est="LINEAR"
    )
    e1, e2 = float(r.e1), float(r.e2)
    assert (e1, e2) == pytest.approx((h.corrected_e1, h.corrected_e2), abs=2e-4)


def test_batch_matches_single_and_flags_unresolved(x64):
    psf = galsim.Gaussian(sigma=0.4)
    psf_im = psf.drawImage(nx=32, ny=32, scale=SCALE, method="no_pixel").array.astype(float)
    ims = np.stack([_gauss(0.4, 0.1, 0.2, n=32, psf=psf), psf_im, _gauss(0.6, n=32, psf=psf)])
    b = batch_corrected_shape(ims, np.stack([psf_im] * 3))
    one = corrected_shape(jnp.asarray(ims[0]), jnp.asarray(psf_im))
    assert b.g1[0] == pytest.approx(float(one.g1), abs=1e-12)
    assert np.isnan(b.g1[1]) and np.isnan(b.g2[1])  # the PSF itself: T_G = 0, no shape
    assert abs(b.r2[1]) < 1e-9 and 0 < b.r2[0] < b.r2[2] < 1
    with pytest.raises(ValueError, match="psfs"):
        batch_corrected_shape(ims, ims[:2])


def test_gradients(x64):
    psf = galsim.Gaussian(sigma=0.3)
    psf_im = jnp.asarray(psf.drawImage(nx=16, ny=16, scale=SCALE, method="no_pixel").array)
    image = jnp.asarray(_gauss(0.35, 0.15, -0.1, n=16, psf=psf))
    kw = {"n_iter": 20, "guess_sigma": 2.0}

    def f(im, p):
        r = corrected_shape(im, p, **kw)
        return jnp.stack([r.g1, r.g2, r.r2])

    check_grads(jax.jit(f), (image, psf_im), order=1, modes=("rev",), atol=1e-5, rtol=1e-4)
    # the edge of the domain: an image no larger than its PSF has no shape (NaN), and the
    # gradients of R2 and of the masked shape stay finite there and just inside it
    grads = jax.jit(
        jax.grad(
            lambda x: (
                corrected_shape(x, psf_im, **kw).r2
                + jnp.nan_to_num(corrected_shape(x, psf_im, **kw).g1)
            )
        )
    )
    for im in (psf_im, psf_im + 1e-3 * image):
        assert np.all(np.isfinite(grads(im)))


PSF_SIG = 0.45


def _render(theta, a1, a2):
    """GalSim Gaussians (sigma, g1, g2) sheared by (a1, a2), convolved with a round PSF."""
    psf = galsim.Gaussian(sigma=PSF_SIG)
    return np.stack(
        [
            _gauss_sheared(s, g1, g2, x1, x2, psf)
            for (s, g1, g2), x1, x2 in zip(np.asarray(theta), a1, a2)
        ]
    )


def _gauss_sheared(s, g1, g2, x1, x2, psf):
    obj = galsim.Convolve(galsim.Gaussian(sigma=s).shear(g1=g1, g2=g2).shear(g1=x1, g2=x2), psf)
    return obj.drawImage(nx=32, ny=32, scale=SCALE, method="no_pixel").array


_render.rotate = lambda th, ang: np.column_stack([th[:, 0], *rotate_shape(th[:, 1], th[:, 2], ang)])
THETA = np.array([[0.5, 0.3, -0.1], [0.4, -0.2, 0.25], [0.3, 0.05, 0.3], [0.6, 0.0, -0.2]])


def test_ring_with_psf_correction_and_subsets(x64):
    """moments-psf removes the PSF dilution (m ~ 0 for Gaussians); paired_bias on a subset
    and on pre-rendered images equals the full computation."""
    psfs = np.stack(
        [
            galsim.Gaussian(sigma=PSF_SIG)
            .drawImage(nx=32, ny=32, scale=SCALE, method="no_pixel")
            .array
        ]
        * len(THETA)
    )
    images = ring_images(_render, THETA, g=0.02, n_rot=4)
    assert images.shape == (4 * 4 * len(THETA), 32, 32)
    obs = shear_calibration(None, THETA, n_rot=4, images=images)
    full = shear_calibration(_render, THETA, g=0.02, n_rot=4)  # renders the same ring itself
    np.testing.assert_allclose(full.m_gal, obs.m_gal, rtol=0, atol=1e-12)
    cor = shear_calibration(None, THETA, n_rot=4, images=images, method="moments-psf", psfs=psfs)
    assert np.all(obs.m < -0.1)  # observed moments: diluted by the PSF
    assert np.all(np.abs(cor.m) < 2e-3) and np.all(np.abs(cor.c) < 1e-4), (cor.m, cor.c)

    def biased(theta, a1, a2):  # shear response 1% too strong
        return _render(theta, 1.01 * a1, 1.01 * a2)

    biased.rotate = _render.rotate
    im_b = ring_images(biased, THETA, g=0.02, n_rot=4)
    cor_b = shear_calibration(None, THETA, n_rot=4, images=im_b, method="moments-psf", psfs=psfs)
    res = paired_bias(cor, cor_b)
    assert res["n_used"] == len(THETA)
    for k in range(2):  # PSF-corrected: dm itself is the injected 1%, not a diluted one
        assert res["dm"][k] == pytest.approx(0.01, abs=5e-4)
    keep = np.array([True, False, True, False])
    sub = paired_bias(cor, cor_b, keep)
    d = (cor_b.m_gal - cor.m_gal)[keep]
    assert sub["n_selected"] == 2 and sub["dm"] == pytest.approx(d.mean(0).tolist(), abs=1e-15)
    with pytest.raises(ValueError, match="keep"):
        paired_bias(cor, cor_b, keep[:3])
    with pytest.raises(ValueError, match="needs psfs"):
        shear_calibration(None, THETA, n_rot=4, images=images, method="moments-psf")
    with pytest.raises(ValueError, match="method"):
        shear_calibration(None, THETA, n_rot=4, images=images, method="ksb")
    with pytest.raises(ValueError, match="stamps"):
        shear_calibration(None, THETA, n_rot=2, images=images)


def test_psf_per_galaxy_and_precomputed_moments_equal_tiled_psfs(x64):
    """A stack of G galaxies tiled R times with one PSF per galaxy (PSF k % G), or with the
    PSFs' moments measured once, gives the same shapes as the old path (every PSF tiled)."""
    from jaxsky.validate.psfcorr import psf_moments
    from jaxsky.validate.shear import measure_shear

    n = 32
    psf_objs = [galsim.Gaussian(sigma=s).shear(g1=0.03 * i) for i, s in enumerate((0.3, 0.4, 0.5))]
    psfs = np.stack(
        [p.drawImage(nx=n, ny=n, scale=SCALE, method="no_pixel").array for p in psf_objs]
    ).astype(np.float64)
    gal = [(0.45, 0.1, -0.2), (0.6, -0.25, 0.05), (0.35, 0.3, 0.1)]
    ims = np.stack(
        [_gauss(s, g1, g2, n=n, psf=psf_objs[k]) for _ in range(2) for k, (s, g1, g2) in
         enumerate(gal)]
    )  # fmt: skip
    old = batch_corrected_shape(ims, np.concatenate([psfs, psfs]))
    new = batch_corrected_shape(ims, psfs)
    pre = batch_corrected_shape(ims, psf_moments=psf_moments(psfs))
    for a, b, c in zip(old, new, pre):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(old.g1)) and np.ptp(old.r2[:3]) > 0.05  # distinct, resolved
    g_old = measure_shear(ims, method="moments-psf", psfs=np.concatenate([psfs, psfs]))
    g_new = measure_shear(ims, method="moments-psf", psfs=psfs)
    np.testing.assert_allclose(g_new[0], g_old[0], rtol=1e-12)
    np.testing.assert_allclose(g_new[1], g_old[1], rtol=1e-12)
    h_old = measure_shear(ims, method="hsm", psfs=np.concatenate([psfs, psfs]))
    h_new = measure_shear(ims, method="hsm", psfs=psfs)
    assert np.all(np.isfinite(h_old[0])) and not h_old[2]
    np.testing.assert_array_equal(h_new[0], h_old[0])
    np.testing.assert_array_equal(h_new[1], h_old[1])
    with pytest.raises(ValueError, match="divide"):
        batch_corrected_shape(ims[:5], psfs[:2])
    with pytest.raises(ValueError, match="exactly one"):
        batch_corrected_shape(ims, psfs, psf_moments=psf_moments(psfs))
    with pytest.raises(ValueError, match="exactly one"):
        batch_corrected_shape(ims)
