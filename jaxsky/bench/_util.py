"""Timing, memory and device helpers shared by the benchmark areas."""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
import time
from collections.abc import Callable

import jax
import numpy as np

__all__ = [
    "Context",
    "timed",
    "rate_row",
    "memory",
    "device_info",
    "device_tag",
    "batch_for",
    "CompileClock",
]


class Context:
    """What every area receives: mode, seed, batch scaling and a scratch directory."""

    def __init__(self, *, quick: bool, seed: int, tmp, log: Callable[[str], None]):
        self.quick = quick
        self.seed = seed
        self.tmp = tmp
        self.log = log
        dev = jax.local_devices()[0]
        self.platform = dev.platform
        self.n_devices = jax.local_device_count()

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])

    def batch(self, cpu_quick: int, cpu_full: int, accel_factor: int = 64) -> int:
        """Batch size for this device: CPU sizes, times ``accel_factor`` on GPU/TPU,
        times the number of local devices, rounded to a multiple of the device count."""
        return batch_for(
            self.platform, self.n_devices, cpu_quick if self.quick else cpu_full, accel_factor
        )

    def device_budget_bytes(self) -> int:
        """Device memory one benchmark step may use: 30% of the device, 2 GiB on a CPU."""
        stats = _memory_stats()
        if stats and stats.get("bytes_limit"):
            return int(0.3 * stats["bytes_limit"])
        return 2 << 30


def batch_for(platform_name: str, n_devices: int, cpu_batch: int, accel_factor: int) -> int:
    per = cpu_batch * (1 if platform_name == "cpu" else accel_factor)
    return int(per * max(1, n_devices))


def timed(fn: Callable, *args, repeats: int = 3) -> tuple[float, float, object]:
    """(first-call seconds incl. compile, best later-call seconds, output); blocks on results."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return first, best, out


def timed_pair(fns: dict, *args, repeats: int = 15) -> dict:
    """{name: (first-call seconds incl. compile, median later-call seconds)} of functions
    called in turn (interleaved), so that a drift of the machine's speed moves them alike:
    their ratio is steadier than that of separately timed bests (``jaxsky bench``'s paper
    value_and_grad / forward was 3.60, 5.37 and 2.38 in three identical runs that way)."""
    first, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        first[name] = time.perf_counter() - t0
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    return {name: (first[name], float(np.median(times[name]))) for name in fns}


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling inside a ``with`` block.

    Sums the ``/jax/core/compile/*_duration`` events of :mod:`jax.monitoring`, so the run time
    of a block that compiles as it goes (an emulator fit) is ``wall - clock.seconds``;
    ``events`` counts those events (0 when everything was cached).
    """

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self):
        self.seconds = 0.0
        self.events = 0

    def _listen(self, event, duration, **_):
        if event in self.EVENTS:
            self.seconds += float(duration)
            self.events += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
        return False


def rate_row(
    case: str,
    impl: str,
    n: int,
    run_s: float,
    *,
    compile_s=None,
    unit="stamps/s",
    reference=None,
    **extra,
) -> dict:
    """One table row: n items in run_s seconds (compile excluded), optional reference rate."""
    row = dict(
        case=case,
        impl=impl,
        batch=int(n),
        run_s=float(run_s),
        rate=float(n / run_s) if run_s > 0 else float("inf"),
        unit=unit,
    )
    if compile_s is not None:
        row["compile_s"] = float(compile_s)
    if reference is not None:
        row["vs_reference"] = row["rate"] / reference
    row.update(extra)
    return row


def _memory_stats() -> dict | None:
    try:
        return jax.local_devices()[0].memory_stats()
    except Exception:  # some backends do not implement it
        return None


def memory() -> dict:
    """Host peak RSS (process lifetime), current RSS and device memory peak where available."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024  # Linux reports KiB
    out = {"host_peak_rss_mb": peak / 2**20}
    try:
        import psutil

        out["host_rss_mb"] = psutil.Process(os.getpid()).memory_info().rss / 2**20
    except ImportError:
        pass
    stats = _memory_stats()
    if stats:
        for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit"):
            if k in stats:
                out[f"device_{k.replace('bytes', 'mb')}"] = stats[k] / 2**20
    return out


def device_tag() -> str:
    """``<platform>-<device kind>`` in lower-case file-name characters, e.g. ``gpu-nvidia-h200``."""
    dev = jax.local_devices()[0]
    kind = re.sub(r"[^a-z0-9]+", "-", str(dev.device_kind).lower()).strip("-") or "device"
    return f"{dev.platform}-{kind}" if kind != dev.platform else dev.platform


def device_info() -> dict:
    import galsim

    import jaxsky

    dev = jax.local_devices()[0]
    return dict(
        platform=dev.platform,
        device_kind=str(dev.device_kind),
        local_devices=jax.local_device_count(),
        processes=jax.process_count(),
        cpu_cores=os.cpu_count(),
        machine=platform.machine(),
        python=platform.python_version(),
        jax=jax.__version__,
        jaxlib=getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        jaxsky=jaxsky.__version__,
        galsim=galsim.__version__,
        x64=bool(jax.config.jax_enable_x64),
    )


def _jaxlib_version():
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:
        return None
