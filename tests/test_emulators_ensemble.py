"""Ensembles: inverse-MSE weights, weighted mean, calibrated spread, save/load."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsky.emulators as em
from jaxsky.data import simulate
from jaxsky.emulators import ensemble, pcagp

SMALL = {"n_components": 8, "hyper_steps": 40, "n_hyper": 64, "groups": [3]}
CONFIG = {
    "members": [
        {"family": "pcagp", "config": SMALL},
        {"family": "pcagp", "config": {**SMALL, "kernel": "rbf"}},
        {"family": "pcagp", "config": {**SMALL, "normalize": "flux"}},
    ],
    "subsample": 0.8,
}


@pytest.fixture(scope="module")
def data():
    # 40% validation so that weights and calibration see enough images
    # the real paper preset (GalSim reference renders); hold-out from an independent stream
    train = simulate("paper", 160, seed=0, backend="galsim")
    return train, simulate("paper", 32, seed=0, stream=1, backend="galsim")


@pytest.fixture(scope="module")
def emu(data):
    import dataclasses

    from jaxsky.data import assign_splits

    train = dataclasses.replace(data[0], split_of=assign_splits(160, (0.6, 0.4, 0.0), seed=1))
    return em.fit("ensemble", train, CONFIG, key=jax.random.key(0)), train


def _coverage(pred, var, truth, footprint=0.01):
    fp = truth > footprint * truth.max(axis=(1, 2), keepdims=True)
    return float(np.mean((np.abs(pred - truth) <= np.sqrt(var))[fp]))


def test_weights_mean_and_calibration(emu, data):
    model, train = emu
    st = model.state
    val = train.split("val")
    with jax.enable_x64(True):
        theta = jnp.asarray(val.params)
        members = [
            np.asarray(jax.vmap(lambda t, s=s: pcagp.predict(s, t))(theta)) for s in st.members
        ]
    mse = np.array([np.mean((m - val.images) ** 2) for m in members])
    np.testing.assert_allclose(st.weights, (1 / mse) / np.sum(1 / mse), rtol=1e-6)
    mean = np.tensordot(np.asarray(st.weights), np.stack(members), axes=1)
    np.testing.assert_allclose(model.predict(val.params), mean, rtol=1e-10, atol=1e-8)
    # calibrated on val: 68.27% of footprint pixels within one sigma there by construction
    cov_val = _coverage(mean, np.asarray(model.variance(val.params)), val.images)
    assert cov_val == pytest.approx(0.6827, abs=0.01)
    # held out (independent seed): the same interval covers roughly 68% (loose band for a
    # 3-member, 96-image ensemble; the benchmark measures the 2,048-image one)
    hold = data[1]
    cov = _coverage(
        np.asarray(model.predict(hold.params)), np.asarray(model.variance(hold.params)), hold.images
    )
    assert 0.45 < cov < 0.9, cov


def test_round_trip_and_bad_config(emu, data, tmp_path):
    model, train = emu
    back = em.load(model.save(tmp_path / "ens"))
    theta = data[1].params[:3]
    np.testing.assert_array_equal(back.predict(theta), model.predict(theta))
    np.testing.assert_array_equal(back.variance(theta), model.variance(theta))
    with pytest.raises(ValueError, match="unknown pcagp config keys"):
        em.fit(
            "ensemble",
            train,
            {"members": [{"family": "pcagp", "config": {"bogus": 1}}]},
            key=jax.random.key(0),
        )
    with pytest.raises(ValueError, match="cannot contain an ensemble"):
        ensemble._member_configs({"members": [{"family": "ensemble"}]})
