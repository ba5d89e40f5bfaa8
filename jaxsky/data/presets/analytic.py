"""Analytic galaxy presets drawn with GalSim: ``paper``, ``sersic``, ``bulge-disk``.

Every preset declares its conditioning parameters as :class:`~jaxsky.data.design.Param` s
(name, range, linear/log, unit) and builds one GalSim object per design row. Under a
:class:`~jaxsky.data.presets.base.Survey` the survey's pixel scale, stamp, PSF family (with its
FWHM range as the ``psf_fwhm`` condition) and sky noise replace the preset's own; a PSF shape
parameter the survey fixes (Moffat beta) is then no longer a condition.

Shear: ``paper`` samples g1, g2 independently in the box [-0.5, 0.5]^2 exactly as the
original setup (|g| <= 0.71 < 1, so GalSim accepts every point). ``sersic`` and ``bulge-disk``
sample the disc |g| < 0.6 with the area-preserving map of :func:`disc_from_unit` (two Latin
hypercube columns -> (|g|, angle)), so no point is rejected and the design stays space-filling.

PSF images are the *effective* PSF (PSF convolved with the pixel, GalSim ``method='auto'``),
unit flux, at the image's pixel scale and stamp size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from jaxsky.data.design import Param, disc_from_unit, index_seeds, scale_to_ranges, unit_design
from jaxsky.data.presets.base import Design, Preset, SimResult, Survey

# Same as jaxsky.render.SERSIC_N_RANGE (GalSim's Sersic range), kept here so that data-generation
# workers do not import JAX; tests/test_data_presets.py checks that the two agree.
SERSIC_N_RANGE = (0.3, 6.2)

__all__ = [
    "airy_fwhm_unit",
    "AnalyticPreset",
    "PaperPreset",
    "SersicPreset",
    "BulgeDiskPreset",
    "PRESETS",
]

G_MAX = 0.6  # shear disc radius for sersic / bulge-disk
_POS = (1e-6, math.inf)  # sizes, fluxes: positive
_FRAC = (0.0, 1.0)
_G = (-0.99, 0.99)  # and |g| < 1 at the box corners (checked in _set_ranges)
_BETA = (1.11, 10.0)  # GalSim's Moffat needs beta > 1.1 without truncation


class AnalyticPreset(Preset):
    """Common machinery: parameters -> design -> GalSim object -> stamp."""

    scale: float = 0.2
    stamp: int = 33
    shear_disc: bool = False  # g1, g2 from the |g| < G_MAX disc instead of a box
    jaxsky_backend: bool = False  # validated for jaxsky's vmapped renderer

    def __init__(self, ranges: dict[str, tuple[float, float]] | None = None):
        self._overrides = {}
        self._set_ranges(ranges)

    def _set_ranges(self, ranges) -> None:
        """Replace declared ranges: name -> (low, high), validated (empty, inverted, bounds)."""
        ranges = dict(ranges or {})
        known = [p.name for p in self._galaxy_params() + self._psf_params(None)]
        for name, lohi in ranges.items():
            if name not in known:
                raise ValueError(f"range for unknown parameter {name!r}; {self.name} has {known}")
            if self.shear_disc and name in ("g1", "g2"):
                raise ValueError(
                    f"preset {self.name!r} samples shear in the disc |g| < {G_MAX}; its g1/g2 "
                    "ranges cannot be changed"
                )
            try:
                lo, hi = (float(v) for v in lohi)
            except (TypeError, ValueError):
                raise ValueError(f"range of {name!r} must be two numbers, got {lohi!r}") from None
            self._overrides[name] = (lo, hi)
        self.parameters(None)  # validate now
        g = [max(abs(v) for v in self._overrides.get(k, (0.5, 0.5))) for k in ("g1", "g2")]
        if not self.shear_disc and np.hypot(*g) >= 1:
            raise ValueError(
                f"g1/g2 ranges reach |g| = {np.hypot(*g):.3f}; GalSim needs |g| < 1 at every corner"
            )

    # ----------------------------------------------------------------- declaration
    def _galaxy_params(self) -> tuple[Param, ...]:
        raise NotImplementedError

    def _psf_params(self, survey: Survey | None) -> tuple[Param, ...]:
        raise NotImplementedError

    def parameters(self, survey: Survey | None = None) -> tuple[Param, ...]:
        """The conditioning parameters under ``survey`` (order = ``params`` columns)."""
        out = self._galaxy_params() + self._psf_params(survey)
        over = getattr(self, "_overrides", {})
        return tuple(
            dataclasses.replace(p, low=over[p.name][0], high=over[p.name][1])
            if p.name in over
            else p
            for p in out
        )

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters(None))

    @property
    def param_units(self) -> tuple[str, ...]:
        return tuple(p.unit for p in self.parameters(None))

    def ranges(self, survey: Survey | None = None) -> dict[str, tuple[float, float]]:
        return {p.name: (float(p.low), float(p.high)) for p in self.parameters(survey)}

    def stamp_shape(self, survey: Survey | None = None) -> tuple[int, int]:
        s = self.stamp if survey is None else survey.stamp
        return (s, s)

    def pixel_scale(self, survey: Survey | None = None) -> float:
        return self.scale if survey is None else survey.scale

    def noise_sigma(self, survey: Survey | None = None) -> float:
        return 0.0 if survey is None else float(survey.noise_sigma)

    def psf_family(self, survey: Survey | None = None) -> str:
        return self._own_psf if survey is None else survey.psf_family

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "scale": self.scale,
            "stamp": self.stamp,
            "psf_family": self._own_psf,
            "shear": f"disc |g| < {G_MAX} (area-preserving)" if self.shear_disc else "box",
            "parameters": [p.config() for p in self.parameters(None)],
            "range_overrides": {k: list(v) for k, v in getattr(self, "_overrides", {}).items()},
        }

    # ----------------------------------------------------------------- design
    def design(
        self,
        n: int,
        *,
        seed: int,
        survey: Survey | None = None,
        kind: str = "lhs",
        stream: int = 0,
    ) -> Design:
        """Design of ``n`` images; ``stream=1`` gives an independent hold-out set."""
        params = self.parameters(survey)
        u = unit_design(n, len(params), seed=seed, kind=kind, stream=stream)
        x = scale_to_ranges(u, params)
        names = [p.name for p in params]
        if self.shear_disc:
            j1, j2 = names.index("g1"), names.index("g2")
            x[:, j1], x[:, j2] = disc_from_unit(u[:, j1], u[:, j2], G_MAX)
        return Design(params=x, rows=np.full(n, -1, dtype=np.int64), extra={})

    # ----------------------------------------------------------------- simulation
    def _names(self, survey: Survey | None) -> tuple[str, ...]:
        cache = self.__dict__.setdefault("_names_cache", {})
        if survey not in cache:
            cache[survey] = tuple(p.name for p in self.parameters(survey))
        return cache[survey]

    def _values(self, design: Design, i: int, survey: Survey | None) -> dict[str, float]:
        names = self._names(survey)
        vals = {k: float(v) for k, v in zip(names, design.params[i])}
        vals.update({k: float(v[i]) for k, v in design.extra.items()})
        return vals

    def galsim_psf(self, vals: dict[str, float], survey: Survey | None):
        import galsim

        family = self.psf_family(survey)
        fwhm = vals["psf_fwhm"]
        if family == "gaussian":
            return galsim.Gaussian(fwhm=fwhm)
        if family == "moffat":
            beta = vals.get("psf_beta", survey.psf_beta if survey else 3.5)
            return galsim.Moffat(beta=beta, fwhm=fwhm)
        if family == "airy":
            obsc = survey.obscuration if survey else 0.0
            return galsim.Airy(lam_over_diam=fwhm / airy_fwhm_unit(obsc), obscuration=obsc)
        raise ValueError(f"psf_family={family!r} is not one of ('gaussian', 'moffat', 'airy')")

    def galsim_galaxy(self, vals: dict[str, float], *, rng_seed: int):
        raise NotImplementedError

    def simulate(
        self, design: Design, i: int, *, seed: int, survey: Survey | None = None
    ) -> SimResult:
        images, psfs = self.simulate_range(design, i, i + 1, seed=seed, survey=survey)
        return SimResult(image=images[0], psf=psfs[0])

    def simulate_range(
        self, design: Design, i0: int, i1: int, *, seed: int, survey: Survey | None = None,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Images and effective PSFs float32[i1-i0, ny, nx] of design rows ``i0 .. i1-1``.

        The pixel response is one shared ``galsim.Pixel`` convolved explicitly and drawn with
        ``method="no_pixel"`` (the pixels of ``drawImage(nx=, ny=, scale=)`` with
        ``method="auto"``, tested), into one reused :class:`~jaxsky.data.presets._stamp.Stamp`
        that skips ``drawImage``'s per-call set-up (bit-identical to ``drawImage``, tested).
        Seeds and parameter rows are prepared for the whole range at once, so the loop is only
        GalSim calls. ``out``: optional float32[>= i1-i0, ny, nx] arrays to draw into (their
        leading views are returned; a caller that reuses them saves fresh pages per chunk).
        """
        import galsim

        from jaxsky.data.presets._stamp import Stamp

        ny, nx = self.stamp_shape(survey)
        scale = self.pixel_scale(survey)
        m = int(i1) - int(i0)
        if out is None:
            images, psfs = np.empty((m, ny, nx), np.float32), np.empty((m, ny, nx), np.float32)
        else:
            images, psfs = out[0][:m], out[1][:m]
            if images.shape != (m, ny, nx) or psfs.shape != (m, ny, nx):
                raise ValueError(f"out arrays of shape {out[0].shape} cannot hold {m} x {ny}x{nx}")
        pix = galsim.Pixel(scale)
        draw = Stamp(nx, ny, scale).draw
        seeds = index_seeds(seed, np.arange(i0, i1), 0).tolist()
        names = self._names(survey)
        rows = np.asarray(design.params[i0:i1], np.float64).tolist()
        extra = {k: np.asarray(v[i0:i1], np.float64).tolist() for k, v in design.extra.items()}
        for j in range(m):
            vals = dict(zip(names, rows[j]))
            for k, v in extra.items():
                vals[k] = v[j]
            gal = self.galsim_galaxy(vals, rng_seed=seeds[j])
            psf = self.galsim_psf(vals, survey)
            images[j] = draw(galsim.Convolve(gal, psf, pix))
            psfs[j] = draw(galsim.Convolve(psf, pix))
        return images, psfs

    def jaxsky_batch(self, design: Design, idx: np.ndarray, survey: Survey | None = None):
        """Images float32[len(idx), ny, nx] and PSFs with jaxsky's vmapped renderer."""
        raise NotImplementedError(f"preset {self.name!r} has no validated jaxsky backend")


