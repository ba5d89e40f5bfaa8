"""Base for presets whose images come from catalogue rows: row choice, rotation, PSF per image."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxsky.data.design import PURPOSES, index_uniforms
from jaxsky.data.presets.base import Design, Preset, Survey
from jaxsky.data.real._common import check_survey, choose_rows, draw_fwhm

__all__ = ["CatalogPreset"]

KINDS = ("lhs", "sobol", "random")


class CatalogPreset(Preset):
    """Images of catalogue galaxies: the design is a seeded choice of rows, not a hypercube.

    Subclasses set ``param_names``/``param_units``, fill ``self._cond`` (float64[n_rows, P]) and
    ``self._weights`` (or None), and implement :meth:`simulate`. Row ``k`` of ``self._cond``
    is the galaxy that :meth:`simulate` draws for ``Design.rows == self._row_ids[k]``.
    """

    default_survey: Survey
    _cond: np.ndarray
    _row_ids: np.ndarray
    _weights: np.ndarray | None = None

    def __init__(
        self,
        *,
        replace: bool | None = None,
        weighted: bool = False,
        rotate: bool = True,
        flux_scale: float = 1.0,
    ):
        if not (np.isfinite(flux_scale) and flux_scale > 0):
            raise ValueError(f"flux_scale={flux_scale} must be finite and > 0")
        self.replace = replace
        self.weighted = bool(weighted)
        self.rotate = bool(rotate)
        # Multiplies every image: converts catalogue flux units to the survey's (e.g.
        # 10**(0.4 * (zp_survey - zp_catalogue)) for AB zero-points of 1 count).
        self.flux_scale = float(flux_scale)

    # ------------------------------------------------------------------ Preset contract
    def ranges(self) -> dict[str, tuple[float, float]]:
        return {
            k: (float(self._cond[:, j].min()), float(self._cond[:, j].max()))
            for j, k in enumerate(self.param_names)
        }

    def survey_or_default(self, survey: Survey | None) -> Survey:
        survey = self.default_survey if survey is None else survey
        check_survey(survey)
        return survey

    def stamp_shape(self, survey: Survey | None = None) -> tuple[int, int]:
        s = int(self.survey_or_default(survey).stamp)
        return (s, s)

    def pixel_scale(self, survey: Survey | None = None) -> float:
        return float(self.survey_or_default(survey).scale)

    def design(
        self, n: int, *, seed: int, survey: Survey | None = None, kind: str = "lhs"
    ) -> Design:
        """Choose ``n`` catalogue rows (seeded) with a rotation and a PSF FWHM per image.

        ``kind`` is accepted for interface compatibility ('lhs', 'sobol', 'random'): a catalogue
        is sampled, not space-filled, so every kind gives the same seeded row choice.
        Extra inputs stored per image: ``rotation`` (radians, uniform in [0, 2 pi) from
        (seed, i)), ``psf_fwhm`` (arcsec, uniform in the survey's range from (seed, i)) and
        ``catalog_pos`` (position in the usable-row list).
        """
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not one of {KINDS}")
        survey = self.survey_or_default(survey)
        w = self._weights if self.weighted else None
        pos = choose_rows(int(n), len(self._row_ids), seed=seed, replace=self.replace, weights=w)
        self.check_target(survey, self._row_ids[pos])
        rot = np.zeros(int(n))
        if self.rotate:
            rot = 2 * math.pi * index_uniforms(seed, np.arange(int(n)), PURPOSES["rotation"])
        return Design(
            params=self._cond[pos].copy(),
            rows=self._row_ids[pos].astype(np.int64),
            extra={
                "rotation": rot,
                "psf_fwhm": draw_fwhm(survey, int(n), seed),
                "catalog_pos": pos.astype(np.float64),
            },
        )

    def check_target(self, survey: Survey, rows=None) -> None:
        """Raise when ``survey`` cannot be simulated for catalogue ``rows`` (override)."""

    def _pos_of(self, design: Design, i: int) -> int:
        """Position of image ``i``'s galaxy in the usable-row list, checked against its row id."""
        row = int(design.rows[i])
        k = int(np.searchsorted(self._row_ids, row))
        if k >= len(self._row_ids) or self._row_ids[k] != row:
            raise ValueError(f"design row {row} (image {i}) is not a usable row of {self.name}")
        return k

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "param_names": list(self.param_names),
            "param_units": list(self.param_units),
            "replace": self.replace,
            "weighted": self.weighted,
            "rotate": self.rotate,
            "flux_scale": self.flux_scale,
            "default_survey": self.default_survey.name,
        }
