"""Differentiable light-profile rendering that matches GalSim pixel for pixel."""

from jaxsky.render._base import GSObject
from jaxsky.render._checks import checked
from jaxsky.render.compound import Add, Convolution, Convolve, Sum
from jaxsky.render.drawing import (
    DrawPlan,
    GSParams,
    batch_axes,
    draw,
    draw_batch,
    make_plan,
    plan_sizes,
)
from jaxsky.render.profiles import (
    MOFFAT_BETA_RANGE,
    SERSIC_N_RANGE,
    DeVaucouleurs,
    Exponential,
    Gaussian,
    Moffat,
    Sersic,
    sersic_b,
)
from jaxsky.render.transform import Transformation

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
    "batch_axes",
    "plan_sizes",
    "make_plan",
    "sersic_b",
    "SERSIC_N_RANGE",
    "MOFFAT_BETA_RANGE",
]
