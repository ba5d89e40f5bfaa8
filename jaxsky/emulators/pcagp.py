"""PCA + Gaussian-process emulator (the SkyEmu recipe, with better representations).

Images are mapped to a representation that PCA compresses well, projected on the leading
principal components (SVD in JAX), and each whitened coefficient is interpolated over the
normalised parameters by a GP (ARD Matern-5/2 or RBF kernels) whose hyper-parameters
maximise the marginal likelihood (optax Adam). Components are split into ``groups`` (by
explained-variance rank) that share one kernel; by default each leading component gets its
own kernel (their length scales differ most) and later ones share a few, and log peak has its
own. The hyper-parameters of each group are fitted with optax on a subset of the points.

GP inputs (config ``features``): ``"moments"`` maps (size, g1, g2, psf_fwhm) to the log size,
conformal shear and log PSF size of the PSF-convolved light (:mod:`._pca_features`), which
the images follow more evenly than the g1-g2 box; other parameters stay in the unit box.
``"unit"``: the unit box of the (logged) parameters. ``"auto"``: moments where they apply.

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
from jaxsky.emulators._pca_features import moment_columns, moment_features

__all__ = ["PCAGPState", "default_config", "fit", "predict", "predict_var", "restore", "FAMILY"]

_MODES = ("peak", "flux", "none")
_KERNELS = ("matern52", "rbf")
_FEATURES = ("auto", "moments", "unit")


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
    feat_lo: jax.Array | None = None  # float[F] feature offsets (None: unit-box inputs)
    feat_width: jax.Array | None = None  # float[F] feature widths
    flux_col: int = struct.field(pytree_node=False, default=-1)
    mode: str = struct.field(pytree_node=False, default="peak")
    kernel: str = struct.field(pytree_node=False, default="matern52")
    moments: tuple | None = struct.field(pytree_node=False, default=None)  # feature columns


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
        "features": "auto",  # GP inputs: "auto" | "moments" | "unit"
        "groups": [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48],  # ranks starting a kernel group
        "peak_group": "own",  # log-peak kernel: "own" group or "first" (shared)
        # points and Adam steps for the kernel hyper-parameters: on 2,048 paper images
        # 256 / 120 trains in ~17 s (p95 max|res|/peak 1.3e-3), 128 / 80 in ~9 s (2.4e-3)
        "n_hyper": 256,
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
    if cfg["features"] not in _FEATURES:
        raise ValueError(f"features={cfg['features']!r} is not one of {_FEATURES}")
    if cfg["peak_group"] not in ("own", "first"):
        raise ValueError(f"peak_group={cfg['peak_group']!r} is not one of ('own', 'first')")
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
    moments = _moment_cols(names, cfg["features"])
    X = _inputs(norm, jnp.asarray(theta), flux_col, moments)
    feat_lo = feat_width = None
    if moments is not None:  # affine map of the features to the unit box of the training set
        feat_lo = X.min(0)
        feat_width = jnp.maximum(X.max(0) - feat_lo, 1e-12)
        X = (X - feat_lo) / feat_width
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
        # "first": the log peak shares the leading component's kernel (the older layout)
        group_of[-1] = group_of[:-1].max() + 1 if cfg["peak_group"] == "own" else 0
    n_groups = int(group_of.max()) + 1
    sub = np.asarray(jax.random.permutation(key, n))[: min(int(cfg["n_hyper"]), n)]
    la, ll, ln = _fit_hypers(X[sub], Z[sub], group_of, n_groups, cfg, progress)
    zg = _padded(np.asarray(Z), group_of, n_groups)  # float[G, N, W]
    chol, alpha = [], np.zeros((e, n))
    for g in _iter(n_groups, progress, "PCA+GP: conditioning"):
        cols = np.flatnonzero(group_of == g)
        L, a, ln_g = _condition_floored(cfg["kernel"], la[g], ll[g], ln[g], X, jnp.asarray(zg[g]))
        ln = ln.at[g].set(ln_g)
        a = np.asarray(a)
        chol.append(L)
        alpha[cols] = a[:, : len(cols)].T
    chol = jnp.stack(chol)
    alpha = jnp.asarray(alpha)
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
        feat_lo=feat_lo,
        feat_width=feat_width,
        flux_col=flux_col,
        mode=mode,
        kernel=cfg["kernel"],
        moments=moments,
    )


def _moment_cols(names, features: str):
    """Static (sorted item) tuple of moment-feature columns, or None for unit-box inputs."""
    if features == "unit":
        return None
    cols = moment_columns(names)
    if cols is None and features == "moments":
        raise ValueError(
            f"features='moments' needs a size (scale_radius or half_light_radius) and psf_fwhm "
            f"among the parameters {tuple(names)}; use features='unit'"
        )
    return None if cols is None else tuple(sorted(cols.items()))


def _iter(n, progress, what="PCA+GP: kernel groups"):
    if not progress:
        return range(n)
    from rich.progress import track

    return track(range(n), description=what)


def _nll(q, x, z, kind, floor, w=None):
    """Negative log marginal likelihood per point, averaged over the columns of z (Eq. 2.30).

    ``w`` float[M] optionally weighs the columns (0 masks a padding column).
    """
    n, m = z.shape
    w = jnp.ones((m,), z.dtype) if w is None else w
    noise = jnp.exp(jnp.maximum(q["n"], floor))
    chol = jnp.linalg.cholesky(_kmat(kind, q["a"], q["l"], x, x) + noise * jnp.eye(n))
    alpha = cho_solve((chol, True), z)
    quad = jnp.sum(w * jnp.sum(z * alpha, axis=0)) / jnp.sum(w)
    return (0.5 * quad + jnp.sum(jnp.log(jnp.diag(chol)))) / n + 0.5 * jnp.log(2 * jnp.pi)


def _padded(z, group_of, n_groups: int):
    """float[G, N, W] columns of z per group, zero-padded to the largest group's width W."""
    width = int(np.bincount(group_of, minlength=n_groups).max())
    out = np.zeros((n_groups, z.shape[0], width))
    for g in range(n_groups):
        cols = np.flatnonzero(group_of == g)
        out[g, :, : len(cols)] = z[:, cols]
    return out