@functools.lru_cache(maxsize=16)
def airy_fwhm_unit(obscuration: float) -> float:
    """FWHM of an obscured Airy pattern in units of lambda/D (1.0290 unobscured).

    Intensity (Born & Wolf sec. 8.5; GalSim ``Airy``): with ``x = pi theta D / lambda`` and
    obscuration ``e``, ``I(x) ∝ [2 J1(x)/x - e^2 2 J1(e x)/(e x)]^2``; solved for I = I(0)/2.
    """
    from scipy.optimize import brentq
    from scipy.special import j1

    e = float(obscuration)

    def amp(x):
        a = 2 * j1(x) / x
        return a - (e**2 * 2 * j1(e * x) / (e * x) if e > 0 else 0.0)

    peak = 1.0 - e**2
    x_half = brentq(lambda x: amp(x) ** 2 - 0.5 * peak**2, 1e-6, 3.0)
    return 2 * x_half / np.pi


def _jaxsky_psf(family, fwhm, beta):
    import jaxsky

    if family == "gaussian":
        return jaxsky.Gaussian(fwhm=fwhm)
    if family == "moffat":
        return jaxsky.Moffat(beta=beta, fwhm=fwhm)
    raise ValueError(f"the jaxsky backend has no {family!r} PSF; use --backend galsim")


