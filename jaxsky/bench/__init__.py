"""Benchmarks as a library: ``jaxsky bench`` and ``benchmarks/run.py`` both call this.

Areas: ``render`` (jaxsky vs GalSim, one run), ``grad`` (value_and_grad vs forward),
``predict`` and ``train_step`` (every emulator family), ``generate`` (stamps/s to HDF5),
``fit`` (galaxies fitted/s). Compile time is reported separately from run time; peak host
RSS and device memory are recorded; batch sizes scale with the platform and device count.
"""

from jaxsky.bench.runner import (
    AREAS,
    README_MARKERS,
    markdown,
    parse_only,
    results_table,
    run_benchmarks,
    update_readme,
)

__all__ = [
    "AREAS",
    "README_MARKERS",
    "run_benchmarks",
    "markdown",
    "results_table",
    "update_readme",
    "parse_only",
]
