"""Batched MAP fits through any forward model ``theta -> image``: a trained emulator or a
renderer closure, over the same parameter box, so that the two can be compared galaxy by galaxy.

Free parameters are fitted in a logistic box (``priors.interval``) over their allowed ranges
(for an emulator: its training domain), with a flat prior, by the damped Gauss-Newton fitter of
:func:`~jaxsky.infer.fit_map`; errors are the Laplace / inverse-Fisher ones. Parameters named
in ``fixed`` (e.g. a known PSF FWHM) are held at given per-galaxy values.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.infer import priors
from jaxsky.infer.likelihood import prepare_stamps
from jaxsky.infer.map import MapConfig, fit_map

__all__ = ["EMULATOR_CONFIG", "fit_images", "fit_emulator"]

#: default optimiser: damped Gauss-Newton from the box centre (smooth forward models)
EMULATOR_CONFIG = MapConfig(adam_steps=0, lbfgs_steps=0, newton_steps=30)


@functools.lru_cache(maxsize=16)
def _kernels(model, space, free: tuple, fixed: tuple):
    n_par = len(free) + len(fixed)
    free_i, fixed_i = jnp.asarray(free, int), jnp.asarray(fixed, int)

    def theta(u, fixed_vals):
        x = space.to_physical(u)
        full = jnp.zeros(n_par, x.dtype).at[free_i].set(x)
        return full.at[fixed_i].set(fixed_vals.astype(x.dtype))

    def r(u, data, ivar, fixed_vals):
        return jnp.sqrt(ivar) * (data - model(theta(u, fixed_vals)))

    def f(u, data, ivar, fixed_vals):
        return 0.5 * jnp.sum(ivar * (data - model(theta(u, fixed_vals))) ** 2)

    return f, r


def fit_images(
    model: Callable,
    param_names,
    ranges: Mapping[str, tuple[float, float]],
    images,
    variance,
    *,
    fixed: Mapping | None = None,
    init: Mapping | None = None,
    mask=None,
    config: MapConfig | None = None,
    x64: bool = False,
) -> dict[str, np.ndarray]:
    """Fit ``model(theta) -> float[ny, nx]`` to each stamp by maximum likelihood inside a box.

    Args:
      model: pure function of the physical parameter vector float[P] (order ``param_names``);
        pass the same object on every call to reuse the compiled kernel.
      param_names: the P names.
      ranges: {name: (lo, hi)} box for every free parameter (fits that end within 0.1% of the
        box width from an edge are flagged ``at_bound`` and not converged).
      images: float[B, ny, nx]; variance: scalar, float[B], float[ny, nx] or float[B, ny, nx].
      fixed: {name: scalar or float[B]} parameters held fixed (e.g. a known PSF size).
      init: {name: scalar or float[B]} starting values of free parameters; default: the box
        centre, and for ``flux`` the stamp's summed flux.
      mask: optional bool array broadcastable to images (True = use the pixel).
      config: :class:`~jaxsky.infer.MapConfig` (default :data:`EMULATOR_CONFIG`).
      x64: run in float64 (needed by PCA+GP emulators).
    Returns:
      dict of NumPy arrays, length B: each parameter (fixed ones too), ``<free>_err``, ``cov``
      float[B, F, F] over the free parameters, ``chi2``, ``n_pix``, ``decrement``,
      ``at_bound`` and ``converged``.
    """
    names = tuple(param_names)
    fixed = dict(fixed or {})
    unknown = [k for k in (*fixed, *(init or {})) if k not in names]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; the model has {names}")
    free = tuple(i for i, k in enumerate(names) if k not in fixed)
    fix = tuple(i for i, k in enumerate(names) if k in fixed)
    missing = [names[i] for i in free if names[i] not in ranges]
    if missing:
        raise ValueError(f"ranges has no (lo, hi) box for free parameters {missing}")
    box = np.array([[float(v) for v in ranges[names[i]]] for i in free])
    if not np.all(box[:, 0] < box[:, 1]):
        raise ValueError(f"ranges must have lo < hi; got {dict(zip(names, box.tolist()))}")
    config = EMULATOR_CONFIG if config is None else config
    ctx = jax.enable_x64(True) if x64 else contextlib.nullcontext()
    with ctx:
        st = prepare_stamps(images, variance, mask)
        data, ivar = (st.data[None], st.ivar[None]) if st.data.ndim == 2 else (st.data, st.ivar)
        nb = data.shape[0]
        fixed_vals = np.zeros((nb, len(fix)))
        for j, i in enumerate(fix):
            fixed_vals[:, j] = np.broadcast_to(np.asarray(fixed[names[i]], float), (nb,))
        x0 = np.broadcast_to(box.mean(axis=1), (nb, len(free))).copy()
        if "flux" in names and names.index("flux") in free:
            total = np.asarray(jnp.sum(jnp.where(ivar > 0, data, 0.0), axis=(1, 2)))
            x0[:, free.index(names.index("flux"))] = total
        for k, v in (init or {}).items():
            if names.index(k) in free:
                x0[:, free.index(names.index(k))] = np.broadcast_to(np.asarray(v, float), (nb,))
        width = box[:, 1] - box[:, 0]
        x0 = np.clip(x0, box[:, 0] + 0.02 * width, box[:, 1] - 0.02 * width)
        space = _space(tuple(map(tuple, box)))
        u0 = np.asarray(jax.vmap(space.to_unconstrained)(jnp.asarray(x0)))
        f, r = _kernels(model, space, free, fix)
        res = fit_map(
            f,
            u0,
            (data, ivar, fixed_vals),
            to_physical=space.to_physical,
            residuals=r,
            config=config,
        )
    rel = (res.x - box[:, 0]) / width
    at_bound = np.any((rel < 1e-3) | (rel > 1 - 1e-3), axis=1)
    out = {}
    for j, i in enumerate(free):
        out[names[i]], out[f"{names[i]}_err"] = res.x[:, j], res.err[:, j]
    for j, i in enumerate(fix):
        out[names[i]] = fixed_vals[:, j]
    out.update(
        cov=res.cov,
        chi2=2 * res.loss,
        n_pix=np.asarray((np.asarray(ivar) > 0).sum((1, 2))),
        decrement=res.decrement,
        at_bound=at_bound,
        converged=res.converged & ~at_bound,
    )
    return out


@functools.lru_cache(maxsize=16)
def _space(box) -> priors.ParameterSpace:
    return priors.ParameterSpace(
        [(f"p{i}", priors.interval(lo, hi)) for i, (lo, hi) in enumerate(box)]
    )


_PREDICT: dict[int, tuple] = {}


def _predict_fn(emu):
    """One predict function per emulator object (so that fits reuse their compiled kernel)."""
    hit = _PREDICT.get(id(emu))
    if hit is None or hit[0] is not emu:
        if len(_PREDICT) >= 8:
            _PREDICT.pop(next(iter(_PREDICT)))
        hit = _PREDICT[id(emu)] = (emu, emu.predict_fn())
    return hit[1]


def fit_emulator(emu, images, variance, *, fixed=None, init=None, mask=None, config=None):
    """:func:`fit_images` through a trained :class:`~jaxsky.emulators.Emulator` over its
    training domain (``emu.info["ranges"]``); float64 when the family needs it (PCA+GP).

    Example: ``fit_emulator(emu, stamps, sigma**2, fixed={"psf_fwhm": fwhm})``.
    """
    from jaxsky.emulators import get_family

    ny, nx = tuple(emu.info["shape"])[-2:]
    if np.shape(images)[-2:] != (ny, nx):
        raise ValueError(f"images have shape {np.shape(images)}; the emulator makes {ny}x{nx}")
    return fit_images(
        _predict_fn(emu),
        emu.param_names,
        emu.info["ranges"],
        images,
        variance,
        fixed=fixed,
        init=init,
        mask=mask,
        config=config,
        x64=bool(get_family(emu.family).x64),
    )