def _jaxsky_draw(gal, psf, shape, scale):
    import jaxsky

    ny, nx = shape
    img = jaxsky.draw_batch(jaxsky.Convolve(gal, psf), nx=nx, ny=ny, scale=scale)
    pim = jaxsky.draw_batch(psf, nx=nx, ny=ny, scale=scale)
    return np.asarray(img, np.float32), np.asarray(pim, np.float32)


class PaperPreset(AnalyticPreset):
    """The original setup: sheared Exponential x Gaussian PSF, 33x33 at 0.2"/px, noiseless."""

    name = "paper"
    description = (
        'Exponential (flux 1e4-1e5, scale radius 0.1-1.0") sheared by g1,g2 in [-0.5,0.5], '
        'Gaussian PSF FWHM 0.2-0.4", 33x33 at 0.2"/px, noiseless'
    )
    scale, stamp, _own_psf = 0.2, 33, "gaussian"
    jaxsky_backend = True

    def _galaxy_params(self):
        return (
            Param("flux", 1e4, 1e5, unit="electrons", doc="total flux", bounds=_POS),
            Param("scale_radius", 0.1, 1.0, unit="arcsec", doc="scale radius", bounds=_POS),
            Param("g1", -0.5, 0.5, doc="reduced shear, component 1", bounds=_G),
            Param("g2", -0.5, 0.5, doc="reduced shear, component 2", bounds=_G),
        )

    def _psf_params(self, survey):
        lo, hi = (0.2, 0.4) if survey is None else survey.psf_fwhm
        return (Param("psf_fwhm", lo, hi, unit="arcsec", doc="PSF FWHM", bounds=_POS),)

    def galsim_galaxy(self, vals, *, rng_seed):
        import galsim

        gal = galsim.Exponential(scale_radius=vals["scale_radius"], flux=vals["flux"])
        return gal.shear(g1=vals["g1"], g2=vals["g2"])

    def jaxsky_batch(self, design, idx, survey=None):
        import jaxsky

        names = [p.name for p in self.parameters(survey)]
        x = {k: design.params[idx, j] for j, k in enumerate(names)}
        gal = jaxsky.Exponential(scale_radius=x["scale_radius"], flux=x["flux"])
        gal = gal.shear(g1=x["g1"], g2=x["g2"])
        beta = survey.psf_beta if survey else 3.5
        psf = _jaxsky_psf(self.psf_family(survey), x["psf_fwhm"], beta)
        return _jaxsky_draw(gal, psf, self.stamp_shape(survey), self.pixel_scale(survey))


