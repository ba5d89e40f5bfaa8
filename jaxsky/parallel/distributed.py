"""Multi-host runs: one JAX process per host (or per GPU), each working on its own slice.

``jax.distributed.initialize`` connects the processes (through a coordinator address, or
automatically under SLURM / Open MPI / Cloud TPU); afterwards ``jax.devices()`` lists every
device of every process and ``jax.local_devices()`` this process's own. jaxsky's batched
jobs are embarrassingly parallel (no cross-galaxy communication), so each process takes its
contiguous slice of the items (:func:`process_slice`) and shards it over its local devices
with :mod:`jaxsky.parallel`. See ``docs/distributed.md`` for launch examples.
"""

from __future__ import annotations

import jax

__all__ = ["initialize", "process_slice"]


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs,
) -> tuple[int, int]:
    """Call ``jax.distributed.initialize`` once; return ``(process_index, process_count)``.

    With no arguments JAX detects SLURM, Open MPI and Cloud TPU environments; otherwise give
    ``coordinator_address="host:port"`` (process 0's host), ``num_processes`` and
    ``process_id``. Must run before any other JAX call that touches devices.
    """
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes={num_processes} must be >= 1")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must be in [0, {num_processes - 1}]")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        **kwargs,
    )
    return jax.process_index(), jax.process_count()


def process_slice(n: int, index: int | None = None, count: int | None = None) -> slice:
    """This process's contiguous share of ``n`` items (sizes differ by at most one).

    ``index``/``count`` default to ``jax.process_index()``/``jax.process_count()``.
    """
    if int(n) < 0:
        raise ValueError(f"n={n} must be >= 0")
    index = jax.process_index() if index is None else int(index)
    count = jax.process_count() if count is None else int(count)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process index={index} must be in [0, count={count})")
    base, extra = divmod(int(n), count)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))
