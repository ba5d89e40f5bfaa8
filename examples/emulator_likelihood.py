"""An emulator inside your own JAX likelihood: recover the parameters of a noisy GalSim stamp by
gradient descent through `Emulator.predict_fn()`.

    python examples/emulator_likelihood.py --n-train 256 --steps 300
"""

import argparse

import galsim
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsky import data, emulators

jax.config.update("jax_enable_x64", True)  # PCA+GP predictions want float64 algebra


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train = data.simulate("paper", args.n_train, seed=args.seed)
    emu = emulators.fit("pcagp", train, key=jax.random.key(args.seed))
    names = emu.param_names  # flux, scale_radius, g1, g2, psf_fwhm

    # An "observed" stamp made with GalSim inside the training domain, plus Gaussian noise.
    truth = np.array([5e4, 0.45, 0.2, -0.1, 0.3])
    gal = galsim.Exponential(flux=truth[0], scale_radius=truth[1]).shear(g1=truth[2], g2=truth[3])
    img = galsim.Convolve(gal, galsim.Gaussian(fwhm=truth[4])).drawImage(nx=33, ny=33, scale=0.2)
    sigma = 0.01 * img.array.max()
    rng = np.random.default_rng(args.seed)
    obs = jnp.asarray(img.array + sigma * rng.standard_normal(img.array.shape))

    # Your own likelihood: any JAX code can call the emulator's pure predict function. The PSF
    # FWHM is known (fixed); we fit the galaxy in a box-bounded (sigmoid) parametrisation.
    predict = emu.predict_fn()
    lo = jnp.array([emu.info["ranges"][k][0] for k in names[:4]])
    hi = jnp.array([emu.info["ranges"][k][1] for k in names[:4]])

    def to_theta(u):
        return jnp.concatenate([lo + (hi - lo) * jax.nn.sigmoid(u), jnp.array([truth[4]])])

    @jax.jit
    def neg_log_like(u):
        return 0.5 * jnp.sum((predict(to_theta(u)) - obs) ** 2) / sigma**2

    u = jnp.zeros(4)
    opt = optax.adam(0.05)
    state = opt.init(u)
    for _ in range(args.steps):
        loss, g = jax.value_and_grad(neg_log_like)(u)
        upd, state = opt.update(g, state)
        u = optax.apply_updates(u, upd)
    fit = np.asarray(to_theta(u))
    emu.check_domain(fit)  # the answer lies inside the training box
    for k, t, f in zip(names, truth, fit):
        print(f"{k:13s} truth {t:10.4g} fit {f:10.4g}")
    print(f"chi2/pixel {2 * float(loss) / obs.size:.3f}")


if __name__ == "__main__":
    main()
