"""Independent validation: adaptive moments, HSM, morphology, shear bias, metrics and reports."""

from jaxsky.validate.hsm import HSMResult, hsm_moments, hsm_shear
from jaxsky.validate.moments import Moments, adaptive_moments, batch_adaptive_moments, e_to_g
from jaxsky.validate.morphology import batch_morphology, morphology
from jaxsky.validate.noise import add_noise, border_sigma, noisy_moments
from jaxsky.validate.population import mean_with_error, population_check
from jaxsky.validate.psfcorr import (
    CorrectedShape,
    batch_corrected_shape,
    corrected_shape,
    psf_moments,
)
from jaxsky.validate.refit import SersicFit, sersic_model, sersic_refit
from jaxsky.validate.report import compare, evaluate, learning_curve, measure
from jaxsky.validate.shear import (
    ShearCalibration,
    compare_shear_calibration,
    compose_shear,
    paired_bias,
    param_shear_renderer,
    preset_psf_images,
    ring_images,
    shear_calibration,
)

__all__ = [
    "Moments",
    "adaptive_moments",
    "batch_adaptive_moments",
    "e_to_g",
    "HSMResult",
    "hsm_moments",
    "hsm_shear",
    "morphology",
    "batch_morphology",
    "CorrectedShape",
    "corrected_shape",
    "batch_corrected_shape",
    "psf_moments",
    "border_sigma",
    "add_noise",
    "noisy_moments",
    "SersicFit",
    "sersic_refit",
    "sersic_model",
    "ShearCalibration",
    "shear_calibration",
    "compare_shear_calibration",
    "paired_bias",
    "ring_images",
    "compose_shear",
    "param_shear_renderer",
    "preset_psf_images",
    "mean_with_error",
    "population_check",
    "measure",
    "evaluate",
    "compare",
    "learning_curve",
]
