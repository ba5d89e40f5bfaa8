"""Training sets: designs, presets and survey conditions, GalSim/jaxsky simulation, HDF5 store."""

from jaxsky.data.dataset import SPLITS, Dataset, assign_splits
from jaxsky.data.design import Param, disc_from_unit, unit_design
from jaxsky.data.generate import generate
from jaxsky.data.loader import Batch, batches, simulate
from jaxsky.data.merge import merge
from jaxsky.data.presets import get_preset, list_presets, register_preset
from jaxsky.data.store import load
from jaxsky.data.surveys import SURVEYS, get_survey, list_surveys

__all__ = [
    "Dataset",
    "SPLITS",
    "assign_splits",
    "Param",
    "unit_design",
    "disc_from_unit",
    "generate",
    "merge",
    "load",
    "simulate",
    "batches",
    "Batch",
    "get_preset",
    "list_presets",
    "register_preset",
    "SURVEYS",
    "get_survey",
    "list_surveys",
]
