"""Sharded rendering, emulator prediction and per-galaxy work over all local devices.

Thin, typed entry points on :func:`jaxsky.parallel.sharded_map` for the three batched jobs of
jaxsky: drawing a batch of profiles with one fixed :class:`~jaxsky.render.DrawPlan` (one
compiled program that every device runs on its slice), predicting images with a trained
emulator, and mapping any per-galaxy function (a fit, a likelihood) over a catalogue.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np

from jaxsky.parallel.sharding import batch_mesh, sharded_map
from jaxsky.render import DrawPlan, GSParams, batch_axes, draw, make_plan
from jaxsky.render.drawing import _group_by_plan  # draw_batch's grouping, whole batch at once

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
    grouped exactly as :func:`jaxsky.draw_batch` groups them (by FFT sizes and by the rings
    of alias copies each needs corrected; groups smaller than ``min_group`` join the next
    larger one) and each group is sharded over the devices with its own plan: small galaxies
    do not pay for large ones (one compiled program per group and step size). A group
    smaller than ``chunk`` runs in one step of its size rounded up to a power of two (and to
    the device count), so small groups are not padded to a large ``chunk``. Leaves without
    the batch axis (a fixed PSF) are replicated.

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
    groups = _groups(objs, nx, ny, scale, gsparams, n, int(min_group), method)
    ndev = (mesh or batch_mesh()).size
    host = [np.asarray(x) if f else x for x, f in zip(leaves, flags)]
    # Dispatch every group before reading any back (JAX dispatch is asynchronous), as
    # draw_batch does, so host-side slicing overlaps device work.
    pending = []
    for gplan, idx in groups:
        sub = [x[idx] if f else x for x, f in zip(host, flags)]
        pending.append(
            (
                idx,
                _draw_one_plan(
                    sub, treedef, flags, gplan, method, _group_chunk(len(idx), chunk, ndev), mesh
                ),
            )
        )
    out = None
    for idx, imgs in pending:
        imgs = np.asarray(imgs)
        if out is None:
            out = np.empty((n, ny, nx), imgs.dtype)
        out[idx] = imgs
    return out


def _group_chunk(size: int, chunk: int | None, ndev: int) -> int | None:
    """Step size for a group: ``chunk``, but a smaller group runs in one step of its size
    rounded up to a power of two (few distinct programs) and to a multiple of ``ndev``
    (:func:`sharded_map` rounds ``chunk`` itself up to a multiple of ``ndev``)."""
    if chunk is None:
        return None
    own = -(-(1 << max(0, int(size - 1).bit_length())) // ndev) * ndev
    return min(int(chunk), own)


def _draw_one_plan(leaves, treedef, flags, plan, method, chunk, mesh):
    shared = [x for x, f in zip(leaves, flags) if not f]
    batched = [x for x, f in zip(leaves, flags) if f]
    fn = _draw_one(treedef, flags, plan, method)
    return sharded_map(fn, batched, shared=shared, chunk=chunk, mesh=mesh)


def _groups(objs, nx, ny, scale, gsparams, n, min_group, method="auto"):
    """[(DrawPlan, indices)]: galaxies grouped by FFT sizes and rings, small groups merged
    into larger plans (as :func:`jaxsky.draw_batch` groups each block it streams)."""
    groups = _group_by_plan(objs, nx, ny, float(scale), method, gsparams, n, min_group)
    return [(plan, np.sort(np.asarray(idx))) for plan, idx in groups.items()]


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
