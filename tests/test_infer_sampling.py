"""NUTS adapters (optional numpyro) and the numpyro example's smoke test."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxsky.infer import ParameterSpace, identity, positive
from jaxsky.infer.sampling import require_numpyro

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nuts_numpyro.py"


def test_missing_numpyro_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpyro", None)
    with pytest.raises(ImportError, match=r"jaxsky\[sampling\]"):
        require_numpyro()


def test_nuts_matches_analytic_posterior(x64):
    """Gamma(5, 1) on a positive() parameter and N(1, 0.5) on an identity one: the
    log-Jacobian must be included for the draws to follow the physical density."""
    pytest.importorskip("numpyro")
    from jaxsky.infer.sampling import nuts

    space = ParameterSpace([("a", positive()), ("b", identity())])

    def log_density(x):
        return 4.0 * jnp.log(x[0]) - x[0] - 0.5 * ((x[1] - 1.0) / 0.5) ** 2

    out = nuts(
        log_density, space, jnp.array([3.0, 0.0]), key=jax.random.key(0),
        num_warmup=300, num_samples=1500,
    )  # fmt: skip
    a, b = np.asarray(out["a"]), np.asarray(out["b"])
    assert not np.any(out["diverging"])
    # KS against the exact marginals (draws are autocorrelated: loose threshold)
    assert stats.kstest(a, stats.gamma(5.0).cdf).statistic < 0.08
    assert stats.kstest(b, stats.norm(1.0, 0.5).cdf).statistic < 0.08


def test_nuts_numpyro_example_smoke():
    pytest.importorskip("numpyro")
    spec = importlib.util.spec_from_file_location("nuts_numpyro_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    samples = mod.main(["--warmup", "15", "--samples", "15", "--max-tree-depth", "3"])
    assert set(samples) >= set(mod.PARAMS)
    for k in mod.PARAMS:
        assert samples[k].shape == (15,) and np.all(np.isfinite(samples[k]))
    # even a short chain sits near the truth in flux (SNR 60: ~2% error)
    assert abs(np.mean(samples["flux"]) / mod.TRUTH["flux"] - 1) < 0.2
