"""The forward draw's speed paths: b_n spline, alias interpolation, zone fold as a product."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps
from jax.test_util import check_grads

import jaxsky
from jaxsky.render import _alias, _factored
from jaxsky.render.drawing import DrawPlan
from jaxsky.render.profiles import SERSIC_N_RANGE, _sersic_b_fast, sersic_b


def test_sersic_b_fast_matches_gammaincinv(x64):
    n = np.linspace(*SERSIC_N_RANGE, 2001)
    b = np.asarray(_sersic_b_fast(jnp.asarray(n)))
    ref = sps.gammaincinv(2.0 * n, 0.5)  # P(2n, b_n) = 1/2
    np.testing.assert_allclose(b, ref, rtol=1e-8)
    # Its derivative against the implicit-function derivative of sersic_b.
    nn = jnp.asarray(n[::100])
    g = jax.vmap(jax.grad(_sersic_b_fast))(nn)
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.vmap(jax.grad(sersic_b))(nn)), 2e-6)


def test_sersic_b_fast_grads_and_edges(x64):
    check_grads(_sersic_b_fast, (jnp.asarray(2.3),), order=2, modes=("fwd", "rev"))
    for n in SERSIC_N_RANGE:
        v, g = jax.value_and_grad(_sersic_b_fast)(jnp.asarray(n))
        assert np.isfinite(v) and np.isfinite(g) and g > 0


def test_sersic_xvalue_uses_exact_b(x64):
    # Graham & Driver (2005) I(r) with scipy's b_n.
    n, re, flux = 0.7, 0.8, 2.0
    r = np.array([0.0, 0.3, 1.0, 4.0])
    b = sps.gammaincinv(2 * n, 0.5)
    i0 = flux * b ** (2 * n) / (2 * np.pi * n * re * re * sps.gamma(2 * n))
    ref = i0 * np.exp(-b * (r / re) ** (1 / n))
    got = jaxsky.Sersic(n, half_light_radius=re, flux=flux).xvalue(jnp.asarray(r), 0.0 * r)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-9)


@pytest.mark.parametrize("n", [33, 64])
def test_coarse_interp_is_cubic_exact(n):
    # Catmull-Rom with quadratic ghost nodes reproduces quadratics exactly, edges included.
    for step, least in (_alias._NEAR, _alias._FAR):
        w, xc = _alias._coarse_interp(n, 0.2, step, least)
        x = (np.arange(n) - 0.5 * (n - 1)) * 0.2
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
        for f in (lambda t: 1.0 + 0.0 * t, lambda t: t, lambda t: 3.0 * t * t - t):
            np.testing.assert_allclose(w @ f(xc), f(x), atol=1e-12)
        assert len(xc) - 1 >= least


def _exact_correction(obj, plan):
    r = plan.alias_rings
    ring1 = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j]
    out = _alias._ring_sum(obj, plan, ring1, 1, 0)  # every pixel: no interpolation
    far = [(i, j) for i in range(-r, r + 1) for j in range(-r, r + 1) if max(abs(i), abs(j)) > 1]
    return out + _alias._ring_sum(obj, plan, far, 1, 0)


def test_alias_interpolation_error(x64):
    # A large galaxy with power-law wings drawn with a short period: the interpolated
    # correction against evaluation at every pixel, relative to the image peak.
    obj = jaxsky.Convolve(
        jaxsky.Sersic(4.0, half_light_radius=1.2).shear(g1=0.2, g2=-0.1).shift(0.1, -0.05),
        jaxsky.Moffat(2.0, fwhm=1.0),
    )
    plan = DrawPlan(64, 64, 0.2, 64, 1, True, 3)
    exact = np.asarray(_exact_correction(obj, plan))
    got = np.asarray(_alias.alias_correction(obj, plan))
    peak = np.asarray(jaxsky.draw(obj, nx=64, ny=64, scale=0.2, plan=plan)).max()
    assert exact.max() > 1e-4 * peak  # a correction worth testing
    # Measured: correction 9.4e-3 of the peak, interpolation error 5.7e-5 (0.6% of it).
    assert np.abs(got - exact).max() < 1e-4 * peak
    assert np.abs(got - exact).max() < 0.02 * exact.max()


@pytest.mark.parametrize("kf", [2, 3])
def test_zone_fold_product_matches_reduction(x64, kf):
    # The forward fold (one batched product) against the reduction fold the tangent uses.
    plan = DrawPlan(32, 32, 0.2, 32, kf, True, 0)
    kx, ky, cols, rows = _factored._grid(plan)
    rng = np.random.default_rng(1)
    r = jnp.asarray(rng.normal(size=kx.shape[:2] + ky.shape))
    ph = _factored._phases(plan, jnp.asarray([0.03, -0.07]), kx, ky, cols, rows)
    got = _factored._linear(plan, r, None, ph, fuse=False)
    ref = _factored._linear(plan, r, jnp.zeros_like(r), ph, fuse=False)  # reductions
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-12)


def test_table_profile_draw_vs_galsim_k_fold():
    galsim = pytest.importorskip("galsim")
    # A k_fold > 1 plan (small PSF) through the product fold, against GalSim in float32.
    obj = jaxsky.Convolve(
        jaxsky.Sersic(3.0, half_light_radius=0.3).shear(g1=0.1, g2=0.2),
        jaxsky.Moffat(3.0, fwhm=0.45),
    )
    plan = jaxsky.make_plan(obj, 48, 48, 0.2)
    assert plan.k_fold > 1
    img = np.asarray(jaxsky.draw(obj, nx=48, ny=48, scale=0.2, plan=plan))
    gobj = galsim.Convolve(
        galsim.Sersic(3.0, half_light_radius=0.3).shear(g1=0.1, g2=0.2),
        galsim.Moffat(3.0, fwhm=0.45),
        gsparams=galsim.GSParams(kvalue_accuracy=1e-6, maxk_threshold=1e-5, folding_threshold=1e-5),
    )
    ref = gobj.drawImage(nx=48, ny=48, scale=0.2).array
    assert np.abs(img - ref).max() < 1e-4 * ref.max()
