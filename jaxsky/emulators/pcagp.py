"""PCA + Gaussian-process emulator (the SkyEmu recipe, with better representations).

Images are mapped to a representation that PCA compresses well, projected on the leading
principal components (SVD in JAX), and each whitened coefficient is interpolated over the
normalised parameters by a GP (ARD Matern-5/2 or RBF kernels) whose hyper-parameters
maximise the marginal likelihood (optax Adam). Components are split into ``groups`` (by
explained-variance rank) that share one kernel: one Cholesky per group instead of one per
component keeps training within seconds at 2,048 images.

Representation (config ``normalize``):
    ``"peak"``: the image divided by its flux parameter and by its own peak; log(peak per unit
    flux) is emulated as one more GP output. Every image then weighs the same in the PCA, which
    matches a max|residual|/peak metric, and flux is applied analytically.
    ``"flux"``: unit-flux images. ``"none"``: images as they are.

The mean is ``k*^T K^-1 z`` (Rasmussen & Williams 2006, Eq. 2.25) and the latent variance
``k** - k*^T K^-1 k*`` (Eq. 2.26), propagated to pixels through the components (assumed
independent) plus the per-pixel PCA truncation variance of the training set. GP algebra runs in
float64 (the :class:`~jaxsky.emulators.Emulator` wrapper enables it for ``predict``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.scipy.linalg import cho_solve, solve_triangular

from jaxsky.emulators._base import EmulatorFamily, register_family
from jaxsky.emulators._normalize import ThetaNorm, flux_column, theta_norm, to_unit

__all__ = ["PCAGPState", "default_config", "fit", "predict", "predict_var", "restore", "FAMILY"]

_MODES = ("peak", "flux", "none")
_KERNELS = ("matern52", "rbf")


@struct.dataclass
class PCAGPState:
    """Fitted PCA + GP emulator (a pytree; static fields are Python values).

    Shapes: N training points, P parameters, K components, E = K (+1 with ``"peak"``)
    GP outputs, G kernel groups.
    """

    norm: ThetaNorm  # parameter normalisation
    X: jax.Array  # float[N, P] training inputs in the unit box
    mean: jax.Array  # float[ny, nx] mean representation
    basis: jax.Array  # float[K, ny, nx] principal components
    out_mean: jax.Array  # float[E] mean of GP outputs (coefficients, log peak)
    out_std: jax.Array  # float[E] their standard deviations (whitening)
    alpha: jax.Array  # float[E, N] K_g^-1 z for each output
    chol: jax.Array  # float[G, N, N] Cholesky factor of each group's K + noise
    log_amp: jax.Array  # float[G]
    log_ls: jax.Array  # float[G, P] ARD length scales (unit-box units)
    log_noise: jax.Array  # float[G] white-noise variance (whitened units)
    group_of: jax.Array  # int[E] group of each output
    floor_var: jax.Array  # float[ny, nx] PCA truncation variance (representation units)
    flux_col: int = struct.field(pytree_node=False, default=-1)
    mode: str = struct.field(pytree_node=False, default="peak")
    kernel: str = struct.field(pytree_node=False, default="matern52")


def default_config() -> dict:
    """Configuration keys and defaults (all JSON-able)."""
    return {
        "normalize": "peak",  # "peak" | "flux" | "none"
        "flux_param": "auto",  # parameter applied analytically ("auto": "flux" if present)
        "log_params": None,  # names taken in log (None: sizes, fluxes, FWHMs)
        "n_components": None,  # fixed count, or None to use explained_variance
        "explained_variance": 1.0 - 1e-7,  # of the representation's variance
        "max_components": 128,
        "kernel": "matern52",  # "matern52" | "rbf"
        "groups": [8],  # component ranks where a new kernel group starts
        "n_hyper": 256,  # training points used to fit the kernel hyper-parameters
        "hyper_steps": 120,
        "learning_rate": 0.05,
        "min_noise": 1e-10,  # lower bound of the white-noise variance (whitened units)
        "splits": ["train", "val"],  # data-set splits used for training
    }


def _check_config(cfg: dict) -> None:
    if cfg["normalize"] not in _MODES:
        raise ValueError(f"normalize={cfg['normalize']!r} is not one of {_MODES}")
    if cfg["kernel"] not in _KERNELS:
        raise ValueError(f"kernel={cfg['kernel']!r} is not one of {_KERNELS}")
    ev = float(cfg["explained_variance"])
    if not 0 < ev <= 1:
        raise ValueError(f"explained_variance={ev} must be in (0, 1]")
    for k in ("max_components", "n_hyper", "hyper_steps"):
        if int(cfg[k]) < 1:
            raise ValueError(f"{k}={cfg[k]} must be >= 1")
    if cfg["n_components"] is not None and int(cfg["n_components"]) < 1:
        raise ValueError(f"n_components={cfg['n_components']} must be >= 1")


def _kmat(kind: str, log_amp, log_ls, x1, x2):
    """ARD kernel matrix float[N1, N2] (Rasmussen & Williams 2006, Eqs. 4.9 and 4.17)."""
    d = (x1[:, None, :] - x2[None, :, :]) * jnp.exp(-log_ls)
    r2 = jnp.sum(d**2, axis=-1)
    if kind == "rbf":
        return jnp.exp(log_amp - 0.5 * r2)
    # double where: the gradient of sqrt at r = 0 (a training input) stays finite
    pos = r2 > 0
    r = jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)
    s5 = jnp.sqrt(5.0) * r
    return jnp.exp(log_amp) * (1.0 + s5 + 5.0 * r2 / 3.0) * jnp.exp(-s5)


def _select(names, splits, split_of):
    from jaxsky.data.dataset import SPLITS

    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"splits={list(splits)} must be names from {SPLITS}")
    if split_of is None:
        return None
    return np.isin(split_of, [SPLITS.index(s) for s in splits])


def representation(images, theta, flux_col: int, mode: str):
    """(float[N, ny, nx] representation, float[N] log peak or None) of images."""
    rep = np.asarray(images, np.float64)
    if flux_col >= 0:
        rep = rep / theta[:, flux_col, None, None]
    if mode == "flux" or mode == "none":
        return rep, None
    peak = np.abs(rep).max(axis=(1, 2))
    if np.any(peak <= 0):
        raise ValueError("normalize='peak' needs images with a non-zero peak")
    return rep / peak[:, None, None], np.log(peak)


def fit(dataset, config: dict, *, key, progress: bool = False, **_) -> PCAGPState:
    """Fit PCA + GPs on ``dataset`` (see :func:`default_config`)."""
    cfg = {**default_config(), **config}
    _check_config(cfg)
    with jax.enable_x64(True):
        return _fit(dataset, cfg, key, progress)


def _fit(dataset, cfg, key, progress):
    names = dataset.param_names
    mask = _select(names, cfg["splits"], dataset.split_of)
    ds = dataset if mask is None or mask.all() else dataset.subset(mask)
    theta = np.asarray(ds.params, np.float64)
    n = len(theta)
    if n < 8:
        raise ValueError(f"the training set has {n} images; PCA + GP needs at least 8")
    flux_col = flux_column(names, cfg["flux_param"])
    mode = cfg["normalize"]
    if flux_col >= 0 and np.any(theta[:, flux_col] <= 0):
        raise ValueError(f"flux parameter {names[flux_col]!r} must be > 0 to normalise by it")
    norm = theta_norm(names, ds.ranges, cfg["log_params"])
    X = _inputs(norm, jnp.asarray(theta), flux_col)
    rep, log_peak = representation(ds.images, theta, flux_col, mode)
    ny, nx = rep.shape[1:]
    Y = jnp.asarray(rep.reshape(n, -1))
    mu = Y.mean(0)
    _, s, vt = jnp.linalg.svd(Y - mu, full_matrices=False)
    frac = np.cumsum(np.asarray(s) ** 2) / max(float(np.sum(np.asarray(s) ** 2)), 1e-300)
    if cfg["n_components"] is not None:
        k = int(cfg["n_components"])
    else:
        k = int(np.searchsorted(frac, float(cfg["explained_variance"])) + 1)
    k = max(1, min(k, int(cfg["max_components"]), n - 1, vt.shape[0]))
    V = vt[:k]
    C = (Y - mu) @ V.T
    floor = jnp.mean((Y - mu - C @ V) ** 2, axis=0).reshape(ny, nx)
    if log_peak is not None:
        C = jnp.concatenate([C, jnp.asarray(log_peak)[:, None]], axis=1)
    cm, cs = C.mean(0), jnp.maximum(C.std(0), 1e-300)
    Z = (C - cm) / cs
    e = Z.shape[1]
    bounds = sorted({int(b) for b in cfg["groups"] if 0 < int(b) < k})
    group_of = np.searchsorted(np.asarray(bounds), np.arange(e), side="right")
    if log_peak is not None:
        group_of[-1] = 0  # the log peak is smooth: it shares the leading components' kernel
    n_groups = int(group_of.max()) + 1
    sub = np.asarray(jax.random.permutation(key, n))[: min(int(cfg["n_hyper"]), n)]
    hyper = [_fit_hyper(X[sub], Z[sub][:, group_of == g], cfg) for g in _iter(n_groups, progress)]
    la = jnp.stack([h[0] for h in hyper])
    ll = jnp.stack([h[1] for h in hyper])
    ln = jnp.stack([h[2] for h in hyper])
    chol, alpha = [], jnp.zeros((e, n))
    for g in range(n_groups):
        cols = np.flatnonzero(group_of == g)
        L, a = _condition(cfg["kernel"], la[g], ll[g], ln[g], X, Z[:, cols])
        chol.append(L)
        alpha = alpha.at[cols].set(a.T)
    chol = jnp.stack(chol)
    if not bool(jnp.all(jnp.isfinite(alpha))):
        raise FloatingPointError("GP conditioning failed (non-finite); raise min_noise")
    return PCAGPState(
        norm=norm,
        X=X,
        mean=mu.reshape(ny, nx),
        basis=V.reshape(k, ny, nx),
        out_mean=cm,
        out_std=cs,
        alpha=alpha,
        chol=chol,
        log_amp=la,
        log_ls=ll,
        log_noise=ln,
        group_of=jnp.asarray(group_of, jnp.int32),
        floor_var=floor,
        flux_col=flux_col,
        mode=mode,
        kernel=cfg["kernel"],
    )


def _iter(n, progress):
    if not progress:
        return range(n)
    from rich.progress import track

    return track(range(n), description="PCA+GP: kernel groups")


def _nll(q, x, z, kind, floor):
    """Negative log marginal likelihood per point, averaged over the columns of z (Eq. 2.30)."""
    n, m = z.shape
    noise = jnp.exp(jnp.maximum(q["n"], floor))
    chol = jnp.linalg.cholesky(_kmat(kind, q["a"], q["l"], x, x) + noise * jnp.eye(n))
    alpha = cho_solve((chol, True), z)
    quad = jnp.sum(z * alpha) / m
    return (0.5 * quad + jnp.sum(jnp.log(jnp.diag(chol)))) / n + 0.5 * jnp.log(2 * jnp.pi)


def _fit_hyper(x, z, cfg):
    """Maximise the summed marginal likelihood of the columns of z (one shared kernel)."""
    p = x.shape[1]
    floor = jnp.log(float(cfg["min_noise"]))
    params = {"a": jnp.zeros(()), "l": jnp.full((p,), jnp.log(0.3)), "n": jnp.log(1e-4)}
    opt = optax.adam(float(cfg["learning_rate"]))
    kind = cfg["kernel"]

    def step(carry, _):
        q, s = carry
        loss, g = jax.value_and_grad(_nll)(q, x, z, kind, floor)
        u, s = opt.update(g, s)
        return (optax.apply_updates(q, u), s), loss

    (q, _), _ = jax.jit(
        lambda q: jax.lax.scan(step, (q, opt.init(q)), None, length=int(cfg["hyper_steps"]))
    )(params)
    return q["a"], q["l"], jnp.maximum(q["n"], floor)


@partial(jax.jit, static_argnums=0)
def _condition(kind, la, ll, ln, x, z):
    """Cholesky factor float[N, N] and alpha = K^-1 z float[N, M] of one kernel group."""
    n = x.shape[0]
    chol = jnp.linalg.cholesky(_kmat(kind, la, ll, x, x) + jnp.exp(ln) * jnp.eye(n))
    return chol, cho_solve((chol, True), z)


def _kstar(state: PCAGPState, x):
    """float[G, N] covariances between x (float[P], unit box) and the training inputs."""

    def one(la, ll):
        return _kmat(state.kernel, la, ll, x[None], state.X)[0]

    return jax.vmap(one)(state.log_amp, state.log_ls)


def _inputs(norm, theta, flux_col: int):
    """GP inputs: the unit-box parameters, with the analytically applied flux zeroed."""
    x = to_unit(norm, theta)
    if flux_col >= 0:
        x = x.at[..., flux_col].set(0.0)
    return x


def _outputs(state: PCAGPState, theta):
    x = _inputs(state.norm, theta, state.flux_col)
    ks = _kstar(state, x)
    z = jnp.sum(ks[state.group_of] * state.alpha, axis=1)
    return z * state.out_std + state.out_mean, ks


def _scale(state: PCAGPState, theta, c):
    k = state.basis.shape[0]
    s = jnp.ones((), c.dtype)
    if state.mode == "peak":
        s = jnp.exp(c[k])
    if state.flux_col >= 0:
        s = s * theta[state.flux_col]
    return s


def predict(state: PCAGPState, theta: jax.Array) -> jax.Array:
    """Mean image float[ny, nx] (flux per pixel) for one parameter vector float[P]."""
    c, _ = _outputs(state, theta)
    k = state.basis.shape[0]
    rep = state.mean + jnp.tensordot(c[:k], state.basis, axes=1)
    return rep * _scale(state, theta, c)


def predict_var(state: PCAGPState, theta: jax.Array) -> jax.Array:
    """Pixel variance float[ny, nx] of the prediction (GP latent variance + PCA floor)."""
    c, ks = _outputs(state, theta)
    k = state.basis.shape[0]
    v = jax.vmap(lambda c, kk: solve_triangular(c, kk, lower=True))(state.chol, ks)
    gvar = jnp.maximum(jnp.exp(state.log_amp) - jnp.sum(v**2, axis=1), 0.0)  # float[G]
    ovar = gvar[state.group_of] * state.out_std**2  # float[E] output variances
    rep = state.mean + jnp.tensordot(c[:k], state.basis, axes=1)
    rep_var = jnp.tensordot(ovar[:k], state.basis**2, axes=1) + state.floor_var
    s = _scale(state, theta, c)
    var = s**2 * rep_var
    if state.mode == "peak":  # delta method for the exp(log peak) factor
        var = var + (s * rep) ** 2 * ovar[k]
    return var


def restore(raw, config: dict, info: dict) -> PCAGPState:
    """Rebuild a state from its serialised dict (static fields from config/info)."""
    with jax.enable_x64(True):
        return _restore(raw, config, info)


def _restore(raw, config, info):
    cfg = {**default_config(), **config}
    names = info["param_names"]
    template = PCAGPState(
        norm=ThetaNorm(*(raw["norm"][f] for f in ThetaNorm._fields)),
        **{f: raw[f] for f in PCAGPState.__dataclass_fields__ if f in raw and f != "norm"},
        flux_col=flux_column(names, cfg["flux_param"]),
        mode=cfg["normalize"],
        kernel=cfg["kernel"],
    )
    state = jax.tree.map(jnp.asarray, template)
    e, n = state.alpha.shape
    k = state.basis.shape[0]
    if state.X.shape != (n, len(names)) or state.chol.shape[1:] != (n, n):
        raise ValueError(f"array shapes do not match {n} training points and {len(names)} params")
    if e != k + (state.mode == "peak") or tuple(state.mean.shape) != tuple(info["shape"]):
        raise ValueError("component or image shapes do not match the configuration")
    return state


FAMILY = register_family(
    EmulatorFamily(
        name="pcagp",
        default_config=default_config,
        fit=fit,
        predict=predict,
        restore=restore,
        predict_var=predict_var,
        x64=True,
    )
)
