"""Gradients: check_grads in float64, GalSim finite differences, no NaN at domain edges."""

import galsim
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxsky
from jaxsky.interop import TIGHT_GSPARAMS

NX, SCALE = 24, 0.2
P0 = dict(flux=2e3, hlr=0.5, n=2.3, g1=0.15, g2=-0.1, dx=0.03, dy=-0.05, beta=3.2, fwhm=0.6)


def build(p, psf="moffat"):
    gal = (
        jaxsky.Sersic(p["n"], half_light_radius=p["hlr"], flux=p["flux"])
        .shear(g1=p["g1"], g2=p["g2"])
        .shift(p["dx"], p["dy"])
    )
    if psf == "moffat":
        psf_obj = jaxsky.Moffat(p["beta"], fwhm=p["fwhm"])
    else:
        psf_obj = jaxsky.Gaussian(fwhm=p["fwhm"])
    return jaxsky.Convolve([gal, psf_obj])


def build_galsim(p):
    gal = (
        galsim.Sersic(p["n"], half_light_radius=p["hlr"], flux=p["flux"], gsparams=TIGHT_GSPARAMS)
        .shear(g1=p["g1"], g2=p["g2"])
        .shift(p["dx"], p["dy"])
    )
    return galsim.Convolve([gal, galsim.Moffat(p["beta"], fwhm=p["fwhm"], gsparams=TIGHT_GSPARAMS)])


def plan_for(p, psf="moffat"):
    # Plan once from the nominal values; the same static sizes serve the perturbed values.
    return jaxsky.make_plan(build(p, psf), NX, NX, SCALE)


def weights():
    return np.random.default_rng(0).uniform(0.5, 1.5, size=(NX, NX))


@pytest.mark.parametrize("name", sorted(P0))
def test_check_grads_every_parameter(x64, name):
    plan = plan_for(P0)
    w = jnp.asarray(weights())

    def f(v):
        p = dict(P0, **{name: v})
        return jnp.sum(w * jaxsky.draw(build(p), nx=NX, ny=NX, scale=SCALE, plan=plan))

    check_grads(f, (jnp.asarray(P0[name]),), order=1, modes=["fwd", "rev"], eps=1e-4, rtol=2e-3)


@pytest.mark.parametrize("name", ["flux", "hlr", "n", "g1", "g2", "dx", "dy", "beta", "fwhm"])
def test_gradient_matches_galsim_finite_differences(x64, name):
    plan = plan_for(P0)
    w = weights()

    def f(v):
        p = dict(P0, **{name: v})
        return jnp.sum(w * jaxsky.draw(build(p), nx=NX, ny=NX, scale=SCALE, plan=plan))

    grad = float(jax.grad(f)(jnp.asarray(P0[name])))
    h = 1e-3 if name in ("g1", "g2", "dx", "dy") else 1e-3 * abs(P0[name])

    def g(v):
        p = dict(P0, **{name: v})
        return float(
            np.sum(w * build_galsim(p).drawImage(nx=NX, ny=NX, scale=SCALE, dtype=np.float64).array)
        )

    fd = (g(P0[name] + h) - g(P0[name] - h)) / (2 * h)
    assert abs(grad - fd) <= 1e-3 * abs(fd) + 1e-6 * abs(g(P0[name])), (grad, fd)


EDGES = [
    dict(g1=0.0, g2=0.0),
    dict(dx=0.0, dy=0.0),
    dict(dx=0.5 * SCALE, dy=-0.5 * SCALE),
    dict(n=0.3),
    dict(n=6.2),
    dict(n=0.5),
    dict(n=1.0),
    dict(beta=1.1 + 1e-6, fwhm=0.8),
    dict(beta=10.0),
    dict(g1=0.95, g2=0.0),
]


@pytest.mark.parametrize(
    "edge", EDGES, ids=[",".join(f"{k}={v:g}" for k, v in e.items()) for e in EDGES]
)
@pytest.mark.parametrize("psf", ["moffat", "gaussian"])
def test_no_nan_at_domain_edges(x64, edge, psf):
    p = dict(P0, **edge)
    plan = plan_for(P0, psf)
    keys = sorted(P0)

    def f(vals):
        q = dict(zip(keys, vals))
        return jnp.sum(jaxsky.draw(build(q, psf), nx=NX, ny=NX, scale=SCALE, plan=plan) ** 2)

    vals = [jnp.asarray(p[k]) for k in keys]
    val, grads = jax.value_and_grad(f)(vals)
    assert np.isfinite(float(val))
    assert all(np.isfinite(float(g)) for g in grads), dict(zip(keys, map(float, grads)))


def test_exponential_gaussian_grads(x64):
    plan = jaxsky.make_plan(
        jaxsky.Convolve(jaxsky.Exponential(scale_radius=0.4), jaxsky.Gaussian(sigma=0.3)),
        NX,
        NX,
        SCALE,
    )

    def f(r0, sigma, theta):
        obj = jaxsky.Convolve(
            jaxsky.Exponential(scale_radius=r0).rotate(theta).dilate(1.1),
            jaxsky.Gaussian(sigma=sigma),
        )
        return jnp.sum(jaxsky.draw(obj, nx=NX, ny=NX, scale=SCALE, plan=plan) * weights())

    check_grads(f, (0.4, 0.3, 0.3), order=1, modes=["fwd", "rev"], eps=1e-4)


@pytest.mark.parametrize("n", [0.3, 1.0, 3.25, 6.2])
@pytest.mark.parametrize("beta", [1.1 + 1e-4, 3.0, 10.0])
def test_float32_gradients_finite_on_table_nodes(n, beta):
    """Default precision, parameters exactly on table nodes and at the ends (regression)."""
    plan = plan_for(P0)

    def f(n, beta):
        p = dict(P0, n=n, beta=beta)
        return jnp.sum(jaxsky.draw(build(p), nx=NX, ny=NX, scale=SCALE, plan=plan))

    gn, gb = jax.grad(f, argnums=(0, 1))(jnp.float32(n), jnp.float32(beta))
    assert np.isfinite(float(gn)) and np.isfinite(float(gb))
