"""Physics-aware hybrid emulator (family ``"hybrid"``): analytic render(theta) + learned residual.

Flux, size, shear, PSF and pixel response come from jaxsky's renderer (so they are exact where
the profile is right); a learned family (``residual_family``: ``"vae"``, ``"pcagp"``, ...) is
trained only on ``image - render(theta)``, the part the profile lacks (bulge/disk structure,
star-forming clumps, real-galaxy morphology).

The analytic profile (``config["profile"]``) is ``"exponential"`` (the ``paper`` preset: an
Exponential of ``flux`` and ``scale_radius``), ``"sersic"`` (``flux``, ``n``,
``half_light_radius``) or ``"bulge-disk"`` (the ``bulge-disk``/``bulge-disk-knots`` presets:
de Vaucouleurs bulge of ``flux * bulge_fraction`` and ``bulge_hlr`` + exponential disk of
``disk_hlr``; with ``knot_fraction`` the disk's knot flux is drawn as the knots' expected
profile, see :func:`_profile`), sheared by ``g1``/``g2``, shifted by ``dx``/``dy`` (arcsec) and
convolved with a Gaussian or Moffat PSF of FWHM ``psf_fwhm``. ``config["columns"]`` maps these
roles to the data set's parameter names; a role mapped to a number is held fixed at that value
(e.g. ``{"g2": 0.0}``); ``g1``, ``g2``, ``dx``, ``dy`` and ``knot_fraction`` default to 0 when
the data set has no such column.

``config["residual_scale"]`` sets the units the residual family learns: ``"none"`` (flux per
pixel), ``"flux"`` (per unit of the ``flux`` role) or ``"peak"`` (per unit of the analytic
image's own peak, which matches a max|residual|/peak metric and is known at predict time).
``config["residual_weight"]`` multiplies the learned residual: a number (default 1), or
``"auto"``: the residual family is trained without the data set's ``val`` split (its own
train/val split is redrawn from the rest) and the weight w in [0, 1] minimising the ``val``
squared error of ``analytic + w * residual`` is kept. A residual that is irreducible noise
(stochastic structure such as random star-forming knots, which theta does not fix) then gets
w ~ 0 instead of adding its overfit noise to an exact conditional mean.

Per-galaxy Sersic fits (what a survey catalogue gives for every galaxy): :func:`with_sersic_fit`
appends each image's single-Sersic fit (``jaxsky.infer.fit_sersic`` columns, or a catalogue's)
to the data set's parameters, and :func:`sersic_fit_config` maps the ``"sersic"`` profile's
roles onto them. The analytic part is then that galaxy's own best Sersic render and the residual
family, conditioned on (design parameters, fit), learns what a single Sersic misses.

``config["flux_correction"]``: ``None`` (default) or ``"gp"`` (the default of
:func:`sersic_fit_config`): the in-stamp flux gets its own model (:mod:`._flux_model`, settings
in ``config["flux"]``): a GP predicts ``log(flux of the image / flux of the analytic part)`` from
theta and adds the difference through a unit-sum pixel template ``T``; the residual family learns
``r - sum(r) T`` (no flux), so the shrinkage weight no longer shrinks the flux. The image is then
``analytic + s w (R - sum(R) T) + sum(analytic) expm1(f(theta)) T``.
"""

from __future__ import annotations

import dataclasses
import warnings

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.data.dataset import SPLITS, assign_splits
from jaxsky.emulators._base import EmulatorFamily, get_family, register_family
from jaxsky.emulators._flux_model import (
    check_flux_config,
    default_flux_config,
    fit_flux,
    flux_target,
    flux_template,
    log_flux_ratio,
    restore_flux,
)

__all__ = [
    "HybridState",
    "default_config",
    "fit",
    "analytic",
    "predict",
    "residual_scale",
    "render_dataset",
    "restore",
    "SERSIC_FIT",
    "sersic_fit_config",
    "with_sersic_fit",
    "FAMILY",
]

_COMMON = ("g1", "g2", "dx", "dy", "psf_fwhm")
_ROLES = {
    "exponential": ("flux", "scale_radius", *_COMMON),
    "sersic": ("flux", "n", "half_light_radius", *_COMMON),
    "bulge-disk": ("flux", "bulge_fraction", "bulge_hlr", "disk_hlr", "knot_fraction", *_COMMON),
}
_OPTIONAL = ("g1", "g2", "dx", "dy", "knot_fraction")  # 0 when the data set lacks them
_SCALES = ("none", "flux", "peak")


