"""Inference with jaxsky forward models: likelihoods, priors and bijections, batched MAP fits
with Laplace errors, ``fit_sersic`` for survey stamps, ``fit_images`` / ``fit_emulator`` for any
forward model (a renderer closure or a trained emulator), and NUTS adapters (optional numpyro)."""

from jaxsky.infer.emulated import EMULATOR_CONFIG, fit_emulator, fit_images
from jaxsky.infer.likelihood import (
    Stamps,
    gaussian_loglike,
    make_loglike,
    poisson_loglike,
    prepare_stamps,
)
from jaxsky.infer.map import MapConfig, MapResult, fit_map
from jaxsky.infer.priors import (
    Bijection,
    ParameterSpace,
    flat_prior,
    identity,
    interval,
    log_interval,
    normal_prior,
    positive,
    unit_disk,
)
from jaxsky.infer.sersic import (
    FLAGS,
    PARAMS,
    SERSIC_CONFIG,
    fit_sersic,
    sersic_model,
    sersic_plan,
    sersic_space,
)

__all__ = [
    "Stamps",
    "prepare_stamps",
    "gaussian_loglike",
    "poisson_loglike",
    "make_loglike",
    "MapConfig",
    "MapResult",
    "fit_map",
    "Bijection",
    "ParameterSpace",
    "identity",
    "positive",
    "interval",
    "log_interval",
    "unit_disk",
    "flat_prior",
    "normal_prior",
    "fit_sersic",
    "fit_images",
    "fit_emulator",
    "EMULATOR_CONFIG",
    "sersic_model",
    "sersic_space",
    "sersic_plan",
    "SERSIC_CONFIG",
    "PARAMS",
    "FLAGS",
]