def _fit_hypers(x, z, group_of, n_groups: int, cfg, progress=False):
    """Maximise each group's summed marginal likelihood (optax Adam on a subset).

    Columns are zero-padded to one width (weight 0) so that one compiled loop serves every
    group. Returns (log_amp float[G], log_ls float[G, P], log_noise float[G]).
    """
    n, p = x.shape
    zg = _padded(np.asarray(z), group_of, n_groups)
    wg = _padded(np.ones((1, len(group_of))), group_of, n_groups)[:, 0]  # 1: real column
    floor = jnp.log(float(cfg["min_noise"]))
    init = {"a": jnp.zeros(()), "l": jnp.full((p,), jnp.log(0.3)), "n": jnp.log(1e-4)}
    opt = optax.adam(float(cfg["learning_rate"]))
    kind, steps = cfg["kernel"], int(cfg["hyper_steps"])

    @jax.jit
    def run(zz, ww):
        def step(carry, _):
            q, s = carry
            val, g = jax.value_and_grad(_nll)(q, x, zz, kind, floor, ww)
            u, s = opt.update(g, s)
            return (optax.apply_updates(q, u), s), val

        (q, _), _ = jax.lax.scan(step, (init, opt.init(init)), None, length=steps)
        return q["a"], q["l"], jnp.maximum(q["n"], floor)

    out = [run(jnp.asarray(zg[g]), jnp.asarray(wg[g])) for g in _iter(n_groups, progress)]
    out = [tuple(np.asarray(v) for v in o) for o in out]  # wait here, group by group
    return tuple(jnp.asarray(np.stack([o[i] for o in out])) for i in range(3))


