"""Variational-autoencoder emulator (family ``"vae"``): conv encoder/decoder + latent regression.

Two variants (``config["mode"]``):

* ``"latent"``: a beta-VAE (Higgins et al. 2017) is trained on the images with a Gaussian pixel
  likelihood whose sigma is the data set's noise (``noise_sigma``), floored by ``noise_floor``
  times each image's own peak (which alone sets the weights of noiseless sets: errors are then
  weighted relative to each image's peak); then theta -> latent mean is regressed with an MLP
  or tinygp GPs; optionally the regressor and decoder are fine-tuned end to end on the images.
* ``"conditional"``: a conditional decoder, theta -> MLP -> decoder -> image, trained directly.

Images are emulated at unit flux when ``flux_param`` is a parameter (flux is applied
analytically). With ``psf_mode`` the decoder emits the pre-PSF galaxy, convolved in Fourier space
with each image's PSF (as galsim-hub, Lanusse et al. 2021); at predict time the PSF is rendered
from the ``psf_param`` column (``psf_profile``), or given explicitly to :func:`predict_with_psf`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsky.emulators import _latent_gp
from jaxsky.emulators._base import EmulatorFamily, register_family
from jaxsky.emulators._fourier_psf import psf_convolve
from jaxsky.emulators._nn import MLP, ConvDecoder, ConvEncoder, DenseDecoder
from jaxsky.emulators._normalize import LOG_DEFAULT
from jaxsky.emulators._train import train_loop

__all__ = [
    "VAEState",
    "default_config",
    "fit",
    "predict",
    "predict_with_psf",
    "sample",
    "encode",
    "decode",
    "restore",
    "FAMILY",
]


def default_config() -> dict:
    return {
        "mode": "conditional",  # "latent" (beta-VAE + regression) or "conditional"
        "latent_dim": 16,
        "enc_features": [32, 64, 128],
        "dec_features": [128, 64, 32],  # conv decoder channels
        "dense_features": [256, 512],  # dense decoder hidden widths
        "dense": 256,
        "decoder": "dense",  # "dense" (fast on CPU) or "conv"
        "beta": 1e-3,
        "noise_floor": 1e-3,  # sigma floor as a fraction of each image's own peak pixel
        "log_cond": True,  # condition on log of the positive size/PSF parameters
        "noisy": False,  # train on the data set's noisy realisations
        "regressor": "mlp",  # "mlp" or "gp" (latent mode)
        "gp_kernel": "matern52",
        "gp_steps": 200,
        "mlp_features": [128, 128, 128],
        "flux_param": "flux",  # None: no analytic flux
        "psf_mode": False,
        "psf_param": "psf_fwhm",
        "psf_profile": "gaussian",  # or "moffat"
        "psf_beta": 3.5,
        "psf_shape": None,  # filled in by fit from the data set's PSF images
        "steps": 4000,
        "reg_steps": 3000,
        "finetune_steps": 2000,
        "batch_size": 64,
        "lr": 1e-3,
        "warmup": 0.02,  # fraction of the steps with a linear learning-rate warm-up
        "val_every": 100,
        "patience": 15,
    }


class Spec(NamedTuple):
    """Static (hashable) description of the networks; rebuilt from config + data-set info."""

    shape: tuple
    mode: str
    latent: int
    enc_features: tuple
    dec_features: tuple
    dense: int
    decoder: str
    regressor: str
    gp_kernel: str
    mlp_features: tuple
    cond_idx: tuple
    flux_idx: int
    psf_mode: bool
    psf_idx: int
    psf_shape: tuple
    psf_profile: str
    psf_beta: float
    scale: float
    psf_plan: Any = None
    cond_log: tuple = ()  # per conditioning column: taken in log before the [-1, 1] map


@flax.struct.dataclass
class VAEState:
    """Fitted VAE emulator (a pytree; ``spec`` is static).

    params: {"enc", "dec", "reg"} network parameters ("gp": a :class:`GPState` in GP mode);
    lo/hi: float[C] ranges normalising the conditioning columns to [-1, 1]; mean_image /
    img_scale: unit-flux image normalisation; z_mean / z_std: float[latent] latent standardisation;
    z_res: float[latent] spread of the true latents around the regression (for :func:`sample`).
    """

    params: dict
    lo: jax.Array
    hi: jax.Array
    mean_image: jax.Array
    img_scale: jax.Array
    z_mean: jax.Array
    z_std: jax.Array
    z_res: jax.Array
    spec: Spec = flax.struct.field(pytree_node=False)


def _modules(spec: Spec):
    if spec.decoder == "dense":
        dec = DenseDecoder(spec.shape, tuple(spec.dec_features))
    else:
        dec = ConvDecoder(spec.shape, tuple(spec.dec_features), spec.dense)
    enc = ConvEncoder(spec.latent, tuple(spec.enc_features), spec.dense)
    reg = MLP(tuple(spec.mlp_features), spec.latent)
    return enc, dec, reg


def _make_spec(dataset, cfg) -> Spec:
    from jaxsky.render import Gaussian, Moffat, make_plan

    names = list(dataset.param_names)
    for k in ("mode", "decoder", "regressor", "psf_profile"):
        allowed = {
            "mode": ("latent", "conditional"),
            "decoder": ("conv", "dense"),
            "regressor": ("mlp", "gp"),
            "psf_profile": ("gaussian", "moffat"),
        }[k]
        if cfg[k] not in allowed:
            raise ValueError(f"vae config {k}={cfg[k]!r} is not one of {allowed}")
    flux = cfg["flux_param"]
    if flux is not None and flux not in names:
        raise ValueError(f"flux_param={flux!r} is not a parameter of the data set ({names})")
    flux_idx = names.index(flux) if flux is not None else -1
    cond_idx = tuple(i for i in range(len(names)) if i != flux_idx)
    if not cond_idx:
        raise ValueError("the data set has no conditioning parameter besides the flux")
    psf_idx, psf_shape, plan = -1, tuple(dataset.shape), None
    if cfg["psf_mode"]:
        if dataset.psfs is None:
            raise ValueError("psf_mode=True needs a data set with PSF images (dataset.psfs)")
        psf_shape = tuple(int(s) for s in dataset.psfs.shape[1:])
        if cfg["psf_param"] in names:
            psf_idx = names.index(cfg["psf_param"])
            lo, hi = dataset.ranges[cfg["psf_param"]]
            fw = jnp.asarray([lo, hi])
            psf = (
                Gaussian(fwhm=fw)
                if cfg["psf_profile"] == "gaussian"
                else Moffat(cfg["psf_beta"], fwhm=fw)
            )
            plan = make_plan(psf, psf_shape[1], psf_shape[0], dataset.scale)
    cond_log = tuple(
        bool(cfg["log_cond"]) and names[i] in LOG_DEFAULT and dataset.ranges[names[i]][0] > 0
        for i in cond_idx
    )
    return Spec(
        shape=tuple(int(s) for s in dataset.shape),
        mode=cfg["mode"],
        latent=int(cfg["latent_dim"]),
        enc_features=tuple(cfg["enc_features"]),
        dec_features=tuple(
            cfg["dense_features"]
            if cfg["decoder"] == "dense" and cfg.get("dense_features")
            else cfg["dec_features"]
        ),
        dense=int(cfg["dense"]),
        decoder=cfg["decoder"],
        regressor=cfg["regressor"],
        gp_kernel=cfg["gp_kernel"],
        mlp_features=tuple(cfg["mlp_features"]),
        cond_idx=cond_idx,
        flux_idx=flux_idx,
        psf_mode=bool(cfg["psf_mode"]),
        psf_idx=psf_idx,
        psf_shape=psf_shape,
        psf_profile=cfg["psf_profile"],
        psf_beta=float(cfg["psf_beta"]),
        scale=float(dataset.scale),
        psf_plan=plan,
        cond_log=cond_log,
    )


# ---------------------------------------------------------------------------- pure pieces
def _log_cols(c, cond_log):
    """Log of the flagged columns of c float[..., C] (gradient-safe at c <= 0)."""
    if not any(cond_log):
        return c
    m = jnp.asarray(cond_log)
    return jnp.where(m, jnp.log(jnp.where(m & (c > 0), c, 1.0)), c)


def _cond(state: VAEState, theta):
    c = _log_cols(theta[jnp.asarray(state.spec.cond_idx)], state.spec.cond_log)
    return 2.0 * (c - state.lo) / (state.hi - state.lo) - 1.0


def _flux(state: VAEState, theta):
    return theta[state.spec.flux_idx] if state.spec.flux_idx >= 0 else jnp.ones((), theta.dtype)


def decode(state: VAEState, z, psf=None):
    """Latent float[latent] -> unit-flux image float[ny, nx] (convolved with ``psf`` if given)."""
    _, dec, _ = _modules(state.spec)
    img = state.mean_image + state.img_scale * dec.apply(state.params["dec"], z[None])[0]
    if state.spec.psf_mode:
        if psf is None:
            raise ValueError("this psf_mode VAE needs a PSF image: use predict_with_psf")
        img = psf_convolve(img, psf)
    return img


def encode(state: VAEState, image, theta):
    """(mean, log-variance) float[latent] of q(z | image) for an image in flux units."""
    enc, _, _ = _modules(state.spec)
    x = (image / _flux(state, theta) - state.mean_image) / state.img_scale
    mu, logvar = enc.apply(state.params["enc"], x[None])
    return mu[0], logvar[0]


def _latent(state: VAEState, theta):
    c = _cond(state, theta)
    if state.spec.mode == "latent" and state.spec.regressor == "gp":
        zs = _latent_gp.gp_mean(state.params["gp"], c, kernel=state.spec.gp_kernel)
    else:
        _, _, reg = _modules(state.spec)
        zs = reg.apply(state.params["reg"], c[None])[0]
    return state.z_mean + state.z_std * zs


def render_psf(state: VAEState, theta):
    """Unit-flux PSF image float[py, px] from the ``psf_param`` column (renderer conventions)."""
    from jaxsky.render import Gaussian, Moffat, draw

    spec = state.spec
    if spec.psf_idx < 0:
        raise ValueError("the PSF is not a parameter of this emulator: use predict_with_psf")
    fw = theta[spec.psf_idx]
    psf = Gaussian(fwhm=fw) if spec.psf_profile == "gaussian" else Moffat(spec.psf_beta, fwhm=fw)
    py, px = spec.psf_shape
    return draw(psf, nx=px, ny=py, scale=spec.scale, plan=spec.psf_plan)


def predict_with_psf(state: VAEState, theta, psf):
    """Image float[ny, nx] (flux units) for theta float[P] and a unit-flux PSF float[py, px]."""
    return _flux(state, theta) * decode(state, _latent(state, theta), psf)


def predict(state: VAEState, theta):
    """Mean image float[ny, nx] in flux units for one theta float[P] (pure, differentiable)."""
    psf = render_psf(state, theta) if state.spec.psf_mode else None
    return predict_with_psf(state, theta, psf)


def sample(state: VAEState, theta, *, key):
    """A random image: the latent drawn around its regression mean with the aggregate spread
    of the training posteriors (latent mode); the conditional variant is deterministic."""
    if state.spec.mode != "latent":
        return predict(state, theta)
    eps = jax.random.normal(key, (state.spec.latent,), jnp.result_type(theta.dtype, float))
    z = _latent(state, theta) + state.z_res * eps
    psf = render_psf(state, theta) if state.spec.psf_mode else None
    return _flux(state, theta) * decode(state, z, psf)


def restore(raw, config, info) -> VAEState:
    spec_info = _InfoView(info, config)
    # models saved before ``log_cond`` / ``dense_features`` existed: linear conditioning, and
    # a dense decoder sized by ``dec_features``
    spec = _make_spec(
        spec_info, {**default_config(), "log_cond": False, "dense_features": None, **config}
    )
    params = jax.tree.map(jnp.asarray, raw["params"])
    if "gp" in params:
        params["gp"] = _latent_gp.GPState(**params["gp"])
    keys = ("lo", "hi", "mean_image", "img_scale", "z_mean", "z_std", "z_res")
    return VAEState(params=params, spec=spec, **{k: jnp.asarray(raw[k]) for k in keys})


class _InfoView:
    """The data-set attributes :func:`_make_spec` needs, from a saved emulator's ``info``."""

    def __init__(self, info, config):
        self.param_names = tuple(info["param_names"])
        self.ranges = {k: tuple(v) for k, v in info["ranges"].items()}
        self.shape = tuple(info["shape"])
        self.scale = float(info["scale"])
        psf_shape = config.get("psf_shape")
        self.psfs = None if psf_shape is None else np.zeros((1, *psf_shape), np.float32)


