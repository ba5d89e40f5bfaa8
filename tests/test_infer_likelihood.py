"""Likelihoods, stamp validation and bijections of jaxsky.infer against scipy / autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

import jaxsky
from jaxsky.infer import (
    ParameterSpace,
    gaussian_loglike,
    identity,
    interval,
    log_interval,
    make_loglike,
    poisson_loglike,
    positive,
    prepare_stamps,
    unit_disk,
)


def _stamps(seed=0, shape=(3, 8, 9)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.uniform(0.5, 2.0, size=shape)


def test_gaussian_matches_scipy_with_mask_and_nan(x64):
    img, var = _stamps()
    img[0, 2, 3] = np.nan
    mask = np.ones(img.shape, bool)
    mask[1, :2] = False
    st = prepare_stamps(img, var, mask)
    assert st.n_masked.tolist() == [1, 2 * 9, 0]
    model = np.random.default_rng(1).normal(size=img.shape)
    for b in range(3):
        use = mask[b] & np.isfinite(img[b])
        ref = stats.norm.logpdf(img[b][use], model[b][use], np.sqrt(var[b][use])).sum()
        got = gaussian_loglike(model[b], st.data[b], st.ivar[b])
        np.testing.assert_allclose(float(got), ref, rtol=1e-12)


def test_variance_shapes_and_errors():
    img, var = _stamps()
    assert prepare_stamps(img, 2.0).ivar.shape == img.shape
    np.testing.assert_allclose(prepare_stamps(img, [1.0, 2.0, 4.0]).ivar[:, 0, 0], [1, 0.5, 0.25])
    assert prepare_stamps(img, var[0]).ivar.shape == img.shape
    with pytest.raises(ValueError, match="variance has shape"):
        prepare_stamps(img, np.ones((4, 8, 9)))
    with pytest.raises(ValueError, match="images must have shape"):
        prepare_stamps(np.ones(5), 1.0)
    with pytest.raises(ValueError, match="mask has shape"):
        prepare_stamps(img, 1.0, mask=np.ones((2, 2), bool))
    bad = var.copy()
    bad[2, 4, 5] = 0.0
    with pytest.raises(ValueError, match=r"variance must be finite and > 0.*\(2, 4, 5\)"):
        prepare_stamps(img, bad)
    bad[0, 0, 0] = -1.0
    st = prepare_stamps(img, bad, bad_variance="mask")
    assert st.n_masked.tolist() == [1, 0, 1] and float(st.ivar[2, 4, 5]) == 0.0
    # a bad variance at a masked pixel is not an error
    prepare_stamps(img, bad, mask=bad > 0)


def test_poisson_matches_scipy(x64):
    rng = np.random.default_rng(3)
    model = rng.uniform(0, 30, size=(6, 7))
    sky = 5.0
    counts = rng.poisson(model + sky).astype(float)
    ref = stats.poisson.logpmf(counts, model + sky).sum()
    np.testing.assert_allclose(float(poisson_loglike(model, counts, sky)), ref, rtol=1e-12)
    mask = rng.uniform(size=model.shape) > 0.3
    ref = stats.poisson.logpmf(counts[mask], (model + sky)[mask]).sum()
    np.testing.assert_allclose(float(poisson_loglike(model, counts, sky, mask)), ref, rtol=1e-12)


def test_loglike_grads_renderer_forward_model(x64):
    """check_grads through a renderer forward model, Gaussian and Poisson noise."""
    psf = jaxsky.Gaussian(fwhm=0.6)
    plan = jaxsky.make_plan(
        jaxsky.Convolve(jaxsky.Exponential(half_light_radius=1.0), psf), 16, 16, 0.3
    )

    def forward(theta):
        gal = jaxsky.Exponential(half_light_radius=theta[1], flux=theta[0]).shear(
            g1=theta[2], g2=0.1
        )
        return jaxsky.draw(jaxsky.Convolve(gal, psf), nx=16, ny=16, scale=0.3, plan=plan)

    theta = jnp.array([200.0, 0.5, 0.2])
    truth = np.asarray(forward(theta))
    rng = np.random.default_rng(0)
    data = truth + rng.normal(size=truth.shape)
    ivar = np.ones_like(data)
    ivar[3, 4] = 0.0  # a masked pixel must not disturb value or gradient
    data[3, 4] = 0.0
    ll = make_loglike(forward, jnp.asarray(data), jnp.asarray(ivar))
    check_grads(ll, (theta,), order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
    counts = rng.poisson(np.clip(truth, 0, None) + 3.0).astype(float)
    llp = make_loglike(forward, jnp.asarray(counts), noise="poisson", sky=3.0)
    check_grads(llp, (theta,), order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
    assert np.isfinite(float(ll(theta))) and np.isfinite(float(llp(theta)))
    with pytest.raises(ValueError, match="sky must be > 0"):
        make_loglike(forward, counts, noise="poisson", sky=0.0)
    with pytest.raises(ValueError, match="noise="):
        make_loglike(forward, counts, ivar, noise="cauchy")


def test_loglike_edges_no_nan(x64):
    """Poisson with the model below -sky (clipped) and Gaussian with all pixels masked."""
    model = jnp.array([[-10.0, 0.0], [1e-12, 2.0]])
    g = jax.grad(lambda m: poisson_loglike(m, jnp.array([[0.0, 1.0], [2.0, 3.0]]), 1.0))(model)
    assert np.all(np.isfinite(g))
    z = jnp.zeros((2, 2))
    val, g = jax.value_and_grad(gaussian_loglike)(model, z, z)
    assert float(val) == 0.0 and np.all(np.asarray(g) == 0.0)


BIJECTIONS = [identity(), positive(), interval(-2.0, 3.0), log_interval(0.1, 5.0)]


@pytest.mark.parametrize("bij", BIJECTIONS, ids=lambda b: b.name)
def test_scalar_bijections(bij, x64):
    u = jnp.linspace(-4.0, 4.0, 9)
    x = jax.vmap(bij.forward)(u)
    np.testing.assert_allclose(jax.vmap(bij.inverse)(x), u, rtol=1e-9, atol=1e-9)
    ldj = jax.vmap(bij.log_det_jacobian)(u)
    ref = jnp.log(jnp.abs(jax.vmap(jax.grad(bij.forward))(u)))
    np.testing.assert_allclose(ldj, ref, rtol=1e-9, atol=1e-9)
    check_grads(bij.forward, (jnp.array(0.3),), order=2)
    # far edges: finite values and gradients
    for edge in (-40.0, 40.0):
        assert np.isfinite(float(jax.grad(bij.forward)(edge)))
        assert np.isfinite(float(bij.log_det_jacobian(jnp.array(edge))))


def test_unit_disk(x64):
    bij = unit_disk(0.9)
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=(20, 2)) * 2)
    x = jax.vmap(bij.forward)(u)
    assert np.all(np.hypot(x[:, 0], x[:, 1]) < 0.9)
    np.testing.assert_allclose(jax.vmap(bij.inverse)(x), u, rtol=1e-7, atol=1e-8)
    ref = jax.vmap(lambda v: jnp.linalg.slogdet(jax.jacfwd(bij.forward)(v))[1])(u)
    np.testing.assert_allclose(jax.vmap(bij.log_det_jacobian)(u), ref, rtol=1e-9, atol=1e-9)
    check_grads(bij.forward, (jnp.array([0.3, -0.2]),), order=2)
    zero = jnp.zeros(2)  # the origin: series branch, no NaN
    assert np.all(np.isfinite(jax.jacfwd(bij.forward)(zero)))
    assert np.all(np.isfinite(jax.grad(bij.log_det_jacobian)(zero)))
    np.testing.assert_allclose(bij.inverse(zero), zero)


def test_parameter_space_roundtrip(x64):
    space = ParameterSpace(
        [("a", positive()), (("g1", "g2"), unit_disk()), ("b", interval(0.0, 1.0))]
    )
    assert space.names == ("a", "g1", "g2", "b") and space.size == 4
    x = jnp.array([2.0, 0.3, -0.1, 0.25])
    u = space.to_unconstrained(x)
    np.testing.assert_allclose(space.to_physical(u), x, rtol=1e-9)
    ref = jnp.linalg.slogdet(jax.jacfwd(space.to_physical)(u))[1]
    np.testing.assert_allclose(space.log_det_jacobian(u), ref, rtol=1e-9)
    np.testing.assert_allclose(space.from_dict(space.as_dict(x)), x)
    with pytest.raises(ValueError, match="missing parameters"):
        space.from_dict({"a": 1.0})
