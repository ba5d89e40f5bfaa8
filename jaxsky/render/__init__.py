"""Differentiable light-profile rendering that matches GalSim pixel for pixel."""

from jaxsky.render._base import GSObject
from jaxsky.render._checks import checked
from jaxsky.render.compound import Add, Convolution, Convolve, Sum
from jaxsky.render.draw import DrawPlan, GSParams, draw, draw_batch, good_fft_size, make_plan
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
    "make_plan",
    "good_fft_size",
    "sersic_b",
    "SERSIC_N_RANGE",
    "MOFFAT_BETA_RANGE",
]