class SersicPreset(AnalyticPreset):
    """Sheared Sersic x Moffat PSF (beta and FWHM varied), 64x64 at 0.2"/px."""

    name = "sersic"
    description = (
        'Sersic (n 0.5-4, half-light radius 0.1-1.0", flux 1e4-1e5 log) sheared in |g|<0.6, '
        'Moffat PSF beta 2-5, FWHM 0.5-1.0", 64x64 at 0.2"/px, noiseless'
    )
    scale, stamp, _own_psf, shear_disc = 0.2, 64, "moffat", True
    jaxsky_backend = True

    def _galaxy_params(self):
        return (
            Param("flux", 1e4, 1e5, log=True, unit="electrons", doc="total flux", bounds=_POS),
            Param("half_light_radius", 0.1, 1.0, log=True, unit="arcsec", bounds=_POS),
            Param("n", 0.5, 4.0, doc="Sersic index", bounds=SERSIC_N_RANGE),
            Param("g1", -G_MAX, G_MAX, doc="reduced shear 1 (disc |g| < 0.6)"),
            Param("g2", -G_MAX, G_MAX, doc="reduced shear 2 (disc |g| < 0.6)"),
        )

    def _psf_params(self, survey):
        if survey is None:
            return (
                Param("psf_beta", 2.0, 5.0, doc="Moffat beta", bounds=_BETA),
                Param("psf_fwhm", 0.5, 1.0, unit="arcsec", doc="PSF FWHM", bounds=_POS),
            )
        return (Param("psf_fwhm", *survey.psf_fwhm, unit="arcsec", bounds=_POS),)

    def galsim_galaxy(self, vals, *, rng_seed):
        import galsim

        gal = galsim.Sersic(n=vals["n"], half_light_radius=vals["half_light_radius"])
        return gal.withFlux(vals["flux"]).shear(g1=vals["g1"], g2=vals["g2"])

    def jaxsky_batch(self, design, idx, survey=None):
        import jaxsky

        names = [p.name for p in self.parameters(survey)]
        x = {k: design.params[idx, j] for j, k in enumerate(names)}
        gal = jaxsky.Sersic(n=x["n"], half_light_radius=x["half_light_radius"], flux=x["flux"])
        gal = gal.shear(g1=x["g1"], g2=x["g2"])
        beta = x.get("psf_beta", survey.psf_beta if survey else 3.5)
        psf = _jaxsky_psf(self.psf_family(survey), x["psf_fwhm"], beta)
        return _jaxsky_draw(gal, psf, self.stamp_shape(survey), self.pixel_scale(survey))


