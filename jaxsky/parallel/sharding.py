"""Spread a batch over all local devices with ``jax.sharding`` (Mesh, NamedSharding).

The pattern is plain data parallelism through XLA's GSPMD partitioner: the batch axis of the
inputs is laid out over a one-axis :class:`~jax.sharding.Mesh` of the local devices
(``PartitionSpec("batch")``), parameters shared by every item are replicated
(``PartitionSpec()``), and ``jax.jit`` compiles ONE program that every device runs on its
slice. Nothing is home-made: no ``pmap``, no manual collectives.

Batches whose size is not a multiple of the device count are padded by repeating the last
item and the padding is stripped from the output, so callers never see it. With ``chunk``,
work proceeds in fixed-shape steps of ``chunk`` items (one compiled program for every step,
bounded device memory); step ``i + 1`` is dispatched before step ``i`` is copied to the host,
so the device never waits on the host.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "BATCH_AXIS",
    "batch_mesh",
    "batch_sharding",
    "replicated_sharding",
    "shard_batch",
    "replicate",
    "pad_batch",
    "sharded_map",
    "sharded_chunks",
]

BATCH_AXIS = "batch"


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"batch"`` over ``devices`` (default: all local devices)."""
    devs = list(jax.local_devices() if devices is None else devices)
    if not devs:
        raise ValueError("devices is empty; pass at least one jax.Device")
    return Mesh(np.array(devs), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Leading axis split over the mesh's ``"batch"`` axis, other axes whole."""
    return NamedSharding(mesh or batch_mesh(), PartitionSpec(BATCH_AXIS))


def replicated_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """A full copy on every device of the mesh (for parameters, PSFs, emulator states)."""
    return NamedSharding(mesh or batch_mesh(), PartitionSpec())


def _n_items(tree) -> int:
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(tree)}
    if not sizes:
        raise ValueError("batched arguments hold no arrays")
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "every batched argument needs the same leading (batch) axis; got leading sizes "
            f"{sorted(s for s in sizes if s is not None)}"
            + (" and scalars" if None in sizes else "")
        )
    (n,) = sizes
    return int(n)


def pad_batch(tree, multiple: int):
    """Pad every leaf's leading axis to a multiple of ``multiple`` by repeating the last item.

    Returns ``(padded_tree, n)`` with ``n`` the original batch size. Repeating a real item
    (rather than zeros) keeps padded rows inside every function's domain (no NaN, no warning).
    """
    if int(multiple) < 1:
        raise ValueError(f"multiple={multiple} must be a positive integer")
    n = _n_items(tree)
    if n == 0:
        raise ValueError("the batch is empty (leading size 0)")
    extra = -n % int(multiple)
    if not extra:
        return tree, n

    def pad(x):
        x = jnp.asarray(x) if isinstance(x, jax.Array) else np.asarray(x)
        tail = x[-1:].repeat(extra, axis=0)
        return (jnp if isinstance(x, jax.Array) else np).concatenate([x, tail], axis=0)

    return jax.tree_util.tree_map(pad, tree), n


def shard_batch(tree, mesh: Mesh | None = None):
    """Place a pytree of arrays with a common leading batch axis split over the mesh.

    The batch size must be a multiple of the device count (use :func:`pad_batch` first).
    Returns jax.Arrays whose ``.sharding`` is a :class:`NamedSharding` over ``"batch"``.
    """
    mesh = mesh or batch_mesh()
    n, ndev = _n_items(tree), mesh.size
    if n % ndev:
        raise ValueError(
            f"batch size {n} is not a multiple of the {ndev} devices; pad it with pad_batch"
        )
    return jax.device_put(tree, batch_sharding(mesh))


def replicate(tree, mesh: Mesh | None = None):
    """Place a pytree (parameters, a fixed PSF, an emulator state) on every device."""
    return jax.device_put(tree, replicated_sharding(mesh))


