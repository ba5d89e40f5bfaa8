"""Scale out over devices and hosts with JAX's own machinery (``jax.sharding``, distributed).

* :func:`sharded_map` / :func:`sharded_chunks`: ``vmap(fn)`` over a batch split across all
  local devices (a ``Mesh`` with one ``"batch"`` axis, ``NamedSharding``), padded to a
  multiple of the device count and stripped; optional fixed-size steps.
* :func:`sharded_draw`, :func:`sharded_predict`, :func:`map_galaxies`: rendering, emulator
  prediction and per-galaxy fits on top of it.
* :func:`shard_batch`, :func:`replicate`: data-parallel training (batch split, parameters
  replicated; ``jax.jit`` partitions the step).
* :func:`stream_to_hdf5`: N stamps to HDF5 in bounded memory, atomic and resumable.
* :func:`initialize`, :func:`process_slice`: multi-host runs via ``jax.distributed``.
* :func:`cpu_pool_workaround`: avoid a jaxlib 0.10 CPU deadlock in batched LAPACK calls.
"""

from jaxsky._cpu_pool import cpu_pool_workaround, jaxlib_affected
from jaxsky.parallel.apps import map_galaxies, sharded_draw, sharded_predict
from jaxsky.parallel.distributed import initialize, process_slice
from jaxsky.parallel.sharding import (
    BATCH_AXIS,
    batch_mesh,
    batch_sharding,
    pad_batch,
    replicate,
    replicated_sharding,
    shard_batch,
    sharded_chunks,
    sharded_map,
)
from jaxsky.parallel.stream import partial_path, stream_to_hdf5

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
    "sharded_draw",
    "sharded_predict",
    "map_galaxies",
    "stream_to_hdf5",
    "partial_path",
    "initialize",
    "process_slice",
    "cpu_pool_workaround",
    "jaxlib_affected",
]
