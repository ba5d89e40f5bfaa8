"""Latent-flow emulator (family ``"flow"``): a conditional MAF over the VAE latent + the decoder.

As galsim-hub (Lanusse et al. 2021): a VAE compresses the images; a conditional masked
autoregressive flow models p(z | theta) (:mod:`._maf`); generation is flow sample -> decoder,
which suits sets where theta does not fix the image (real galaxies). :func:`predict` is the
deterministic image of the base distribution's centre (u = 0), a smooth function of theta;
:func:`sample` draws u ~ N(0, T^2 I) with temperature ``T``.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsky.emulators import vae
from jaxsky.emulators._base import EmulatorFamily, register_family
from jaxsky.emulators._maf import MAFSpec, maf_dist, maf_init
from jaxsky.emulators._train import train_loop

__all__ = [
    "FlowState",
    "default_config",
    "fit",
    "fit_maf",
    "maf_log_prob",
    "log_prob",
    "predict",
    "sample",
    "restore",
    "FAMILY",
]


def default_config() -> dict:
    vae_cfg = vae.default_config()
    vae_cfg.update(mode="latent", reg_steps=0, finetune_steps=0, beta=1e-2)
    return {
        "vae": vae_cfg,
        "n_layers": 4,
        "hidden": [64, 64],
        "flow_steps": 3000,
        "flow_lr": 1e-3,
        "batch_size": 128,
        "temperature": 1.0,
        "val_every": 100,
        "patience": 15,
    }


@flax.struct.dataclass
class FlowState:
    """vae: the fitted :class:`~.vae.VAEState`; flow: MADE parameters (list); z_mean/z_std:
    float[latent] standardisation of the latent the flow models."""

    vae: vae.VAEState
    flow: list
    z_mean: jax.Array
    z_std: jax.Array
    spec: MAFSpec = flax.struct.field(pytree_node=False)
    temperature: float = flax.struct.field(pytree_node=False, default=1.0)


def maf_log_prob(spec: MAFSpec, params, z, cond):
    """log p(z | cond) of the flow, z float[dim], cond float[cond_dim]."""
    return maf_dist(spec, params, cond).log_prob(z)


def fit_maf(
    z,
    cond,
    spec: MAFSpec,
    *,
    key,
    steps=3000,
    lr=1e-3,
    batch_size=128,
    z_val=None,
    cond_val=None,
    val_every=100,
    patience=15,
    progress=False,
    checkpoint_dir=None,
):
    """Maximum-likelihood fit of a conditional MAF to samples z float[N, dim] | cond float[N, C].

    Returns the parameter list (best by validation log-likelihood when a validation set is given).
    """
    z, cond = jnp.asarray(z), jnp.asarray(cond)
    lp = jax.vmap(lambda p, zz, cc: maf_log_prob(spec, p, zz, cc), in_axes=(None, 0, 0))
    n = z.shape[0]

    def loss(p, batch, k):
        return -jnp.mean(lp(p, *batch))

    def batches(step, k):
        idx = jax.random.randint(k, (min(batch_size, n),), 0, n)
        return z[idx], cond[idx]

    val = None
    if z_val is not None:
        zv, cv = jnp.asarray(z_val), jnp.asarray(cond_val)
        val = lambda p: loss(p, (zv, cv), None)  # noqa: E731
    k0, k1 = jax.random.split(key)
    res = train_loop(
        loss,
        maf_init(spec, key=k0),
        batches,
        optimizer=optax.adam(optax.cosine_decay_schedule(lr, max(steps, 1), 0.05)),
        n_steps=steps,
        key=k1,
        val_fn=val,
        val_every=val_every,
        patience=patience,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        description="flow (MAF)",
    )
    return res.params


def _cond(state: FlowState, theta):
    return vae._cond(state.vae, theta)


def log_prob(state: FlowState, z, theta):
    """log p(z | theta) of a latent z float[latent] (VAE latent units)."""
    zs = (z - state.z_mean) / state.z_std
    return maf_log_prob(state.spec, state.flow, zs, _cond(state, theta)) - jnp.sum(
        jnp.log(state.z_std)
    )


def _image(state: FlowState, theta, u):
    dist = maf_dist(state.spec, state.flow, _cond(state, theta))
    z = state.z_mean + state.z_std * dist.bijector.forward(u)
    v = state.vae
    psf = vae.render_psf(v, theta) if v.spec.psf_mode else None
    return vae._flux(v, theta) * vae.decode(v, z, psf)


def predict(state: FlowState, theta):
    """Image float[ny, nx] of the flow's central latent (u = 0) for theta float[P]."""
    return _image(state, theta, jnp.zeros(state.spec.dim, jnp.result_type(theta.dtype, float)))


