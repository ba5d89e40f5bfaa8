"""The hybrid emulator's flux model: a GP of log(truth flux / analytic flux) in the stamp.

The hybrid's analytic part (e.g. a galaxy's own single-Sersic fit) is least-squares optimal per
image, not flux-exact: on ``bulge-disk-knots`` it puts a median 0.24% too much flux in the stamp
(the Sersic wings). A learned residual carries that flux only as well as it is trusted: the
fitted shrinkage weight (~0.5) halves it, so the hybrid kept a 1.6e-3 flux bias. Here the flux
is modelled on its own:

* ``y = log(sum truth / sum analytic)`` (in-stamp sums) is interpolated over the normalised
  parameters by a GP (ARD Matern-5/2 or RBF, hyper-parameters by marginal likelihood on a
  subset, Rasmussen & Williams 2006 Eqs. 2.25 and 2.30; the PCA+GP family's kernels and
  optimiser are reused);
* the flux enters the image through a unit-sum ``template`` (float[ny, nx]): ``"uniform"``
  (1 / pixels, the default: a pedestal costs the least pixel error per unit of flux and never
  amplifies an error of the predicted flux), or ``"learned"``, the least-squares pixel pattern
  of the training residuals' flux, ``T = sum_i f_i r_i / sum_i f_i^2`` with ``f_i = sum r_i``
  (it sums to 1 by construction). ``"learned"`` helps where the flux differences dominate
  the residuals (``bulge-disk-knots``) but is ill-conditioned where they are small next to a
  flux-free pattern (a Sersic n = 1 fit of Gaussians: pixel values of hundreds, which magnify
  any error of the predicted flux). Scaling the analytic image instead would put the
  correction in the core, where the residual is not: that cost R^2 (0.999904 -> 0.999825);
* the learned residual is trained with its flux removed (``r - sum(r) T``), so its shrinkage
  no longer touches the flux.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsky.emulators._normalize import ThetaNorm, theta_norm, to_unit

__all__ = [
    "FluxModel",
    "default_flux_config",
    "flux_target",
    "flux_template",
    "fit_flux",
    "log_flux_ratio",
    "restore_flux",
]

_TEMPLATES = ("learned", "uniform")


@struct.dataclass
class FluxModel:
    """Fitted flux GP (a pytree). N training points, P parameters."""

    norm: ThetaNorm  # parameter normalisation to the unit box
    X: jax.Array  # float[N, P] training inputs (unit box)
    alpha: jax.Array  # float[N] K^-1 z (z: the whitened targets)
    log_amp: jax.Array  # float[] log kernel variance (whitened units)
    log_ls: jax.Array  # float[P] ARD length scales (unit-box units)
    y_mean: jax.Array  # float[] mean of the targets
    y_std: jax.Array  # float[] their standard deviation
    template: jax.Array  # float[ny, nx] unit-sum pixel pattern of the flux correction
    kernel: str = struct.field(pytree_node=False, default="matern52")


def default_flux_config() -> dict:
    """Flux-model settings (JSON-able); ``log_params`` None: the residual's, else the default."""
    return {
        "kernel": "matern52",  # "matern52" | "rbf"
        "template": "uniform",  # "uniform" | "learned"
        "log_params": None,
        "n_hyper": 512,  # points used to fit the kernel hyper-parameters
        "hyper_steps": 150,
        "learning_rate": 0.05,
        "min_noise": 1e-6,  # white-noise floor (whitened units)
    }


def check_flux_config(cfg: dict) -> None:
    from jaxsky.emulators.pcagp import _KERNELS  # the GP machinery is PCA+GP's

    if cfg["kernel"] not in _KERNELS:
        raise ValueError(f"flux kernel={cfg['kernel']!r} is not one of {_KERNELS}")
    if cfg["template"] not in _TEMPLATES:
        raise ValueError(f"flux template={cfg['template']!r} is not one of {_TEMPLATES}")
    for k in ("n_hyper", "hyper_steps"):
        if int(cfg[k]) < 1:
            raise ValueError(f"flux {k}={cfg[k]} must be >= 1")
    if not float(cfg["min_noise"]) > 0:
        raise ValueError(f"flux min_noise={cfg['min_noise']} must be > 0")