def default_config() -> dict:
    return {
        "profile": "exponential",
        "columns": {},  # role -> parameter name or fixed number (default: the role's name)
        "psf_profile": "gaussian",
        "psf_beta": 3.5,
        "residual_family": "vae",
        "residual": {},  # config of the residual family (overrides its defaults)
        "residual_scale": "none",  # "none" | "flux" | "peak" (units of the learned residual)
        "residual_weight": 1.0,  # number, or "auto" (shrinkage fitted on the val split)
        "flux_correction": None,  # None | "gp": the in-stamp flux modelled on its own
        "flux": {},  # settings of the flux model (overrides _flux_model.default_flux_config)
        "plan": None,  # filled in by fit: the renderer's static FFT sizes
    }


@flax.struct.dataclass
class HybridState:
    """residual: the residual family's state; the rest is static (roles, plan, family name)."""

    residual: object
    roles: tuple = flax.struct.field(pytree_node=False)
    profile: str = flax.struct.field(pytree_node=False)
    psf: tuple = flax.struct.field(pytree_node=False)  # (profile, beta)
    plan: tuple = flax.struct.field(pytree_node=False)
    family: str = flax.struct.field(pytree_node=False)
    shape: tuple = flax.struct.field(pytree_node=False)
    scale_mode: str = flax.struct.field(pytree_node=False, default="none")
    weight: object = 1.0  # float[]: multiplies the learned residual
    flux: object = None  # _flux_model.FluxModel, or None (no separate flux model)


def _roles(names, cfg) -> tuple:
    """((role, column index or -1, fixed value), ...) for the configured profile."""
    if cfg["profile"] not in _ROLES:
        raise ValueError(f"hybrid profile={cfg['profile']!r} is not one of {sorted(_ROLES)}")
    if cfg["psf_profile"] not in ("gaussian", "moffat"):
        raise ValueError(f"psf_profile={cfg['psf_profile']!r} is not 'gaussian' or 'moffat'")
    if cfg.get("residual_scale", "none") not in _SCALES:
        raise ValueError(f"residual_scale={cfg['residual_scale']!r} is not one of {_SCALES}")
    if cfg.get("flux_correction") not in (None, "none", "gp"):
        raise ValueError(f"flux_correction={cfg['flux_correction']!r} is not None or 'gp'")
    out = []
    for role in _ROLES[cfg["profile"]]:
        src = cfg["columns"].get(role, role)
        if isinstance(src, int | float):
            out.append((role, -1, float(src)))
        elif src in names:
            out.append((role, list(names).index(src), 0.0))
        elif role in _OPTIONAL:
            out.append((role, -1, 0.0))  # e.g. unsheared when the data set has no shear column
        else:
            raise ValueError(
                f"hybrid: the {cfg['profile']} profile needs {role!r}; map it with "
                f"config columns={{'{role}': <parameter name or value>}} (parameters: {names})"
            )
    return tuple(out)


def _profile(roles, profile, psf, theta):
    from jaxsky.render import Add, Convolve, DeVaucouleurs, Exponential, Gaussian, Moffat, Sersic

    v = {r: (theta[..., i] if i >= 0 else jnp.full(theta.shape[:-1], x)) for r, i, x in roles}
    if profile == "exponential":
        gal = Exponential(flux=v["flux"], scale_radius=v["scale_radius"])
    elif profile == "sersic":
        gal = Sersic(v["n"], half_light_radius=v["half_light_radius"], flux=v["flux"])
    else:
        bf, kf = v["bulge_fraction"], v["knot_fraction"]
        disk = v["flux"] * (1.0 - bf)
        # GalSim's RandomKnots (default profile) places its point sources at random draws
        # from Gaussian(half_light_radius=hlr), so the knots' expected image is that Gaussian:
        # bulge + (1 - kf) disk + kf Gaussian is the conditional mean image given theta.
        gal = Add(
            [
                DeVaucouleurs(half_light_radius=v["bulge_hlr"], flux=v["flux"] * bf),
                Exponential(half_light_radius=v["disk_hlr"], flux=disk * (1.0 - kf)),
                Gaussian(half_light_radius=v["disk_hlr"], flux=disk * kf),
            ]
        )
    gal = gal.shear(g1=v["g1"], g2=v["g2"]).shift(v["dx"], v["dy"])
    kind, beta = psf
    p = Gaussian(fwhm=v["psf_fwhm"]) if kind == "gaussian" else Moffat(beta, fwhm=v["psf_fwhm"])
    return Convolve(gal, p)