def sample(state: FlowState, theta, *, key):
    """A random image: z ~ flow(. | theta) at the configured temperature, then decoded."""
    dt = jnp.result_type(theta.dtype, float)
    u = state.temperature * jax.random.normal(key, (state.spec.dim,), dt)
    return _image(state, theta, u)


def fit(dataset, config, *, key, progress: bool = False, checkpoint_dir=None) -> FlowState:
    """Train the VAE (latent mode), encode the images, fit the conditional MAF on the latents."""
    cfg = {**default_config(), **config}
    vcfg = {**vae.default_config(), **default_config()["vae"], **cfg["vae"], "mode": "latent"}
    k_vae, k_flow = jax.random.split(key)
    sub = None if checkpoint_dir is None else f"{checkpoint_dir}/vae"
    vst = vae.fit(dataset, vcfg, key=k_vae, progress=progress, checkpoint_dir=sub)
    config["vae"] = vcfg  # resolved (psf_shape) for restore
    enc = jax.jit(jax.vmap(lambda im, th: vae.encode(vst, im, th)[0]))

    def latents(split):
        part = dataset.split(split) if dataset.split_of is not None else dataset
        th = jnp.asarray(part.params, jnp.float32)
        imgs = part.noisy() if vcfg["noisy"] else np.asarray(part.images)
        z = enc(jnp.asarray(imgs, jnp.float32), th)
        return np.asarray(z), np.asarray(jax.vmap(lambda t: vae._cond(vst, t))(th))

    z, c = latents("train")
    has_val = dataset.split_of is not None and np.any(dataset.split_of == 1)
    zv, cv = latents("val") if has_val else (None, None)
    z_mean, z_std = z.mean(0), z.std(0) + 1e-6
    spec = MAFSpec(z.shape[1], c.shape[1], int(cfg["n_layers"]), tuple(cfg["hidden"]))
    params = fit_maf(
        (z - z_mean) / z_std,
        c,
        spec,
        key=k_flow,
        steps=cfg["flow_steps"],
        lr=cfg["flow_lr"],
        batch_size=cfg["batch_size"],
        z_val=None if zv is None else (zv - z_mean) / z_std,
        cond_val=cv,
        val_every=cfg["val_every"],
        patience=cfg["patience"],
        progress=progress,
        checkpoint_dir=None if checkpoint_dir is None else f"{checkpoint_dir}/flow",
    )
    return FlowState(
        vae=vst,
        flow=params,
        z_mean=jnp.asarray(z_mean),
        z_std=jnp.asarray(z_std),
        spec=spec,
        temperature=float(cfg["temperature"]),
    )


def restore(raw, config, info) -> FlowState:
    cfg = {**default_config(), **config}
    vst = vae.restore(raw["vae"], cfg["vae"], info)
    flow = [jax.tree.map(jnp.asarray, raw["flow"][str(i)]) for i in range(len(raw["flow"]))]
    z_mean = jnp.asarray(raw["z_mean"])
    cond_dim = len(vst.spec.cond_idx)
    spec = MAFSpec(int(z_mean.shape[0]), cond_dim, len(flow), tuple(cfg["hidden"]))
    return FlowState(
        vae=vst,
        flow=flow,
        z_mean=z_mean,
        z_std=jnp.asarray(raw["z_std"]),
        spec=spec,
        temperature=float(cfg["temperature"]),
    )


FAMILY = register_family(
    EmulatorFamily(
        name="flow",
        default_config=default_config,
        fit=fit,
        predict=predict,
        restore=restore,
        sample=sample,
    )
)
