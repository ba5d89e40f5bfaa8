"""Fit a Sersic galaxy to a noisy GalSim image by gradient descent through jaxsky.

    python examples/fit_galaxy.py [--steps 300]

GalSim draws the "observed" stamp (Sersic x Moffat plus Gaussian noise); jaxsky renders
the model, and optax's Adam maximises the Gaussian likelihood over (flux, hlr, n, g1, g2,
dx, dy) in an unconstrained parameterisation. The PSF is known.
"""

from __future__ import annotations

import argparse

import galsim
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsky

NX, SCALE, SIGMA = 48, 0.2, 0.5
TRUTH = dict(flux=3e3, hlr=0.7, n=2.2, g1=0.15, g2=-0.08, dx=0.04, dy=-0.03)


def observe(seed=0):
    gal = galsim.Sersic(TRUTH["n"], half_light_radius=TRUTH["hlr"], flux=TRUTH["flux"])
    gal = gal.shear(g1=TRUTH["g1"], g2=TRUTH["g2"]).shift(TRUTH["dx"], TRUTH["dy"])
    img = galsim.Convolve(gal, galsim.Moffat(3.0, fwhm=0.7)).drawImage(nx=NX, ny=NX, scale=SCALE)
    img.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(seed), sigma=SIGMA))
    return jnp.asarray(img.array)


def to_physical(z):
    """Unconstrained -> physical: positive flux/hlr, n in (0.3, 6.2), |g| < 1."""
    g1, g2 = jnp.tanh(z[3]), jnp.tanh(z[4])
    shrink = jnp.where(g1**2 + g2**2 < 0.81, 1.0, 0.9 / jnp.sqrt(g1**2 + g2**2 + 1e-12))
    return dict(
        flux=jnp.exp(z[0]),
        hlr=jnp.exp(z[1]),
        n=0.3 + 5.9 * jax.nn.sigmoid(z[2]),
        g1=g1 * shrink,
        g2=g2 * shrink,
        dx=z[5],
        dy=z[6],
    )


def model(p, plan):
    gal = jaxsky.Sersic(p["n"], half_light_radius=p["hlr"], flux=p["flux"])
    gal = gal.shear(g1=p["g1"], g2=p["g2"]).shift(p["dx"], p["dy"])
    return jaxsky.draw(
        jaxsky.Convolve(gal, jaxsky.Moffat(3.0, fwhm=0.7)), nx=NX, ny=NX, scale=SCALE, plan=plan
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    args = ap.parse_args(argv)
    data = observe()
    # One static plan for the whole fit, made from a generous example galaxy.
    example = jaxsky.Convolve(
        jaxsky.Sersic(6.0, half_light_radius=1.5, flux=1.0), jaxsky.Moffat(3.0, fwhm=0.7)
    )
    plan = jaxsky.make_plan(example, NX, NX, SCALE)

    @jax.jit
    def loss(z):
        return 0.5 * jnp.sum((model(to_physical(z), plan) - data) ** 2) / SIGMA**2

    z = jnp.array([np.log(float(data.sum())), np.log(0.5), 0.0, 0.0, 0.0, 0.0, 0.0])
    opt = optax.adam(0.05)
    state = opt.init(z)
    step = jax.jit(lambda z, s: _step(loss, opt, z, s))
    for i in range(args.steps):
        z, state, val = step(z, state)
        if i % 100 == 0:
            print(f"step {i:4d}  chi2/2 = {float(val):.1f}")
    fit = {k: float(v) for k, v in to_physical(z).items()}
    print(f"final chi2/npix = {2 * float(loss(z)) / NX**2:.3f}")
    for k in TRUTH:
        print(f"{k:5s} truth {TRUTH[k]:9.4f}  fit {fit[k]:9.4f}")
    return fit


def _step(loss, opt, z, state):
    val, g = jax.value_and_grad(loss)(z)
    upd, state = opt.update(g, state)
    return optax.apply_updates(z, upd), state, val


if __name__ == "__main__":
    main()