def analytic(state: HybridState, theta):
    """The renderer's image float[ny, nx] of the analytic profile at theta float[P]."""
    from jaxsky.render import DrawPlan, draw

    plan = DrawPlan(*state.plan)
    obj = _profile(state.roles, state.profile, state.psf, theta)
    return draw(obj, nx=plan.nx, ny=plan.ny, scale=plan.scale, plan=plan)


def residual_scale(mode: str, roles, theta, model):
    """The factor the learned residual is multiplied by: 1, the flux role or the model's peak.

    theta: float[..., P]; model: float[..., ny, nx] analytic image(s). Returns float[...].
    """
    if mode == "none":
        return jnp.ones(theta.shape[:-1], model.dtype)
    if mode == "flux":
        (i, x) = next((i, x) for r, i, x in roles if r == "flux")
        return theta[..., i] if i >= 0 else jnp.full(theta.shape[:-1], x)
    return jnp.max(model, axis=(-2, -1))


def _combine(state: HybridState, theta, model, resid):
    """model + w s resid, or with a flux model: its flux through the template (module doc)."""
    s = state.weight * residual_scale(state.scale_mode, state.roles, theta, model)
    if state.flux is None:
        return model + s * resid
    t = state.flux.template
    phi = jnp.sum(model) * jnp.expm1(log_flux_ratio(state.flux, theta))
    return model + s * (resid - jnp.sum(resid) * t) + phi * t


def predict(state: HybridState, theta):
    """analytic(theta) + scale * learned residual(theta): float[ny, nx] in flux units."""
    model = analytic(state, theta)
    return _combine(state, theta, model, get_family(state.family).predict(state.residual, theta))


def sample(state: HybridState, theta, *, key):
    fam = get_family(state.family)
    if fam.sample is None:
        return predict(state, theta)
    model = analytic(state, theta)
    return _combine(state, theta, model, fam.sample(state.residual, theta, key=key))


def predict_var(state: HybridState, theta):
    """Pixel variance float[ny, nx] of the learned residual (the analytic part is exact; the
    flux model's own variance is not included)."""
    fam = get_family(state.family)
    if fam.predict_var is None:
        raise NotImplementedError(f"the residual family {state.family} has no variance")
    var = fam.predict_var(state.residual, theta)
    s = state.weight * residual_scale(state.scale_mode, state.roles, theta, analytic(state, theta))
    return s**2 * var


def render_dataset(dataset, cfg) -> tuple[np.ndarray, tuple, tuple]:
    """Analytic images float[N, ny, nx] of every row, with the roles and the static plan."""
    from jaxsky.render import draw_batch, make_plan

    roles = _roles(dataset.param_names, cfg)
    psf = (cfg["psf_profile"], float(cfg["psf_beta"]))
    ny, nx = dataset.shape
    objs = _profile(roles, cfg["profile"], psf, jnp.asarray(dataset.params))
    plan = make_plan(objs, nx, ny, dataset.scale)
    return np.asarray(draw_batch(objs, nx=nx, ny=ny, scale=dataset.scale, plan=plan)), roles, plan


