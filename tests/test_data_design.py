"""Designs: Latin/Sobol properties, seeds and streams, log ranges, the shear disc, bad ranges."""

import numpy as np
import pytest
from scipy.stats import qmc

from jaxsky.data.design import (
    Param,
    disc_from_unit,
    index_seeds,
    scale_to_ranges,
    unit_design,
)


@pytest.mark.parametrize("n", [7, 64])
def test_lhs_is_latin_and_seeded(n):
    u = unit_design(n, 4, seed=3)
    assert u.shape == (n, 4)
    # Latin property: every column has exactly one point in each of the n strata.
    for j in range(4):
        assert sorted(np.floor(u[:, j] * n).astype(int)) == list(range(n))
    np.testing.assert_array_equal(u, unit_design(n, 4, seed=3))
    assert not np.array_equal(u, unit_design(n, 4, seed=4))


def test_lhs_optimised_beats_plain():
    n, d = 64, 5
    opt = unit_design(n, d, seed=0)
    plain = [qmc.LatinHypercube(d=d, rng=s).random(n) for s in range(5)]
    # random-cd lowers the centred L2 discrepancy (scipy's measure) below typical plain LHS.
    assert qmc.discrepancy(opt) < np.median([qmc.discrepancy(p) for p in plain])


def test_holdout_stream_is_independent():
    a = unit_design(32, 3, seed=1, stream=0)
    b = unit_design(32, 3, seed=1, stream=1)
    assert not np.isin(a, b).any()


def test_sobol_balanced():
    u = unit_design(64, 3, seed=2, kind="sobol")
    # A scrambled Sobol set of 2^m points has exactly 2^(m-1) points in each half of each axis.
    assert np.all((u < 0.5).sum(axis=0) == 32)


def test_log_and_linear_scaling():
    ps = (Param("a", 1e2, 1e4, log=True), Param("b", -1.0, 3.0))
    u = np.array([[0.0, 0.0], [0.5, 0.25], [1.0, 1.0]])
    x = scale_to_ranges(u, ps)
    np.testing.assert_allclose(x[:, 0], [1e2, 1e3, 1e4], rtol=1e-12)
    np.testing.assert_allclose(x[:, 1], [-1.0, 0.0, 3.0])
    np.testing.assert_allclose(ps[0].to_unit(x[:, 0]), u[:, 0], atol=1e-12)


def test_disc_map_is_area_preserving():
    u = unit_design(4096, 2, seed=5, optimise=False)
    g1, g2 = disc_from_unit(u[:, 0], u[:, 1], 0.6)
    r = np.hypot(g1, g2)
    assert r.max() < 0.6
    # Uniform in the disc: P(|g| < r) = (r / g_max)^2; Latin strata make it nearly exact.
    for frac in (0.25, 0.5, 0.75):
        assert abs(np.mean(r < 0.6 * np.sqrt(frac)) - frac) < 2 / 4096 + 1e-12
    # and uniform in angle: each quadrant holds a quarter of the points.
    quad = (g1 > 0).astype(int) * 2 + (g2 > 0)
    assert np.all(np.abs(np.bincount(quad) - 1024) < 40)


def test_index_seeds_depend_only_on_seed_and_index():
    a = index_seeds(7, np.arange(10), 0)
    np.testing.assert_array_equal(a[3:6], index_seeds(7, [3, 4, 5], 0))
    assert len(set(a)) == 10 and np.all(a >= 0)
    assert not np.any(a == index_seeds(7, np.arange(10), 1))
    assert not np.any(a == index_seeds(8, np.arange(10), 0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"low": 1.0, "high": 1.0}, "empty"),
        ({"low": 2.0, "high": 1.0}, "inverted"),
        ({"low": 0.0, "high": 1.0, "log": True}, "low=0.0 <= 0"),
        ({"low": 0.0, "high": float("inf")}, "finite"),
    ],
)
def test_bad_ranges(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Param("flux", **kwargs)


def test_bad_design_args():
    with pytest.raises(ValueError, match="n=0"):
        unit_design(0, 2, seed=0)
    with pytest.raises(ValueError, match="kind"):
        unit_design(4, 2, seed=0, kind="grid")
    with pytest.raises(ValueError, match="g_max"):
        disc_from_unit(np.zeros(2), np.zeros(2), 1.0)