def flux_target(images, model) -> np.ndarray:
    """float64[N] log(sum images / sum model) over each stamp; NaN where a sum is not > 0.

    Noisy, background-subtracted stamps of faint galaxies can sum to <= 0; such rows carry no
    flux ratio and are left out of the flux GP's training (the caller decides).
    """
    ft = np.asarray(images, np.float64).sum(axis=(-2, -1))
    fm = np.asarray(model, np.float64).sum(axis=(-2, -1))
    ok = (ft > 0) & (fm > 0) & np.isfinite(ft) & np.isfinite(fm)
    return np.where(ok, np.log(np.where(ok, ft, 1.0) / np.where(ok, fm, 1.0)), np.nan)


def flux_template(resid, mode: str) -> np.ndarray:
    """Unit-sum float64[ny, nx] template from residuals float[N, ny, nx] (see module doc)."""
    resid = np.asarray(resid, np.float64)
    npix = resid.shape[-1] * resid.shape[-2]
    uniform = np.full(resid.shape[-2:], 1.0 / npix)
    if mode == "uniform":
        return uniform
    f = resid.sum(axis=(-2, -1))
    den = float(np.sum(f**2))
    if not den > 0:  # no flux differences to learn a pattern from (exact analytic part)
        return uniform
    return np.tensordot(f, resid, axes=1) / den  # sums to sum(f^2) / den = 1


def fit_flux(theta, y, names, ranges, cfg: dict, template, *, key) -> FluxModel:
    """Fit the GP of ``y`` float[N] on ``theta`` float[N, P] (physical units, ``ranges`` box)."""
    from jaxsky.emulators import pcagp

    check_flux_config(cfg)
    theta = np.asarray(theta, np.float64)
    y = np.asarray(y, np.float64)
    if len(y) < 4:
        raise ValueError(f"flux_correction='gp' needs at least 4 training rows, got {len(y)}")
    with jax.enable_x64(True):
        norm = theta_norm(names, ranges, cfg["log_params"])
        x = to_unit(norm, jnp.asarray(theta))
        mu, sd = float(y.mean()), float(max(y.std(), 1e-12))
        z = jnp.asarray((y - mu) / sd)[:, None]
        sub = np.asarray(jax.random.permutation(key, len(y)))[: min(int(cfg["n_hyper"]), len(y))]
        kind = cfg["kernel"]
        la, ll, ln = pcagp._fit_hypers(x[sub], z[sub], np.zeros(1, int), 1, cfg)
        _, alpha, _ = pcagp._condition_floored(
            kind, la[0], ll[0], ln[0], x, z, floors=(1e-8, 1e-6, 1e-4, 1e-2)
        )
        if not bool(jnp.all(jnp.isfinite(alpha))):
            raise FloatingPointError("flux GP conditioning failed (non-finite); raise min_noise")
        return FluxModel(
            norm=norm,
            X=x,
            alpha=alpha[:, 0],
            log_amp=la[0],
            log_ls=ll[0],
            y_mean=jnp.asarray(mu),
            y_std=jnp.asarray(sd),
            template=jnp.asarray(template, jnp.float64),
            kernel=kind,
        )


def log_flux_ratio(fm: FluxModel, theta):
    """Predicted log(truth flux / analytic flux) float[] at theta float[P] (GP mean, Eq. 2.25)."""
    from jaxsky.emulators.pcagp import _kmat

    x = to_unit(fm.norm, theta)
    k = _kmat(fm.kernel, fm.log_amp, fm.log_ls, x[None], fm.X)[0]
    return fm.y_mean + fm.y_std * (k @ fm.alpha)


def restore_flux(raw, cfg: dict) -> FluxModel:
    """Rebuild a :class:`FluxModel` from its ``flax.serialization`` state dict (float64)."""
    with jax.enable_x64(True):
        return _restore(raw, cfg)


def _restore(raw, cfg):
    fm = FluxModel(
        norm=ThetaNorm(*(jnp.asarray(raw["norm"][f]) for f in ThetaNorm._fields)),
        **{
            f: jnp.asarray(raw[f])
            for f in FluxModel.__dataclass_fields__
            if f not in ("norm", "kernel")
        },
        kernel=cfg["kernel"],
    )
    n, p = fm.X.shape
    if fm.alpha.shape != (n,) or fm.log_ls.shape != (p,) or fm.norm.lo.shape != (p,):
        raise ValueError(f"flux model arrays do not match {n} training points and {p} inputs")
    return fm