class BulgeDiskPreset(AnalyticPreset):
    """de Vaucouleurs bulge + exponential disk (+ optional star-forming knots) x Moffat PSF.

    With ``knots > 0`` a fraction ``knot_fraction`` of the disk's flux is moved into
    ``galsim.RandomKnots`` (a random walk of point sources with the disk's half-light radius)
    whose positions are seeded by image ``i``'s render seed: a stochastic set, one realisation
    per image, reproducible from (seed, i).
    """

    scale, stamp, _own_psf, shear_disc = 0.2, 48, "moffat", True

    def __init__(self, knots: int = 0, ranges=None):
        if int(knots) != knots or knots < 0:
            raise ValueError(f"knots={knots} must be an integer >= 0")
        self.knots = int(knots)
        self.name = "bulge-disk" if not knots else "bulge-disk-knots"
        self.description = (
            'de Vaucouleurs bulge (fraction 0-1, hlr 0.05-0.5") + exponential disk (hlr '
            '0.2-1.2"), flux 1e4-1e5 log, |g|<0.6, Moffat PSF beta 3.5 FWHM 0.5-1.0", 48x48 at '
            '0.2"/px, noiseless'
        ) + (f"; {knots} star-forming knots carry 0-50% of the disk flux" if knots else "")
        super().__init__(ranges)

    def _galaxy_params(self):
        out = (
            Param("flux", 1e4, 1e5, log=True, unit="electrons", doc="total flux", bounds=_POS),
            Param("bulge_fraction", 0.0, 1.0, doc="bulge flux / total flux", bounds=_FRAC),
            Param("bulge_hlr", 0.05, 0.5, log=True, unit="arcsec", bounds=_POS),
            Param("disk_hlr", 0.2, 1.2, log=True, unit="arcsec", bounds=_POS),
            Param("g1", -G_MAX, G_MAX, doc="reduced shear 1 (disc |g| < 0.6)"),
            Param("g2", -G_MAX, G_MAX, doc="reduced shear 2 (disc |g| < 0.6)"),
        )
        if self.knots:
            out += (
                Param("knot_fraction", 0.0, 0.5, doc="disk flux fraction in knots", bounds=_FRAC),
            )
        return out

    def _psf_params(self, survey):
        lo, hi = (0.5, 1.0) if survey is None else survey.psf_fwhm
        return (Param("psf_fwhm", lo, hi, unit="arcsec", doc="PSF FWHM", bounds=_POS),)

    def config(self):
        return {**super().config(), "knots": self.knots, "psf_beta": 3.5}

    def galsim_galaxy(self, vals, *, rng_seed):
        import galsim

        flux, bf = vals["flux"], vals["bulge_fraction"]
        bulge = galsim.DeVaucouleurs(half_light_radius=vals["bulge_hlr"], flux=flux * bf)
        disk_flux = flux * (1.0 - bf)
        kf = vals.get("knot_fraction", 0.0) if self.knots else 0.0
        parts = [bulge, galsim.Exponential(half_light_radius=vals["disk_hlr"])]
        parts[1] = parts[1].withFlux(disk_flux * (1.0 - kf))
        if self.knots:
            parts.append(
                galsim.RandomKnots(
                    self.knots,
                    half_light_radius=vals["disk_hlr"],
                    flux=disk_flux * kf,
                    rng=galsim.BaseDeviate(rng_seed),
                )
            )
        return galsim.Add(parts).shear(g1=vals["g1"], g2=vals["g2"])


PRESETS = {
    "paper": PaperPreset,
    "sersic": SersicPreset,
    "bulge-disk": BulgeDiskPreset,
    "bulge-disk-knots": lambda **kw: BulgeDiskPreset(knots=kw.pop("knots", 50), **kw),
}
