"""Training sets: designs, presets and survey conditions, GalSim/jaxsky simulation, HDF5 store."""

from jaxsky.data.dataset import SPLITS, Dataset, assign_splits

__all__ = ["Dataset", "SPLITS", "assign_splits"]
