"""jaxsky: differentiable, fast galaxy images in JAX, validated against GalSim."""

from jaxsky.render import (
    MOFFAT_BETA_RANGE,
    SERSIC_N_RANGE,
    Add,
    Convolution,
    Convolve,
    DeVaucouleurs,
    DrawPlan,
    Exponential,
    Gaussian,
    GSObject,
    GSParams,
    Moffat,
    Sersic,
    Sum,
    Transformation,
    checked,
    draw,
    draw_batch,
    make_plan,
)

__version__ = "0.1.0"

__all__ = [
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
    "__version__",
]