@partial(jax.jit, static_argnums=0)
def _condition(kind, la, ll, ln, x, z):
    """Cholesky factor float[N, N] and alpha = K^-1 z float[N, M] of one kernel group."""
    n = x.shape[0]
    chol = jnp.linalg.cholesky(_kmat(kind, la, ll, x, x) + jnp.exp(ln) * jnp.eye(n))
    return chol, cho_solve((chol, True), z)


def _condition_floored(kind, la, ll, ln, x, z, floors=(1e-8, 1e-6, 1e-4)):
    """:func:`_condition`, retried with the noise variance raised to each of ``floors`` while
    alpha is not finite (a near-singular K: long length scales). Returns (chol, alpha, ln) of
    the last attempt; the caller checks alpha."""
    for floor in (None, *floors):
        if floor is not None:
            ln = jnp.maximum(ln, np.log(floor))
        chol, alpha = _condition(kind, la, ll, ln, x, z)
        if bool(jnp.all(jnp.isfinite(alpha))):
            break
    return chol, alpha, ln


def _kstar(state: PCAGPState, x):
    """float[G, N] covariances between x (float[P], unit box) and the training inputs."""

    def one(la, ll):
        return _kmat(state.kernel, la, ll, x[None], state.X)[0]

    return jax.vmap(one)(state.log_amp, state.log_ls)


def _inputs(norm, theta, flux_col: int, moments=None):
    """GP inputs float[..., F]: unit-box parameters with the analytically applied flux zeroed.

    With ``moments`` (static columns), the size, shear and PSF columns are replaced by the
    moment features (before their affine map to the training box).
    """
    x = to_unit(norm, theta)
    if flux_col >= 0:
        x = x.at[..., flux_col].set(0.0)
    if moments is None:
        return x
    cols = dict(moments)
    used = {cols["size"], cols["psf"], cols["g1"], cols["g2"], flux_col} - {-1}
    keep = [j for j in range(theta.shape[-1]) if j not in used]
    return jnp.concatenate([moment_features(theta, cols), x[..., keep]], axis=-1)


def _features(state: PCAGPState, theta):
    x = _inputs(state.norm, theta, state.flux_col, state.moments)
    if state.moments is not None:
        x = (x - state.feat_lo) / state.feat_width
    return x


def _outputs(state: PCAGPState, theta):
    x = _features(state, theta)
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
    arrays = ("feat_lo", "feat_width")
    # a state without a feature map (also any checkpoint written before ``features`` existed,
    # alone or inside an ensemble) used unit-box inputs; the kernel groups are in the state
    moments = None
    if raw.get("feat_lo") is not None:
        moments = _moment_cols(names, "moments" if cfg["features"] == "unit" else cfg["features"])
        if cfg["features"] == "unit":
            raise ValueError("features='unit' does not match the saved moment-feature map")
    template = PCAGPState(
        norm=ThetaNorm(*(raw["norm"][f] for f in ThetaNorm._fields)),
        **{
            f: raw[f]
            for f in PCAGPState.__dataclass_fields__
            if f in raw and f != "norm" and (f not in arrays or raw[f] is not None)
        },
        flux_col=flux_column(names, cfg["flux_param"]),
        mode=cfg["normalize"],
        kernel=cfg["kernel"],
        moments=moments,
    )
    state = jax.tree.map(jnp.asarray, template)
    e, n = state.alpha.shape
    k = state.basis.shape[0]
    n_feat = len(names)
    if moments is not None:
        cols = dict(moments)
        used = {cols["size"], cols["psf"], cols["g1"], cols["g2"], state.flux_col} - {-1}
        n_feat = 4 + len(names) - len(used)
    if state.X.shape != (n, n_feat) or state.chol.shape[1:] != (n, n):
        raise ValueError(f"array shapes do not match {n} training points and {n_feat} inputs")
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
