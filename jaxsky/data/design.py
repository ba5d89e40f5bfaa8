"""Space-filling designs over declared parameter ranges (Latin hypercube, Sobol).

A design lives in the unit cube ``[0, 1)^d`` and is mapped to physical values per parameter,
linearly or logarithmically (:class:`Param`). Latin hypercubes come from
``scipy.stats.qmc.LatinHypercube`` with the ``random-cd`` optimisation (it lowers the centred
L2 discrepancy while keeping the Latin property; Fang et al. 2002), Sobol sequences from
``scipy.stats.qmc.Sobol`` with Owen scrambling.

Constraints such as ``|g| < g_max`` are handled by *reparametrising*, not by rejection:
rejection would break the Latin (one point per stratum) property. :func:`disc_from_unit`
maps two unit-cube columns onto the disc of radius ``g_max`` with an area-preserving map,
``|g| = g_max sqrt(u)``, ``phi = 2 pi v``, so uniform points in the square become uniform points
in the disc and strata of equal area stay of equal area.

Hold-out sets are drawn from an independent seed stream: the generator of stream ``s`` is
seeded by ``numpy.random.SeedSequence([seed, s])``, so a test set (stream 1) shares no points
with the training design (stream 0) made from the same user seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

__all__ = [
    "Param",
    "KINDS",
    "unit_design",
    "scale_to_ranges",
    "disc_from_unit",
    "stream_rng",
    "index_seeds",
    "index_uniforms",
    "PURPOSES",
    "OPTIMISE_MAX_N",
]

KINDS = ("lhs", "sobol", "random")
# random-cd costs O(n) per sweep and many sweeps; beyond this size a plain (scrambled) Latin
# hypercube is already nearly uniform and the optimisation is skipped (stored in the config).
OPTIMISE_MAX_N = 1024


@dataclasses.dataclass(frozen=True)
class Param:
    """One design dimension.

    Attributes:
        name: parameter name, e.g. ``"flux"``.
        low, high: declared domain (``low < high``), physical units.
        log: sample uniformly in ``log(value)`` (requires ``low > 0``).
        unit: unit string stored with the data ("ADU", "arcsec", "").
        doc: one-line description.
        bounds: (min, max) physically allowed values (e.g. Sersic n in GalSim's range);
            ``low``/``high`` must lie inside. None: any finite values.
    """

    name: str
    low: float
    high: float
    log: bool = False
    unit: str = ""
    doc: str = ""
    bounds: tuple[float, float] | None = None

    def __post_init__(self):
        lo, hi = float(self.low), float(self.high)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"range of {self.name!r} must be finite, got ({lo}, {hi})")
        if not lo < hi:
            kind = "empty" if lo == hi else "inverted"
            raise ValueError(f"range of {self.name!r} is {kind}: ({lo}, {hi}); need low < high")
        if self.log and lo <= 0:
            raise ValueError(
                f"range of {self.name!r} is log-spaced but low={lo} <= 0; need low > 0"
            )
        if self.bounds is not None and not (self.bounds[0] <= lo and hi <= self.bounds[1]):
            raise ValueError(
                f"range of {self.name!r} is ({lo}, {hi}); allowed values lie in "
                f"[{self.bounds[0]}, {self.bounds[1]}]"
            )

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map unit-interval values float[N] to physical values float[N]."""
        u = np.asarray(u, dtype=np.float64)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return np.clip(np.exp(lo + u * (hi - lo)), self.low, self.high)
        return self.low + u * (self.high - self.low)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`from_unit`."""
        x = np.asarray(x, dtype=np.float64)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (np.log(x) - lo) / (hi - lo)
        return (x - self.low) / (self.high - self.low)

    def config(self) -> dict:
        return {
            "name": self.name,
            "low": float(self.low),
            "high": float(self.high),
            "log": bool(self.log),
            "unit": self.unit,
        }


def stream_rng(seed: int, stream: int = 0) -> np.random.Generator:
    """Independent generator for (``seed``, ``stream``); stream 0 trains, 1 holds out."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


# The one per-image seeding scheme of jaxsky.data (analytic and catalogue presets, the store):
# ``purpose`` separates the independent uses of image i's randomness.
PURPOSES = {"render": 0, "noise": 1, "psf_fwhm": 2, "rotation": 3}


def index_seeds(seed: int, idx: np.ndarray, purpose: int) -> np.ndarray:
    """Seed int64[len(idx)] of image ``idx`` for one ``purpose`` (see :data:`PURPOSES`).

    Depends only on (seed, index, purpose), never on N or sharding, so image ``i`` is the
    same whatever run produced it.
    """
    idx = np.asarray(idx, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix64(_base_seed(int(seed), int(purpose)) ^ _splitmix64(idx + np.uint64(1)))
    return (z >> np.uint64(1)).astype(np.int64)  # non-negative int63


def index_uniforms(seed: int, idx: np.ndarray, purpose: int) -> np.ndarray:
    """Uniform float64[len(idx)] in [0, 1) of image ``idx`` for ``purpose``: the top 53 bits of
    :func:`index_seeds` (so, like the seeds, independent of N and of sharding)."""
    s = index_seeds(seed, idx, purpose).astype(np.uint64)
    return (s >> np.uint64(10)).astype(np.float64) * 2.0**-53


@functools.lru_cache(maxsize=64)
def _base_seed(seed: int, purpose: int) -> np.uint64:
    return np.random.SeedSequence([seed, 7919, purpose]).generate_state(1, np.uint64)[0]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit hash."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def unit_design(
    n: int, d: int, *, seed: int, kind: str = "lhs", stream: int = 0, optimise: bool = True
) -> np.ndarray:
    """Points float64[n, d] in the unit cube.

    Args:
        n: number of points (> 0).
        d: dimension (> 0).
        seed: user seed; with ``stream`` it fixes the points exactly.
        kind: ``"lhs"`` (optimised Latin hypercube), ``"sobol"`` (scrambled Sobol) or
            ``"random"`` (i.i.d. uniform).
        stream: 0 for the training design, 1, 2... for independent hold-out designs.
        optimise: use ``random-cd`` for Latin hypercubes of ``n <= OPTIMISE_MAX_N``.
    """
    if int(n) != n or n <= 0:
        raise ValueError(f"n={n} must be a positive integer")
    if int(d) != d or d <= 0:
        raise ValueError(f"d={d} must be a positive integer")
    if kind not in KINDS:
        raise ValueError(f"design kind={kind!r} is not one of {KINDS}")
    # Imported here: scipy.stats costs ~1 s, and generation workers never lay out designs.
    from scipy.stats import qmc

    rng = stream_rng(seed, stream)
    if kind == "lhs":
        opt = "random-cd" if (optimise and d > 1 and n <= OPTIMISE_MAX_N) else None
        return _qmc(qmc.LatinHypercube, rng, d=d, optimization=opt).random(int(n))
    if kind == "sobol":
        # Sobol balance holds for powers of two; other n are a prefix, still low-discrepancy.
        sampler = _qmc(qmc.Sobol, rng, d=d, scramble=True)
        m = max(0, math.ceil(math.log2(n)))
        return sampler.random_base2(m)[: int(n)]
    return rng.random((int(n), d))


def _qmc(cls, rng, **kwargs):
    """scipy >= 1.15 spells the generator ``rng=``, older versions ``seed=``."""
    try:
        return cls(rng=rng, **kwargs)
    except TypeError:
        return cls(seed=rng, **kwargs)


def scale_to_ranges(u: np.ndarray, params: tuple[Param, ...]) -> np.ndarray:
    """Map unit points float[N, P] to physical values float64[N, P] column by column."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != len(params):
        raise ValueError(f"unit design shape {u.shape} does not match {len(params)} params")
    return np.stack([p.from_unit(u[:, j]) for j, p in enumerate(params)], axis=1)


def disc_from_unit(u: np.ndarray, v: np.ndarray, g_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Area-preserving map of the unit square onto the disc ``|g| < g_max``.

    ``|g| = g_max sqrt(u)``, ``phi = 2 pi v``; returns (g1, g2) = |g| (cos phi, sin phi).
    Uniform (u, v) give uniform points in the disc (the Jacobian is constant).
    """
    if not 0 < g_max < 1:
        raise ValueError(f"g_max={g_max} must lie in (0, 1) (GalSim needs |g| < 1)")
    r = g_max * np.sqrt(np.asarray(u, dtype=np.float64))
    phi = 2.0 * np.pi * np.asarray(v, dtype=np.float64)
    return r * np.cos(phi), r * np.sin(phi)
