"""jaxsky: differentiable, fast galaxy images in JAX, validated against GalSim.

The renderer's names (``jaxsky.Sersic``, ``jaxsky.draw`` ...) are imported on first use, so
that ``import jaxsky.data`` in a data-generation worker process does not pay for JAX.
"""

import importlib

from jaxsky._cpu_pool import cpu_pool_workaround as _cpu_pool_workaround

__version__ = "0.1.0"

# jaxlib 0.10 can deadlock its CPU thread pool on machines with few cores (batched LAPACK calls
# block pool threads); give the pool spare threads before JAX starts. See jaxsky._cpu_pool.
_cpu_pool_workaround()

_RENDER_NAMES = (
    "GSObject",
    "Gaussian",
    "Exponential",
    "Sersic",
    "DeVaucouleurs",
    "Moffat",
    "Add",
    "Sum",
    "Convolution",
    "Convolve",
    "Transformation",
    "DrawPlan",
    "GSParams",
    "draw",
    "checked",
    "draw_batch",
    "make_plan",
    "SERSIC_N_RANGE",
    "MOFFAT_BETA_RANGE",
)

__all__ = [*_RENDER_NAMES, "__version__"]


def __getattr__(name):
    if name in _RENDER_NAMES:
        value = getattr(importlib.import_module("jaxsky.render"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxsky' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
