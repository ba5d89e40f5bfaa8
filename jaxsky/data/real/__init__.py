"""Real-galaxy and catalogue presets: COSMOS parametric fits, COSMOS/AEGIS real galaxies, XDF.

``PRESETS`` maps a preset name to a factory taking keyword options (at least ``catalog=``: a
catalogue file or directory; for ``xdf`` a 2-D FITS image, or None for scikit-image's XDF) and
returning a :class:`jaxsky.data.presets.base.Preset`.
"""

from jaxsky.data.real._common import HST_F814W, survey_psf
from jaxsky.data.real.catalog import (
    ParametricCatalog,
    RealCatalog,
    open_parametric_catalog,
    open_real_catalog,
)
from jaxsky.data.real.cosmos import CosmosParametric, CosmosReal
from jaxsky.data.real.xdf import XDF
from jaxsky.data.real.xdf_detect import Cutouts, extract_cutouts, load_image, load_xdf_luminance

__all__ = [
    "PRESETS",
    "CosmosParametric",
    "CosmosReal",
    "XDF",
    "Cutouts",
    "extract_cutouts",
    "load_image",
    "load_xdf_luminance",
    "ParametricCatalog",
    "RealCatalog",
    "open_parametric_catalog",
    "open_real_catalog",
    "survey_psf",
    "HST_F814W",
]

PRESETS = {
    "cosmos-parametric": CosmosParametric,
    "cosmos-real": CosmosReal,
    "xdf": XDF,
}
