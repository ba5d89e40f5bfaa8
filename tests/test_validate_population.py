"""Population check (mean |g| and size vs the truth's standard error) against numpy."""

import numpy as np
import pytest

from jaxsky.validate.population import mean_with_error, population_check


def _sample(n=60, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.0, 0.5, n)
    phi = rng.uniform(0, np.pi, n)
    return {
        "sigma": rng.lognormal(np.log(2.0), 0.3, n),
        "g1": g * np.cos(2 * phi),
        "g2": g * np.sin(2 * phi),
    }


def test_means_errors_and_verdicts_match_numpy():
    t = _sample()
    # size 0.1% high (well inside one SE of a 30%-scatter population); |g| 20% low (outside)
    p = {"sigma": t["sigma"] * 1.001, "g1": 0.8 * t["g1"], "g2": 0.8 * t["g2"]}
    res = population_check(t, p)
    assert res["n_used"] == 60 and res["n_failed"] == 0
    for q, tv, pv in (
        ("sigma", t["sigma"], p["sigma"]),
        ("abs_g", np.hypot(t["g1"], t["g2"]), np.hypot(p["g1"], p["g2"])),
    ):
        se = tv.std(ddof=1) / np.sqrt(tv.size)
        r = res[q]
        assert r["truth_mean"] == pytest.approx(tv.mean(), rel=1e-12)
        assert r["truth_se"] == pytest.approx(se, rel=1e-12)
        assert r["pred_mean"] == pytest.approx(pv.mean(), rel=1e-12)
        assert r["diff_in_se"] == pytest.approx((pv.mean() - tv.mean()) / se, rel=1e-10)
        assert r["paired_se"] == pytest.approx((pv - tv).std(ddof=1) / np.sqrt(tv.size))
        assert r["within_1se"] == bool(abs(pv.mean() - tv.mean()) <= se)
    assert res["sigma"]["within_1se"] and not res["abs_g"]["within_1se"]
    assert res["abs_g"]["rel_diff"] == pytest.approx(-0.2, abs=1e-12)


def test_failures_are_dropped_from_both_sets_and_counted():
    t = _sample(20, seed=1)
    p = {k: v.copy() for k, v in t.items()}
    t["sigma"][3] = np.nan
    p["g1"][5] = np.nan
    res = population_check(t, p)
    assert res["n_used"] == 18 and res["n_failed"] == 2
    keep = np.setdiff1d(np.arange(20), [3, 5])
    assert res["sigma"]["truth_mean"] == pytest.approx(t["sigma"][keep].mean())
    assert res["sigma"]["diff"] == 0.0 and res["abs_g"]["within_1se"]


def test_bad_input():
    t = _sample(5)
    with pytest.raises(ValueError, match="sigma"):
        population_check({"g1": t["g1"], "g2": t["g2"]}, t)
    with pytest.raises(ValueError, match="same N"):
        population_check(t, _sample(6))
    with pytest.raises(ValueError, match="N=0"):
        population_check(*[{k: np.zeros(0) for k in t}] * 2)
    assert mean_with_error([np.nan])[2] == 0
