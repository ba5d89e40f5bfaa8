"""Physics-aware hybrid emulator (family ``"hybrid"``): analytic render(theta) + learned residual.

Flux, size, shear, PSF and pixel response come from jaxsky's renderer (so they are exact where
the profile is right); a learned family (``residual_family``: ``"vae"``, ``"pcagp"``, ...) is
trained only on ``image - render(theta)``, the part the profile lacks (bulge/disk structure,
star-forming clumps, real-galaxy morphology).

The analytic profile (``config["profile"]``) is ``"exponential"`` (the ``paper`` preset: an
Exponential of ``flux`` and ``scale_radius``) or ``"sersic"`` (``flux``, ``n``,
``half_light_radius``), sheared by ``g1``/``g2`` and convolved with a Gaussian or Moffat PSF of
FWHM ``psf_fwhm``. ``config["columns"]`` maps these roles to the data set's parameter names; a
role mapped to a number is held fixed at that value (e.g. ``{"g2": 0.0}``).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax.numpy as jnp
import numpy as np

from jaxsky.emulators._base import EmulatorFamily, get_family, register_family

__all__ = ["HybridState", "default_config", "fit", "analytic", "predict", "restore", "FAMILY"]

_ROLES = {
    "exponential": ("flux", "scale_radius", "g1", "g2", "psf_fwhm"),
    "sersic": ("flux", "n", "half_light_radius", "g1", "g2", "psf_fwhm"),
}


def default_config() -> dict:
    return {
        "profile": "exponential",
        "columns": {},  # role -> parameter name or fixed number (default: the role's name)
        "psf_profile": "gaussian",
        "psf_beta": 3.5,
        "residual_family": "vae",
        "residual": {},  # config of the residual family (overrides its defaults)
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


def _roles(names, cfg) -> tuple:
    """((role, column index or -1, fixed value), ...) for the configured profile."""
    if cfg["profile"] not in _ROLES:
        raise ValueError(f"hybrid profile={cfg['profile']!r} is not one of {sorted(_ROLES)}")
    if cfg["psf_profile"] not in ("gaussian", "moffat"):
        raise ValueError(f"psf_profile={cfg['psf_profile']!r} is not 'gaussian' or 'moffat'")
    out = []
    for role in _ROLES[cfg["profile"]]:
        src = cfg["columns"].get(role, role)
        if isinstance(src, int | float):
            out.append((role, -1, float(src)))
        elif src in names:
            out.append((role, list(names).index(src), 0.0))
        elif role in ("g1", "g2"):
            out.append((role, -1, 0.0))  # unsheared when the data set has no shear column
        else:
            raise ValueError(
                f"hybrid: the {cfg['profile']} profile needs {role!r}; map it with "
                f"config columns={{'{role}': <parameter name or value>}} (parameters: {names})"
            )
    return tuple(out)


def _profile(roles, profile, psf, theta):
    from jaxsky.render import Convolve, Exponential, Gaussian, Moffat, Sersic

    v = {r: (theta[..., i] if i >= 0 else jnp.full(theta.shape[:-1], x)) for r, i, x in roles}
    if profile == "exponential":
        gal = Exponential(flux=v["flux"], scale_radius=v["scale_radius"])
    else:
        gal = Sersic(v["n"], half_light_radius=v["half_light_radius"], flux=v["flux"])
    gal = gal.shear(g1=v["g1"], g2=v["g2"])
    kind, beta = psf
    p = Gaussian(fwhm=v["psf_fwhm"]) if kind == "gaussian" else Moffat(beta, fwhm=v["psf_fwhm"])
    return Convolve(gal, p)


def analytic(state: HybridState, theta):
    """The renderer's image float[ny, nx] of the analytic profile at theta float[P]."""
    from jaxsky.render import DrawPlan, draw

    plan = DrawPlan(*state.plan)
    obj = _profile(state.roles, state.profile, state.psf, theta)
    return draw(obj, nx=plan.nx, ny=plan.ny, scale=plan.scale, plan=plan)


def predict(state: HybridState, theta):
    """analytic(theta) + learned residual(theta): float[ny, nx] in flux units."""
    return analytic(state, theta) + get_family(state.family).predict(state.residual, theta)


def sample(state: HybridState, theta, *, key):
    fam = get_family(state.family)
    if fam.sample is None:
        return predict(state, theta)
    return analytic(state, theta) + fam.sample(state.residual, theta, key=key)


def predict_var(state: HybridState, theta):
    fam = get_family(state.family)
    if fam.predict_var is None:
        raise NotImplementedError(f"the residual family {state.family} has no variance")
    return fam.predict_var(state.residual, theta)


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
    resid = dataclasses.replace(dataset, images=np.asarray(dataset.images) - model)
    kw = {"progress": progress}
    if checkpoint_dir is not None:
        kw["checkpoint_dir"] = f"{checkpoint_dir}/residual"
    rstate = fam.fit(resid, rcfg, key=key, **kw)
    config["plan"] = list(plan)
    config["residual"] = rcfg
    return _state(rstate, cfg, roles, list(plan), dataset.shape)


def _state(rstate, cfg, roles, plan, shape) -> HybridState:
    return HybridState(
        residual=rstate,
        roles=roles,
        profile=cfg["profile"],
        psf=(cfg["psf_profile"], float(cfg["psf_beta"])),
        plan=tuple(plan),
        family=cfg["residual_family"],
        shape=tuple(shape),
    )


def restore(raw, config, info) -> HybridState:
    cfg = {**default_config(), **config}
    fam = get_family(cfg["residual_family"])
    rstate = fam.restore(raw["residual"], cfg["residual"], info)
    roles = _roles(tuple(info["param_names"]), cfg)
    return _state(rstate, cfg, roles, cfg["plan"], info["shape"])


FAMILY = register_family(
    EmulatorFamily(
        name="hybrid",
        default_config=default_config,
        fit=fit,
        predict=predict,
        restore=restore,
        sample=sample,
        predict_var=predict_var,
    )
)
