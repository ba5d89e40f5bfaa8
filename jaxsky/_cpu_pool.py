"""Work around a jaxlib 0.10 CPU deadlock in batched LAPACK calls (found in issue 7).

In jaxlib 0.10.x (and 0.11.0) the CPU LAPACK kernels behind batched ``cholesky``,
``solve_triangular``, ``eigh`` ... (``lapack_*_ffi`` -> ``jax::ParallelBatchMap``) split the
batch into tasks on XLA's intra-op thread pool and then BLOCK a pool thread until those tasks
finish. When the thunk executor runs as many such calls at once as the pool has threads (the
pool has one thread per CPU core: 2 on a 2-core machine), every pool thread waits for tasks
that no free thread can run: the process hangs at 0% CPU with the main thread in
``tsl::BlockUntilReady`` (seen in ``jaxsky.emulators.ensemble`` calibration and PCA+GP fits).
Reproduced deterministically with four independent vmapped float64 ``solve_triangular`` calls
in one jitted function (hangs within a few calls on 2 cores; gdb shows both ``tf_XLAEigen``
threads in ``BlockingCounter::Wait`` under ``ParallelBatchMap``). ``XLA_FLAGS=
--xla_cpu_multi_thread_eigen=false`` does NOT avoid it. jaxlib 0.11.1 compiles that parallel
path out of open-source builds.

The work-around gives the pool more threads than the number of LAPACK calls that can block at
once: XLA's CPU client sizes the pool from the ``NPROC`` environment variable when it is set
(``DefaultThreadPoolSize`` in XLA's PjRt utilities), read once when the CPU backend starts.
With ``NPROC=8`` on 2 cores the reproducer ran 300 calls without a hang. A pool of ONE thread
is also safe, by construction: jaxlib only splits a batched LAPACK call over the pool when the
pool has more than one thread (``lapack_kernels.cc``: the whole batch is one chunk when
``num_threads <= 1``), so ``NPROC=1`` runs every call inline (the reproducer passes with
``NPROC=1`` and hangs with ``NPROC=2``; ``tests/test_parallel_cpu_pool.py``). Spare threads are not
free for rendering, though: on 2 cores (session 6, 1,024 stamps per call, medians of 9 calls)
random-n Sersic x Moffat drew at 2,567 / 3,248 / 3,450 images/s with 8 / 4 / 2 pool threads and
the paper's Exponential x Gaussian at 21.6k / 23.7k / 24.8k. A process that only renders can
set ``NPROC`` before JAX starts; this function then leaves it alone. Of the two safe values,
``NPROC=1`` draws batches fastest on 2 cores (the host planner has the other core) and
``NPROC=8`` runs large jitted programs (inference, training) faster: README, "Thread pool".
Since session 11 ``draw_batch`` gets both on machines with fewer than 8 cores: it renders on a
second XLA CPU client with one thread fewer than the cores (:func:`register_render_client`),
while everything else keeps the default client's pool.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import sys

__all__ = [
    "AFFECTED_JAXLIB",
    "RENDER_BACKEND",
    "jaxlib_affected",
    "jax_backends_started",
    "cpu_pool_workaround",
    "register_render_client",
    "render_device",
]

#: jaxlib versions whose CPU LAPACK kernels block pool threads (see the module docstring).
AFFECTED_JAXLIB = "0.10.*, 0.11.0"


def jaxlib_affected(version: str | None = None) -> bool:
    """Whether this jaxlib (or ``version``, e.g. "0.10.2") has the blocking LAPACK path."""
    if version is None:
        try:  # package metadata: no jaxlib import (keeps `import jaxsky` light)
            version = importlib.metadata.version("jaxlib")
        except importlib.metadata.PackageNotFoundError:  # no jaxlib: nothing to work around
            return False
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", str(version))
    if not m:
        return False
    major, minor, patch = (int(g) for g in m.groups())
    return major == 0 and (minor == 10 or (minor == 11 and patch == 0))


def jax_backends_started() -> bool | None:
    """Whether JAX's backends (and their thread pools) exist in this process.

    False when JAX is not even imported; None when JAX's private registry cannot be read (the
    caller decides which way to err).
    """
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # private API moved
        return None


#: Whether this process's ``os.environ["NPROC"]`` was set by :func:`cpu_pool_workaround`
#: (``import jaxsky`` calls it once).
APPLIED = False


def cpu_pool_workaround(min_threads: int = 8, *, environ=None) -> bool:
    """Size XLA's CPU thread pool to at least ``min_threads`` (via ``NPROC``) if it helps.

    Acts only when the installed jaxlib is affected, the machine has fewer than
    ``min_threads`` cores, ``NPROC`` is not set already, and JAX's backends have not started
    yet (the pool size is read once, when the CPU backend is created). Call it before the
    first JAX computation of a process. Returns True when it set ``NPROC``.
    """
    global APPLIED
    if int(min_threads) < 1:
        raise ValueError(f"min_threads={min_threads} must be a positive integer")
    env = os.environ if environ is None else environ
    if "NPROC" in env or not jaxlib_affected():
        return False
    if (os.cpu_count() or 1) >= int(min_threads):
        return False
    if jax_backends_started():  # unknown (None): setting the variable is still harmless
        return False  # too late for this process: the pool exists already
    env["NPROC"] = str(int(min_threads))
    if environ is None:
        APPLIED = True
    return True


#: Name of the second XLA CPU client that ``draw_batch`` renders on (:func:`render_device`).
RENDER_BACKEND = "jaxsky_render_cpu"

#: Set ``JAXSKY_RENDER_CLIENT=0`` to render on JAX's default CPU client instead.
_RENDER_ENV = "JAXSKY_RENDER_CLIENT"


def render_pool_size(cores: int | None = None) -> int:
    """Threads of the render client: one fewer than the cores (the host planner has one)."""
    return max(1, int(cores or os.cpu_count() or 1) - 1)


def register_render_client(min_cores: int = 8) -> bool:
    """Register a second XLA CPU client for ``draw_batch``, with :func:`render_pool_size`
    threads, before JAX's backends start. Returns True when registered.

    On machines with fewer than ``min_cores`` cores the default pool has 8 threads (the
    LAPACK work-around above), and a batch of small draw programs pays for them: XLA splits
    each loop over the 8 threads and the planner (numpy, on the host) competes with them for
    the cores. With this client (one thread on 2 cores), 1,024 stamps per ``draw_batch`` call
    on 2 cores (session 11): paper Exponential x Gaussian 33 at the render benchmark's
    ``galsim-default`` level 28.2 -> 24.1, 27.6 -> 25.3 and 40.8 -> 34.9 ms (pairs of fresh
    processes; ``NPROC=1`` for the whole process: 26.0 ms); in-process A/B, medians of 15:
    paper 37.8 -> 30.9 ms, paper at tight accuracy 48.3 -> 42.0, random-n Sersic x Moffat 64
    190 -> 176, n = 4 181 -> 176 (images identical). Render programs make no
    LAPACK calls, so this client's small pool cannot hit the deadlock above; the emulators and
    fits keep the default client. Skipped where ``NPROC`` was set by the user (their choice of
    pool), where ``JAXSKY_RENDER_CLIENT=0``, or once JAX's backends have started (then
    ``draw_batch`` uses the default client).
    """
    if os.environ.get(_RENDER_ENV, "1") == "0" or (os.cpu_count() or 1) >= int(min_cores):
        return False
    if ("NPROC" in os.environ and not APPLIED) or jax_backends_started() is not False:
        return False
    try:
        from jax.extend.backend import register_backend_factory

        register_backend_factory(RENDER_BACKEND, _make_render_client, priority=-1000)
    except Exception:  # API moved, or registered already
        return False
    return True


def _make_render_client():
    """An XLA CPU client whose pool has :func:`render_pool_size` threads (XLA reads the size
    from ``NPROC`` when a client is created; the variable is restored at once)."""
    from jaxlib import xla_client

    old = os.environ.get("NPROC")
    os.environ["NPROC"] = str(render_pool_size())
    try:
        return xla_client.make_cpu_client()
    finally:
        if old is None:
            os.environ.pop("NPROC", None)
        else:
            os.environ["NPROC"] = old


@functools.lru_cache(maxsize=1)
def render_device():
    """The render client's device where it exists and JAX's default backend is the CPU;
    else None (draw on the default device). It does not exist when registration was skipped,
    or when ``JAX_PLATFORMS`` names the backends to start (it is not among them)."""
    import jax

    try:
        if jax.default_backend() != "cpu":
            return None
        return jax.devices(RENDER_BACKEND)[0]
    except Exception:  # not registered, or registered after the backends started
        return None
