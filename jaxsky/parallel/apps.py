"""Sharded rendering, emulator prediction and per-galaxy work over all local devices.

Thin, typed entry points on :func:`jaxsky.parallel.sharded_map` for the three batched jobs of
jaxsky: drawing a batch of profiles with one fixed :class:`~jaxsky.render.DrawPlan` (one
compiled program that every device runs on its slice), predicting images with a trained
emulator, and mapping any per-galaxy function (a fit, a likelihood) over a catalogue.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import jax
import numpy as np

from jaxsky.parallel.sharding import sharded_map
from jaxsky.render import DrawPlan, GSParams, batch_axes, draw, make_plan, plan_sizes

__all__ = ["sharded_draw", "sharded_predict", "map_galaxies"]


@functools.lru_cache(maxsize=64)
def _draw_one(treedef, flags: tuple[bool, ...], plan: DrawPlan, method: str):
    """A stable per-galaxy draw function for one (tree structure, batch layout, plan)."""

    def one(shared_leaves, batched_leaves):
        it_s, it_b = iter(shared_leaves), iter(batched_leaves)
        leaves = [next(it_b) if f else next(it_s) for f in flags]
        obj = jax.tree_util.tree_unflatten(treedef, leaves)
        return draw(obj, nx=plan.nx, ny=plan.ny, scale=plan.scale, method=method, plan=plan)

    return one


def sharded_draw(
    objs,
    *,
    nx: int,
    ny: int,
    scale: float,
    method: str = "auto",
    plan: DrawPlan | None = None,
    gsparams: GSParams | None = None,
    chunk: int | None = None,
    group: bool = True,
    min_group: int = 32,
    mesh=None,
):
    """Render a batched profile (leaves with a leading batch axis) over all local devices.

    With ``plan`` (or ``group=False``: one plan from :func:`~jaxsky.make_plan` over the whole
    batch, i.e. the largest FFT any galaxy needs) every galaxy uses ONE plan, so a single
    compiled program serves all devices and steps. Otherwise (the default) galaxies are
    grouped by the FFT sizes they need (:func:`~jaxsky.render.plan_sizes`; groups smaller
    than ``min_group`` join the next larger one, as :func:`jaxsky.draw_batch` does) and each
    group is sharded over the devices with its own plan: small galaxies do not pay for
    large ones (one compiled program per group). Leaves without the batch axis (a fixed PSF)
    are replicated.

    Args:
      objs: a jaxsky profile whose batched leaves share a leading size B.
      nx, ny, scale: stamp size (pixels) and pixel scale (arcsec/pixel), static.
      method, plan, gsparams: as for :func:`jaxsky.draw`.
      chunk: galaxies per step (see :func:`sharded_map`); None renders a group in one step.
      group, min_group: plan per group of galaxies (see above).
      mesh: device mesh (default: all local devices).

    Returns:
      float[B, ny, nx] flux per pixel: a device-sharded jax.Array for one plan with
      ``chunk=None``, else a host numpy array.
    """
    axes = jax.tree_util.tree_leaves(batch_axes(objs), is_leaf=lambda x: x is None)
    flags = tuple(a == 0 for a in axes)
    leaves, treedef = jax.tree_util.tree_flatten(objs)
    if not any(flags):
        raise ValueError("objs has no batched leaf; use jaxsky.draw for a single profile")
    if plan is None and not group:
        plan = make_plan(objs, nx, ny, scale, method, gsparams)
    if plan is not None:
        return _draw_one_plan(leaves, treedef, flags, plan, method, chunk, mesh)
    if int(min_group) < 1:
        raise ValueError(f"min_group={min_group} must be a positive integer")
    n = int(np.shape(leaves[flags.index(True)])[0])
    groups = _groups(objs, nx, ny, scale, gsparams, n, int(min_group))
    rings = (gsparams or GSParams()).alias_rings
    out = None
    for (n_fft, k_fold), idx in groups:
        gplan = DrawPlan(nx, ny, float(scale), n_fft, k_fold, method != "no_pixel", rings)
        sub = [np.asarray(x)[idx] if f else x for x, f in zip(leaves, flags)]
        imgs = np.asarray(_draw_one_plan(sub, treedef, flags, gplan, method, chunk, mesh))
        if out is None:
            out = np.empty((n, ny, nx), imgs.dtype)
        out[idx] = imgs
    return out


def _draw_one_plan(leaves, treedef, flags, plan, method, chunk, mesh):
    shared = [x for x, f in zip(leaves, flags) if not f]
    batched = [x for x, f in zip(leaves, flags) if f]
    fn = _draw_one(treedef, flags, plan, method)
    return sharded_map(fn, batched, shared=shared, chunk=chunk, mesh=mesh)


def _groups(objs, nx, ny, scale, gsparams, n, min_group):
    """[((n_fft, k_fold), indices)] by cost; small groups merge into the next costlier one."""
    n_fft, k_fold, ok = plan_sizes(objs, nx, ny, float(scale), gsparams)
    if not np.all(ok):
        warnings.warn(
            f"jaxsky.parallel.sharded_draw: {int(np.size(ok) - np.count_nonzero(ok))} "
            "profile(s) need a larger FFT than the GSParams caps allow; their stamps may miss "
            "the accuracy target (use a larger stamp, a PSF, or raise the caps)",
            stacklevel=3,
        )
    n_fft = np.broadcast_to(n_fft, (n,))
    k_fold = np.broadcast_to(k_fold, (n,))
    keys = sorted({(int(a), int(b)) for a, b in zip(n_fft, k_fold)}, key=lambda t: (t[0] * t[1], t))
    out, carry_key, carry = [], None, np.array([], dtype=int)
    for i, key in enumerate(keys):
        idx = np.concatenate([carry, np.flatnonzero((n_fft == key[0]) & (k_fold == key[1]))])
        if carry_key is not None:  # the merged group needs the larger of both sizes
            key = (max(key[0], carry_key[0]), max(key[1], carry_key[1]))
        if len(idx) < min_group and i < len(keys) - 1:
            carry_key, carry = key, idx
            continue
        out.append((key, np.sort(idx)))
        carry_key, carry = None, np.array([], dtype=int)
    return out


def _predict_one(state, theta, *, predict):
    return predict(state, theta)


@functools.lru_cache(maxsize=32)
def _predict_fn(predict):
    return functools.partial(_predict_one, predict=predict)


def sharded_predict(emulator, theta, *, chunk: int | None = None, on_ood: str = "error", mesh=None):
    """Emulator mean images float[B, ny, nx] for theta float[B, P], sharded over devices.

    ``emulator`` is a :class:`jaxsky.emulators.Emulator`; its state is replicated on every
    device and the parameter rows are split over them. The training-domain check of
    :meth:`~jaxsky.emulators.Emulator.check_domain` runs first (``on_ood`` as there).
    """
    theta = np.atleast_2d(np.asarray(theta))
    emulator.check_domain(theta, on_ood=on_ood)
    fam = emulator._fam
    fn = _predict_fn(fam.predict)
    return sharded_map(fn, theta, shared=emulator.state, chunk=chunk, mesh=mesh)


def map_galaxies(fn: Callable, *batched_args, shared=None, chunk: int | None = None, mesh=None):
    """Apply a per-galaxy function (a fit, a likelihood, a measurement) over devices.

    ``fn`` must be vmappable (pure JAX, static shapes). This is :func:`sharded_map` under a
    name that reads well at call sites: ``map_galaxies(fit_one, images, init, chunk=4096)``.
    """
    return sharded_map(fn, *batched_args, shared=shared, chunk=chunk, mesh=mesh)
