"""evaluate/compare reports: contents, known biases, atomicity and bad input."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsky.cli import main
from jaxsky.data import simulate
from jaxsky.errors import DataError
from jaxsky.render import Convolve, Exponential, Gaussian, draw_batch
from jaxsky.validate.report import compare, evaluate, learning_curve, measure


@pytest.fixture(scope="module")
def data():
    return simulate("paper", 40, seed=3, backend="jaxsky")


def renderer_model(data, *, flux=1.0, size=1.0, name="renderer", **info):
    """The jaxsky renderer as a 'model' of the paper-like set, optionally biased."""

    def predict(theta):
        t = jnp.asarray(np.asarray(theta))
        gal = Exponential(flux=t[:, 0] * flux, scale_radius=t[:, 1] * size)
        gal = gal.shear(g1=t[:, 2], g2=t[:, 3])
        return draw_batch(Convolve(gal, Gaussian(fwhm=t[:, 4])), nx=33, ny=33, scale=0.2)

    predict.name = name
    predict.info = {
        "shape": list(data.shape),
        "scale": data.scale,
        "param_names": list(data.param_names),
        **info,
    }
    return predict


def test_report_contents_and_known_biases(data, tmp_path):
    res = evaluate(renderer_model(data), data, tmp_path / "exact")
    doc = json.loads((tmp_path / "exact" / "report.json").read_text())
    assert doc["model"]["name"] == "renderer" and doc["data"]["split"] == "test"
    assert doc["data"]["n_evaluated"] == int((data.split_of == 2).sum())
    assert doc["summary"]["max_res_over_peak"]["max_abs"] < 1e-4
    assert doc["summary"]["r2"]["median"] > 1 - 1e-8
    for k in ("sigma", "e1", "e2", "flux", "hsm_shear1"):
        assert k in doc["wasserstein"]
    assert set(doc["binned"]) == set(data.param_names)
    # HSM collapses on this set's under-sampled PSFs (FWHM 0.2-0.4" at 0.2"/pixel): every
    # failure is counted with its message, identically for truth and the exact model
    ft, fp = doc["failures"]["hsm_truth"], doc["failures"]["hsm_pred"]
    assert ft["n"] == doc["data"]["n_evaluated"] and ft["failed_index"] == fp["failed_index"]
    assert sum(ft["messages"].values()) == ft["n_failed"]
    assert "hsm_truth" in (tmp_path / "exact" / "report.md").read_text()
    for f in ("gallery.png", "residual_vs_params.png", "metric_histograms.png", "spectra.png"):
        assert (tmp_path / "exact" / f).stat().st_size > 1000
    assert "| max_res_over_peak |" in (tmp_path / "exact" / "report.md").read_text()
    assert res["summary"]["mse"]["max_abs"] < 1e-6 * np.max(data.images) ** 2
    pop = doc["population"]
    assert pop["n_used"] + pop["n_failed"] == doc["data"]["n_evaluated"]
    for q in ("abs_g", "sigma"):  # the exact model reproduces the truth's means
        assert abs(pop[q]["diff"]) < 1e-5 * pop[q]["truth_mean"] and pop[q]["within_1se"]
    assert (tmp_path / "exact" / "population.png").stat().st_size > 1000
    assert "| mean abs(g) |" in (tmp_path / "exact" / "report.md").read_text()

    # a 1% flux bias and a 3% size bias come out as such
    biased = evaluate(renderer_model(data, flux=1.01), data, tmp_path / "biased", hsm=False)
    assert biased["summary"]["rel_flux_err"]["median"] == pytest.approx(0.01, abs=1e-5)
    assert biased["summary"]["dsigma_over_sigma"]["max_abs"] < 1e-5
    assert biased["wasserstein"]["flux"] > 0.005 * np.mean(data.param("flux"))
    big, _ = measure(renderer_model(data, size=1.03), data, hsm=False)
    assert 0.003 < big["summary"]["dsigma_over_sigma"]["median"] < 0.03  # PSF-diluted
    # the population check sees the same size bias, paired per galaxy
    rel = big["population"]["sigma"]["rel_diff"]
    assert 0.003 < rel < 0.03 and big["population"]["sigma"]["diff"] > 0

    with pytest.raises(FileExistsError):
        evaluate(renderer_model(data), data, tmp_path / "exact")
    evaluate(renderer_model(data), data, tmp_path / "exact", overwrite=True, hsm=False)


def test_compare_table(data, tmp_path):
    models = {"exact": renderer_model(data), "big": renderer_model(data, size=1.05)}
    table = compare(models, data, tmp_path / "cmp", hsm=False, morphology=True)
    assert [r["model"] for r in table] == ["exact", "big"]
    assert abs(table[1]["dsigma_over_sigma"]) > 10 * abs(table[0]["dsigma_over_sigma"])
    assert (tmp_path / "cmp" / "comparison.png").exists()
    assert (tmp_path / "cmp" / "big" / "report.json").exists()
    assert "| big |" in (tmp_path / "cmp" / "comparison.md").read_text()


@pytest.mark.parametrize(
    "info, match",
    [
        ({"shape": [32, 32]}, "stamps"),
        ({"scale": 0.1}, "pixel scale"),
        ({"param_names": ["a", "b", "c", "d", "e"]}, "parameters"),
    ],
)
def test_incompatible_model_leaves_nothing(data, tmp_path, info, match):
    with pytest.raises(ValueError, match=match):
        evaluate(renderer_model(data, **info), data, tmp_path / "r")
    assert not (tmp_path / "r").exists() and not list(tmp_path.iterdir())


def test_nan_model_and_bad_data(data, tmp_path):
    nan_model = renderer_model(data)

    def bad(theta):
        out = np.asarray(nan_model(theta)).copy()
        out[0, 3, 3] = np.nan
        return out

    with pytest.raises(ValueError, match="NaN"):
        evaluate(bad, data, tmp_path / "r")
    nan_data = dataclasses.replace(data, images=np.where(True, data.images, 0) * np.nan)
    with pytest.raises(DataError, match="NaN"):
        evaluate(renderer_model(data), nan_data, tmp_path / "r")
    with pytest.raises(DataError, match="empty"):
        evaluate(
            renderer_model(data), data.subset(np.flatnonzero(data.split_of == 0)), tmp_path / "r"
        )
    assert not list(tmp_path.iterdir())


def test_cli_bad_paths_one_line_error(tmp_path, capsys):
    rc = main(
        ["evaluate", str(tmp_path / "nope"), str(tmp_path / "d.h5"), "--out", str(tmp_path / "o")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxsky evaluate: error:") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_learning_curve_pcagp(data, tmp_path):
    from jaxsky.emulators import families

    if "pcagp" not in families():
        pytest.skip("the pcagp emulator family is not in this checkout")
    import jax

    cfg = {"n_components": 4, "min_noise": 1e-6, "hyper_steps": 10}
    rows = learning_curve("pcagp", data, [12, 30], key=jax.random.PRNGKey(0), configs=[cfg])
    assert [(r["n_train"], r["config"]["n_components"]) for r in rows] == [(12, 4), (30, 4)]
    assert all(np.isfinite(r["max_res_over_peak"]) and r["r2"] < 1 for r in rows)
    evaluate(renderer_model(data), data, tmp_path / "lc", hsm=False, learning=rows)
    assert (tmp_path / "lc" / "learning_curve.png").exists()
    doc = json.loads((tmp_path / "lc" / "report.json").read_text())
    assert len(doc["learning_curve"]) == 2