def fit(dataset, config, *, key, progress: bool = False, checkpoint_dir=None) -> HybridState:
    """Render the analytic part of every image and fit ``residual_family`` on the residuals."""
    cfg = {**default_config(), **config}
    fam = get_family(cfg["residual_family"])
    if fam.name == "hybrid":
        raise ValueError("residual_family='hybrid' would recurse; use vae, pcagp, ...")
    rcfg = {**fam.default_config(), **cfg["residual"]}
    model, roles, plan = render_dataset(dataset, cfg)
    theta = np.asarray(dataset.params)
    s = np.asarray(residual_scale(cfg["residual_scale"], roles, theta, model), np.float64)
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError(
            f"residual_scale={cfg['residual_scale']!r}: the scale must be > 0 for every image "
            f"(min {np.nanmin(s):g}); use residual_scale='none'"
        )
    images = np.asarray(dataset.images, np.float64)
    r = (images - model) / s[:, None, None]
    flux = None
    if cfg["flux_correction"] == "gp":
        fcfg = {**default_flux_config(), **cfg["flux"]}
        if fcfg["log_params"] is None:
            fcfg["log_params"] = rcfg.get("log_params")
        check_flux_config(fcfg)
        rows = _fit_rows(dataset)
        t = flux_template(r[rows], fcfg["template"])
        r = r - r.sum(axis=(1, 2))[:, None, None] * t  # the residual family learns no flux
        y = flux_target(images[rows], model[rows])
        ok = np.isfinite(y)
        if ok.sum() < 4:
            raise ValueError(
                f"flux_correction='gp' needs >= 4 train/val rows whose image and analytic part "
                f"have a positive in-stamp flux; {int(ok.sum())} of {len(y)} have"
            )
        if not ok.all():
            warnings.warn(
                f"flux model: {int((~ok).sum())} of {len(y)} rows have an in-stamp flux <= 0 "
                "and are left out of its training",
                stacklevel=2,
            )
        kf = jax.random.fold_in(key, 1)  # the residual keeps `key` (same draws as without)
        th = theta[rows][ok]
        flux = fit_flux(th, y[ok], dataset.param_names, dataset.ranges, fcfg, t, key=kf)
        cfg["flux"] = config["flux"] = fcfg
    del images  # read once (it may be a lazy h5py array); not held through the residual's fit
    resid = dataclasses.replace(dataset, images=r.astype(np.float32))
    kw = {"progress": progress}
    if checkpoint_dir is not None:
        kw["checkpoint_dir"] = f"{checkpoint_dir}/residual"
    weight = cfg["residual_weight"]
    if weight == "auto":
        held = resid.split_of == 1  # the val split, kept out of the residual's training
        if not held.any() or held.all():
            raise ValueError("residual_weight='auto' needs a non-empty val split and train rows")
        rest = resid.subset(~held)
        rest = dataclasses.replace(
            rest, split_of=assign_splits(len(rest), (0.9, 0.1, 0.0), seed=int(held.sum()))
        )
        rstate = fam.fit(rest, rcfg, key=key, **kw)
        weight = _fit_weight(fam, rstate, theta[held], r[held])
    else:
        weight = float(weight)
        if not 0.0 <= weight <= 1e3:
            raise ValueError(f"residual_weight={weight} must be 'auto' or a number in [0, 1e3]")
        rstate = fam.fit(resid, rcfg, key=key, **kw)
    config["plan"] = list(plan)
    config["residual"] = rcfg
    return _state(rstate, cfg, roles, list(plan), dataset.shape, weight, flux)


def _fit_rows(dataset) -> np.ndarray:
    """bool[N]: the rows of the train and val splits (all rows when the set has no splits)."""
    if dataset.split_of is None:
        return np.ones(len(dataset.params), bool)
    rows = np.isin(np.asarray(dataset.split_of), [SPLITS.index("train"), SPLITS.index("val")])
    if not rows.any():
        raise ValueError("flux_correction='gp': the data set has no train or val rows")
    return rows


def _fit_weight(fam, rstate, theta, target) -> float:
    """w in [0, 1] minimising sum (target - w * pred)^2 over held-out rows (least squares)."""
    import contextlib

    import jax

    ctx = jax.enable_x64(True) if fam.x64 else contextlib.nullcontext()
    with ctx:
        fn = jax.jit(jax.vmap(fam.predict, in_axes=(None, 0)))
        pred = np.concatenate(
            [
                np.asarray(fn(rstate, jnp.asarray(theta[i : i + 256])))
                for i in range(0, len(theta), 256)
            ]
        ).astype(np.float64)
    den = float(np.sum(pred**2))
    return float(np.clip(np.sum(target * pred) / den, 0.0, 1.0)) if den > 0 else 0.0


#: the Sersic-fit columns (``jaxsky.infer.fit_sersic`` names and units: flux in image units,
#: half_light_radius and dx, dy in arcsec, g1 and g2 reduced shear)
SERSIC_FIT = ("flux", "half_light_radius", "n", "g1", "g2", "dx", "dy")