# ---------------------------------------------------------------------------- training
def _arrays(dataset, spec: Spec, cfg, split: str):
    """Normalised-unit inputs of one split: (unit-flux images, cond, sigma, psfs or None)."""
    part = dataset.split(split) if dataset.split_of is not None else dataset
    theta = np.asarray(part.params, np.float64)
    imgs = part.noisy() if cfg["noisy"] else np.asarray(part.images, np.float64)
    flux = theta[:, spec.flux_idx] if spec.flux_idx >= 0 else np.ones(len(theta))
    x = imgs / flux[:, None, None]
    sigma = np.asarray(part.noise_sigma if part.noise_sigma is not None else 0.0) / flux
    psfs = None if not spec.psf_mode else np.asarray(part.psfs, np.float32)
    return x, theta, np.broadcast_to(sigma, (len(theta),)), psfs


def _batcher(arrays, batch: int):
    n = len(arrays[0])

    def batches(step, key):
        idx = np.asarray(jax.random.randint(key, (min(batch, n),), 0, n))
        return tuple(None if a is None else jnp.asarray(a[idx]) for a in arrays)

    return batches


def fit(dataset, config, *, key, progress: bool = False, checkpoint_dir=None) -> VAEState:
    """Train the VAE emulator on ``dataset`` (train split; early stopping on the val split)."""
    cfg = {**default_config(), **config}
    spec = _make_spec(dataset, cfg)
    config["psf_shape"] = list(spec.psf_shape) if spec.psf_mode else None
    x, theta, sig, psfs = _arrays(dataset, spec, cfg, "train")
    has_val = dataset.split_of is not None and np.any(dataset.split_of == 1)
    xv, thv, sigv, psfv = _arrays(dataset, spec, cfg, "val") if has_val else (x, theta, sig, psfs)
    lo = np.array([dataset.ranges[dataset.param_names[i]][0] for i in spec.cond_idx])
    hi = np.array([dataset.ranges[dataset.param_names[i]][1] for i in spec.cond_idx])
    logc = np.asarray(spec.cond_log, bool)
    lo, hi = (
        np.where(logc, np.log(np.where(logc, lo, 1.0)), lo),
        np.where(logc, np.log(np.where(logc, hi, 1.0)), hi),
    )
    hi = np.where(hi > lo, hi, lo + 1.0)
    mean_image = x.mean(axis=0)
    img_scale = float(np.std(x - mean_image)) or 1.0
    f32 = np.float32
    state = VAEState(
        params={},
        lo=jnp.asarray(lo, f32),
        hi=jnp.asarray(hi, f32),
        mean_image=jnp.asarray(mean_image, f32),
        img_scale=jnp.asarray(img_scale, f32),
        z_mean=jnp.zeros(spec.latent, f32),
        z_std=jnp.ones(spec.latent, f32),
        z_res=jnp.zeros(spec.latent, f32),
        spec=spec,
    )

    def norm_cond(th):
        c = np.asarray(_log_cols(jnp.asarray(th[:, list(spec.cond_idx)]), spec.cond_log))
        return 2.0 * (c - lo) / (hi - lo) - 1.0

    def pack(xx, th, sg, ps):
        # Gaussian likelihood weight per image; the sigma floor is relative to the image's own
        # peak, so noiseless sets are fitted in relative units (the max|res|/peak metric's);
        # peaks count at least 1e-3 of the largest one, so blank images keep a finite weight
        peak = np.abs(xx).max(axis=(1, 2))
        floor = cfg["noise_floor"] * np.maximum(peak, 1e-3 * (float(peak.max()) or 1.0))
        w = 1.0 / np.maximum(sg, floor) ** 2
        return (xx.astype(f32), norm_cond(th).astype(f32), w.astype(f32), ps)

    train, val = pack(x, theta, sig, psfs), pack(xv, thv, sigv, psfv)
    enc, dec, reg = _modules(spec)
    k_enc, k_dec, k_reg, k1, k2, k3 = jax.random.split(key, 6)
    ny, nx = spec.shape
    npix = ny * nx
    loop = dict(progress=progress, val_every=cfg["val_every"], patience=cfg["patience"])
    opt = optax.adam(_schedule(cfg["lr"], cfg["steps"], cfg["warmup"]))

    def ckpt(name):
        return None if checkpoint_dir is None else f"{checkpoint_dir}/{name}"

    def image_nll(dec_params, z, xb, wb, pb):
        """Gaussian negative log-likelihood per pixel (beta-VAE reconstruction term)."""
        img = state.mean_image + state.img_scale * dec.apply(dec_params, z)
        if spec.psf_mode:
            img = jax.vmap(psf_convolve)(img, pb)
        return 0.5 * jnp.mean(jnp.sum((img - xb) ** 2, axis=(1, 2)) * wb) / npix

    d0 = dec.init(k_dec, jnp.zeros((1, spec.latent)))
    r0 = reg.init(k_reg, jnp.zeros((1, len(spec.cond_idx))))
    if spec.mode == "conditional":

        def loss_c(p, batch, k):
            xb, cb, wb, pb = batch
            return image_nll(p["dec"], reg.apply(p["reg"], cb), xb, wb, pb)

        res = train_loop(
            loss_c,
            {"dec": d0, "reg": r0},
            _batcher(train, cfg["batch_size"]),
            optimizer=opt,
            n_steps=cfg["steps"],
            key=k1,
            val_fn=lambda p: loss_c(p, _dev(val), None),
            checkpoint_dir=ckpt("cond"),
            description="vae (conditional decoder)",
            **loop,
        )
        return state.replace(params=res.params)

    # --- latent mode: stage 1, the beta-VAE on images
    e0 = enc.init(k_enc, jnp.zeros((1, ny, nx)))
    beta = cfg["beta"]

    def loss_vae(p, batch, k):
        xb, _, wb, pb = batch
        mu, logvar = enc.apply(p["enc"], (xb - state.mean_image) / state.img_scale)
        z = mu if k is None else mu + jnp.exp(0.5 * logvar) * jax.random.normal(k, mu.shape)
        kl = 0.5 * jnp.mean(jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=1))
        return image_nll(p["dec"], z, xb, wb, pb) + beta * kl / npix

    res = train_loop(
        loss_vae,
        {"enc": e0, "dec": d0},
        _batcher(train, cfg["batch_size"]),
        optimizer=opt,
        n_steps=cfg["steps"],
        key=k1,
        val_fn=lambda p: loss_vae(p, _dev(val), None),
        checkpoint_dir=ckpt("vae"),
        description="vae (autoencoder)",
        **loop,
    )
    p_ae = res.params
    enc_mu = jax.jit(lambda xx: enc.apply(p_ae["enc"], (xx - state.mean_image) / state.img_scale))
    mu_t, lv_t = (np.asarray(a) for a in enc_mu(jnp.asarray(train[0])))
    mu_v = np.asarray(enc_mu(jnp.asarray(val[0]))[0])
    z_mean, z_std = mu_t.mean(0), mu_t.std(0) + 1e-6
    zt, zv = (mu_t - z_mean) / z_std, (mu_v - z_mean) / z_std
    state = state.replace(z_mean=jnp.asarray(z_mean, f32), z_std=jnp.asarray(z_std, f32))

    # --- stage 2: theta -> latent regression
    if spec.regressor == "gp":
        gp = _latent_gp.gp_fit(train[1], zt, kernel=spec.gp_kernel, steps=cfg["gp_steps"])
        params = {"enc": p_ae["enc"], "dec": p_ae["dec"], "gp": gp}
        pred = jax.vmap(lambda c: _latent_gp.gp_mean(gp, c, kernel=spec.gp_kernel))
    else:

        def loss_r(p, batch, k):
            return jnp.mean((reg.apply(p, batch[1]) - batch[0]) ** 2)

        r_val = (jnp.asarray(zv, f32), jnp.asarray(val[1]))
        res = train_loop(
            loss_r,
            r0,
            _batcher((zt.astype(f32), train[1]), cfg["batch_size"]),
            optimizer=optax.adam(_schedule(cfg["lr"], cfg["reg_steps"], cfg["warmup"])),
            n_steps=cfg["reg_steps"],
            key=k2,
            val_fn=lambda p: loss_r(p, r_val, None),
            checkpoint_dir=ckpt("reg"),
            description="vae (latent regression)",
            **loop,
        )
        params = {"enc": p_ae["enc"], "dec": p_ae["dec"], "reg": res.params}
        pred = jax.jit(lambda c: reg.apply(params["reg"], c))

    # --- stage 3 (MLP only): fine-tune regressor + decoder end to end on the images
    if spec.regressor == "mlp" and cfg["finetune_steps"] > 0:

        def loss_f(p, batch, k):
            xb, cb, wb, pb = batch
            z = state.z_mean + state.z_std * reg.apply(p["reg"], cb)
            return image_nll(p["dec"], z, xb, wb, pb)

        n_ft = cfg["finetune_steps"]
        res = train_loop(
            loss_f,
            {"dec": params["dec"], "reg": params["reg"]},
            _batcher(train, cfg["batch_size"]),
            optimizer=optax.adam(_schedule(0.3 * cfg["lr"], n_ft, cfg["warmup"])),
            n_steps=n_ft,
            key=k3,
            val_fn=lambda p: loss_f(p, _dev(val), None),
            checkpoint_dir=ckpt("finetune"),
            description="vae (fine-tune)",
            **loop,
        )
        params = {**params, **res.params}
        pred = jax.jit(lambda c: reg.apply(params["reg"], c))
    z_res = np.std(zt - np.asarray(pred(jnp.asarray(train[1]))), axis=0)
    z_post = np.sqrt(np.mean(np.exp(lv_t), axis=0)) / z_std
    z_res = z_std * np.sqrt(z_res**2 + z_post**2)
    return state.replace(params=params, z_res=jnp.asarray(z_res, f32))


def _schedule(lr: float, steps: int, warmup: float):
    """Linear warm-up over ``warmup * steps`` then cosine decay to 1% (Loshchilov & Hutter 2017)."""
    steps = max(int(steps), 2)
    n_warm = min(max(int(warmup * steps), 1), steps - 1)
    return optax.warmup_cosine_decay_schedule(0.0, lr, n_warm, steps, 0.01 * lr)


def _dev(batch):
    return tuple(None if a is None else jnp.asarray(a) for a in batch)


FAMILY = register_family(
    EmulatorFamily(
        name="vae",
        default_config=default_config,
        fit=fit,
        predict=predict,
        restore=restore,
        sample=sample,
    )
)