@functools.lru_cache(maxsize=128)
def _compiled(fn, mesh, nargs, with_shared):
    # One jit per (function, mesh). Sharding constraints (not jit in/out_shardings) pin the
    # batch axis to the mesh inside the program, so the same code also works when traced by
    # grad/jit from outside (the constraint transposes to one on the cotangent); XLA then
    # partitions the single program over the devices.
    spec = batch_sharding(mesh)

    def run(*args):
        shared, batched = (args[0], args[1:]) if with_shared else (None, args)
        batched = jax.lax.with_sharding_constraint(batched, spec)
        if with_shared:
            out = jax.vmap(fn, in_axes=(None,) + (0,) * nargs)(shared, *batched)
        else:
            out = jax.vmap(fn)(*batched)
        return jax.lax.with_sharding_constraint(out, spec)

    return jax.jit(run)


def _bind(fn, mesh, batched_args, shared):
    f = _compiled(fn, mesh, len(batched_args), shared is not None)
    if shared is None:
        return f
    rep = replicate(shared, mesh)
    return lambda *args: f(rep, *args)


def sharded_map(
    fn: Callable,
    *batched_args,
    shared=None,
    chunk: int | None = None,
    mesh: Mesh | None = None,
):
    """``vmap(fn)(*batched_args)`` with the batch split over all local devices.

    Args:
      fn: a function of ONE item (each argument without its batch axis) returning a pytree
        of arrays, e.g. ``theta float[P] -> image float[ny, nx]``. Shared inputs (a PSF, an
        emulator state) are closed over; they are replicated on every device. Keep ``fn``
        the same object between calls (not a fresh ``lambda``) to reuse the compiled program.
      *batched_args: pytrees whose leaves share a leading batch size B.
      shared: optional pytree passed whole to every call as ``fn(shared, *items)`` and
        replicated on every device (an emulator state, a PSF). Prefer it to closing over
        large arrays, which jit would bake into the program as constants.
      chunk: items per step (rounded up to a multiple of the device count). ``None``: one
        step for the whole batch, returning device-resident jax.Arrays sharded over the
        devices. An int: fixed-size steps (bounded device memory), results gathered into
        host numpy arrays.
      mesh: a one-axis mesh named ``"batch"`` (default :func:`batch_mesh`).

    Returns:
      ``fn``'s output pytree with leading axis B (padding stripped).
    """
    mesh = mesh or batch_mesh()
    if chunk is None:
        padded, n = pad_batch(batched_args, mesh.size)
        if all(
            isinstance(x, np.ndarray | jax.Array) and not isinstance(x, jax.core.Tracer)
            for x in jax.tree_util.tree_leaves(padded)
        ):
            padded = shard_batch(padded, mesh)  # concrete: place now (no copy inside jit)
        out = _bind(fn, mesh, batched_args, shared)(*padded)
        m = _n_items(padded)
        return out if m == n else jax.tree_util.tree_map(lambda x: x[:n], out)
    steps = sharded_chunks(fn, *batched_args, shared=shared, chunk=chunk, mesh=mesh)
    parts = [p for _, _, p in steps]
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *parts)


def sharded_chunks(
    fn: Callable, *batched_args, shared=None, chunk: int, mesh: Mesh | None = None
) -> Iterator[tuple[int, int, object]]:
    """Yield ``(start, stop, outputs)`` for consecutive fixed-size steps of ``vmap(fn)``.

    Arguments as for :func:`sharded_map`. ``outputs`` is ``fn``'s output pytree for items
    ``start:stop`` as host numpy arrays. Each step holds ``chunk`` items (rounded up to a
    multiple of the device count; the last step is padded, then stripped), so one compiled
    program serves every step. At most two steps
    are alive on the devices and one on the host at a time: step ``i + 1`` is dispatched
    before step ``i`` is fetched (JAX dispatch is asynchronous).
    """
    mesh = mesh or batch_mesh()
    if int(chunk) < 1:
        raise ValueError(f"chunk={chunk} must be a positive integer")
    step = -(-int(chunk) // mesh.size) * mesh.size
    n = _n_items(batched_args)
    f = _bind(fn, mesh, batched_args, shared)

    def launch(start):
        stop = min(start + step, n)
        part = jax.tree_util.tree_map(lambda x: x[start:stop], batched_args)
        padded, _ = pad_batch(part, step)
        return start, stop, f(*shard_batch(padded, mesh))

    pending = launch(0) if n else None
    while pending is not None:
        start, stop, out = pending
        pending = launch(stop) if stop < n else None
        m = stop - start
        host = jax.tree_util.tree_map(lambda x, m=m: np.asarray(x)[:m], out)
        del out
        yield start, stop, host