def with_sersic_fit(dataset, fit, *, prefix: str = "fit_"):
    """The data set with each image's single-Sersic fit appended to its parameters.

    Args:
        dataset: a :class:`~jaxsky.data.Dataset` of N images.
        fit: mapping with float[N] entries for every name of :data:`SERSIC_FIT` (e.g. the
            output of ``jaxsky.infer.fit_sersic`` on these images, or catalogue values).
        prefix: name prefix of the new columns (``fit_flux``, ``fit_n``, ...).
    Returns:
        A data set with P + 7 parameters; the new columns' ranges are their min/max.
    """
    n = len(dataset.params)
    cols = []
    for k in SERSIC_FIT:
        if k not in fit:
            raise ValueError(f"with_sersic_fit: fit has no {k!r} column (needs {SERSIC_FIT})")
        v = np.asarray(fit[k], np.float64).reshape(-1)
        if v.shape != (n,) or not np.all(np.isfinite(v)):
            raise ValueError(
                f"with_sersic_fit: fit[{k!r}] must hold {n} finite values (one per image), "
                f"got shape {v.shape} with {int(np.sum(~np.isfinite(v)))} non-finite"
            )
        cols.append(v)
    names = tuple(prefix + k for k in SERSIC_FIT)
    clash = set(names) & set(dataset.param_names)
    if clash:
        raise ValueError(f"with_sersic_fit: columns {sorted(clash)} exist; choose another prefix")
    extra = np.stack(cols, axis=1)
    ranges = dict(dataset.ranges)
    for j, k in enumerate(names):
        lo, hi = float(extra[:, j].min()), float(extra[:, j].max())
        ranges[k] = (lo, hi if hi > lo else lo + 1e-6 * max(abs(lo), 1.0))
    return dataclasses.replace(
        dataset,
        params=np.concatenate([np.asarray(dataset.params, np.float64), extra], axis=1),
        param_names=(*dataset.param_names, *names),
        param_units=(*dataset.param_units, "flux", "arcsec", "", "", "", "arcsec", "arcsec"),
        ranges=ranges,
    )


def sersic_fit_config(prefix: str = "fit_", psf_fwhm: str = "psf_fwhm", **config) -> dict:
    """Hybrid config whose analytic part is each galaxy's own Sersic fit (see
    :func:`with_sersic_fit`); ``psf_fwhm`` names the PSF column; ``config`` adds/overrides keys.

    The flux gets its own model by default (``flux_correction="gp"``): a least-squares Sersic
    fit is not flux-exact (0.24% too bright in the stamp on ``bulge-disk-knots``).
    """
    columns = {k: prefix + k for k in SERSIC_FIT}
    columns["psf_fwhm"] = psf_fwhm
    cols = {**columns, **config.get("columns", {})}
    return {"profile": "sersic", "flux_correction": "gp", **config, "columns": cols}


def _state(rstate, cfg, roles, plan, shape, weight, flux=None) -> HybridState:
    return HybridState(
        residual=rstate,
        roles=roles,
        profile=cfg["profile"],
        psf=(cfg["psf_profile"], float(cfg["psf_beta"])),
        plan=tuple(plan),
        family=cfg["residual_family"],
        shape=tuple(shape),
        scale_mode=cfg["residual_scale"],
        weight=jnp.asarray(weight, jnp.float32),
        flux=flux,
    )


def restore(raw, config, info) -> HybridState:
    cfg = {**default_config(), **config}
    fam = get_family(cfg["residual_family"])
    rstate = fam.restore(raw["residual"], cfg["residual"], info)
    roles = _roles(tuple(info["param_names"]), cfg)
    weight = np.asarray(raw.get("weight", 1.0), np.float32)
    # checkpoints written before the flux model have neither the config key nor the state
    flux = None
    if cfg["flux_correction"] == "gp":
        if raw.get("flux") is None:
            raise ValueError("config has flux_correction='gp' but the state has no flux model")
        flux = restore_flux(raw["flux"], {**default_flux_config(), **cfg["flux"]})
        if flux.template.shape != tuple(info["shape"]):
            raise ValueError(f"flux template {flux.template.shape} != image {info['shape']}")
    elif raw.get("flux") is not None:
        raise ValueError(f"the state has a flux model but flux_correction={cfg['flux_correction']}")
    return _state(rstate, cfg, roles, cfg["plan"], info["shape"], weight, flux)


FAMILY = register_family(
    EmulatorFamily(
        name="hybrid",
        default_config=default_config,
        fit=fit,
        predict=predict,
        restore=restore,
        sample=sample,
        predict_var=predict_var,
        # the recommended residual family (pcagp) needs float64 GP algebra; the renderer and
        # a VAE residual run correctly (if a little slower) in float64 too
        x64=True,
    )
)
