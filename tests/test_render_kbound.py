"""The k-space bound that sets k_fold (``GSObject._kbound_np``) and the plans it gives.

A convolution's |F| / flux is the product of its factors', so the number of Nyquist zones
folded is the fewest kf with that product <= maxk_threshold beyond kf pi / scale; the
smallest factor's maxk (GalSim's choice for a convolution) asks for more. Each profile's
bound is checked against its own transform (JAX ``kvalue``) on rays beyond k, and the
plans' accuracy against tight GalSim computed here.
"""

import math

import jax
import numpy as np
import pytest

import jaxsky
from jaxsky.render import _planning

_THETAS = np.linspace(0.0, np.pi, 13)


def _profiles():
    sheared = jaxsky.Exponential(scale_radius=0.4).shear(g1=0.5, g2=-0.3).shift(0.1, 0.0)
    return {
        "gaussian": jaxsky.Gaussian(fwhm=0.3, flux=2.0),
        "exponential": jaxsky.Exponential(scale_radius=0.3, flux=5.0),
        "sersic_0.3": jaxsky.Sersic(0.3, half_light_radius=0.5),
        "sersic_0.6": jaxsky.Sersic(0.6, half_light_radius=0.5),
        "sersic_2.37": jaxsky.Sersic(2.37, half_light_radius=0.2),
        "sersic_6.2": jaxsky.Sersic(6.2, half_light_radius=0.2),
        "moffat_1.5": jaxsky.Moffat(1.5, fwhm=0.6),
        "moffat_4.3": jaxsky.Moffat(4.3, fwhm=0.6),
        "sheared_shifted": sheared,
        "convolution": jaxsky.Convolve(sheared, jaxsky.Moffat(2.5, fwhm=0.5)),
        "sum": jaxsky.Exponential(scale_radius=0.3) + jaxsky.Gaussian(sigma=0.1),
    }


@pytest.mark.parametrize("name", list(_profiles()))
def test_kbound_bounds_every_direction_beyond_k(x64, name):
    obj = _profiles()[name]
    thr = 1e-5
    ks = np.geomspace(0.05, 400.0, 200)
    bound = np.broadcast_to(np.asarray(obj._kbound_np(ks, thr), float), ks.shape)
    assert np.all(np.isfinite(bound)) and np.all(bound >= 0)
    assert np.all(np.diff(bound) <= 0), "the bound must not increase with k"
    kx = ks[:, None] * np.cos(_THETAS)[None, :]
    ky = ks[:, None] * np.sin(_THETAS)[None, :]
    f = np.abs(np.asarray(obj.kvalue(kx, ky))) / abs(float(obj.flux))
    # |F| at every k' >= k on these rays: the running maximum from the far end.
    beyond = np.maximum.accumulate(f.max(axis=1)[::-1])[::-1]
    # Tables interpolate F: allow their accuracy (kvalue_accuracy ~1e-7) on top of the bound.
    assert np.all(beyond <= bound + 1e-7), np.max(beyond - bound)


def test_convolution_bound_is_the_product_and_tighter_than_maxk():
    rng = np.random.default_rng(1)
    b = 64
    gal = jaxsky.Exponential(scale_radius=rng.uniform(0.1, 1.0, b)).shear(
        g1=rng.uniform(-0.4, 0.4, b), g2=rng.uniform(-0.4, 0.4, b)
    )
    psf = jaxsky.Gaussian(fwhm=rng.uniform(0.2, 0.4, b))
    obj = jax.tree_util.tree_map(np.asarray, jaxsky.Convolve(gal, psf))
    k = np.array([[5.0], [20.0]])
    np.testing.assert_allclose(
        obj._kbound_np(k, 1e-3), obj.objs[0]._kbound_np(k, 1e-3) * obj.objs[1]._kbound_np(k, 1e-3)
    )
    gsp = jaxsky.GSParams(maxk_threshold=1e-3)
    new = _planning._k_folds(obj, 0.2, gsp)
    old = np.maximum(1, np.ceil(np.asarray(obj._maxk_np(1e-3)) * 0.2 / math.pi))
    assert np.all(new <= old) and np.any(new < old)


@pytest.mark.parametrize("thr", [1e-3, 1e-5])
def test_k_fold_is_the_fewest_zones_that_meet_the_threshold(x64, thr):
    # Paper-like galaxies: at kf pi / scale every direction is below the threshold; at
    # (kf - 1) pi / scale some direction is not (closed forms: the bound is attained).
    rng = np.random.default_rng(2)
    b, scale = 40, 0.2
    gal = jaxsky.Exponential(scale_radius=rng.uniform(0.1, 1.0, b)).shear(
        g1=rng.uniform(-0.4, 0.4, b), g2=rng.uniform(-0.4, 0.4, b)
    )
    obj = jaxsky.Convolve(gal, jaxsky.Gaussian(fwhm=rng.uniform(0.2, 0.4, b)))
    kf = _planning._k_folds(
        jax.tree_util.tree_map(np.asarray, obj), scale, jaxsky.GSParams(maxk_threshold=thr)
    )
    thetas = np.linspace(0.0, np.pi, 721)
    for i in range(b):
        one = jax.tree_util.tree_map(lambda x, i=i: x[i] if np.ndim(x) else x, obj)

        def peak_at(k, one=one):
            f = one.kvalue(k * np.cos(thetas), k * np.sin(thetas))
            return float(np.abs(np.asarray(f)).max()) / float(one.flux)

        assert peak_at(kf[i] * math.pi / scale) <= thr
        if kf[i] > 1:
            assert peak_at((kf[i] - 1) * math.pi / scale) > thr * (1 - 1e-6)


def test_fewer_zones_still_match_tight_galsim(x64):
    galsim = pytest.importorskip("galsim")
    # Exponential x small Gaussian PSF: the product bound folds fewer zones than the PSF's
    # own maxk asks for; the draw still meets the 1e-4-of-peak target against tight GalSim.
    tight = galsim.GSParams(folding_threshold=1e-4, maxk_threshold=1e-5, kvalue_accuracy=1e-7)
    cases = [(0.35, 0.2, 0.3, -0.2), (0.6, 0.25, -0.5, 0.1), (0.8, 0.35, 0.2, 0.4)]
    for r0, fwhm, g1, g2 in cases:
        obj = jaxsky.Convolve(
            jaxsky.Exponential(scale_radius=r0, flux=1e4).shear(g1=g1, g2=g2),
            jaxsky.Gaussian(fwhm=fwhm),
        )
        plan = jaxsky.make_plan(obj, 33, 33, 0.2)
        old = math.ceil(float(obj._maxk_np(1e-5)) * 0.2 / math.pi)
        assert plan.k_fold < old
        img = np.asarray(jaxsky.draw(obj, nx=33, ny=33, scale=0.2, plan=plan))
        ref = (
            galsim.Convolve(
                galsim.Exponential(scale_radius=r0, flux=1e4).shear(g1=g1, g2=g2),
                galsim.Gaussian(fwhm=fwhm),
                gsparams=tight,
            )
            .drawImage(nx=33, ny=33, scale=0.2)
            .array
        )
        err = np.abs(img - ref).max() / ref.max()
        assert err <= 1e-4, (r0, fwhm, plan, err)
        assert abs(img.sum() - ref.sum()) / ref.sum() <= 1e-4
