"""The shared emulator machinery: training loop, normalisation, domain checks, checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxsky.emulators import Emulator, load
from jaxsky.emulators._normalize import flux_column, theta_norm, to_unit
from jaxsky.emulators._train import CHECKPOINT_NAME, train_loop
from jaxsky.errors import CheckpointError, OutOfDomainError

RANGES = {"flux": (1e4, 1e5), "g1": (-0.5, 0.5)}


def _quadratic():
    """Least squares a x = b with its closed-form solution (the reference)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 3))
    b = a @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=64)
    exact = np.linalg.lstsq(a, b, rcond=None)[0]

    def loss(p, batch, key):
        x, y = batch
        return jnp.mean((x @ p["w"] - y) ** 2)

    def batches(step, key):
        idx = np.random.default_rng(step).permutation(64)[:32]  # reproducible per step
        return a[idx], b[idx]

    return loss, batches, exact, (a, b)


def test_train_loop_reaches_least_squares_solution():
    loss, batches, exact, _ = _quadratic()
    res = train_loop(
        loss,
        {"w": jnp.zeros(3)},
        batches,
        optimizer=optax.adam(0.1),
        n_steps=300,
        key=jax.random.key(0),
        val_every=50,
    )
    np.testing.assert_allclose(res.params["w"], exact, atol=2e-2)
    assert res.steps == 300 and len(res.history["loss"]) == 6


def test_train_loop_early_stopping_keeps_best():
    loss, batches, _, _ = _quadratic()
    # validation loss = distance to a target the training drifts away from after a while
    target = jnp.array([0.5, -1.0, 0.25])
    res = train_loop(
        loss,
        {"w": jnp.zeros(3)},
        batches,
        optimizer=optax.sgd(0.05),
        n_steps=2000,
        key=jax.random.key(1),
        val_fn=lambda p: jnp.sum((p["w"] - target) ** 2),
        val_every=10,
        patience=5,
    )
    assert res.history["stopped_early"] and res.steps < 2000
    vals = np.array(res.history["val"])
    assert res.best_val == pytest.approx(vals.min())
    assert float(jnp.sum((res.params["w"] - target) ** 2)) == pytest.approx(vals.min())


def test_train_loop_resume_matches_uninterrupted(tmp_path):
    loss, batches, _, _ = _quadratic()
    kw = dict(optimizer=optax.adam(0.05), key=jax.random.key(2), val_every=10)
    full = train_loop(loss, {"w": jnp.zeros(3)}, batches, n_steps=60, **kw)
    train_loop(loss, {"w": jnp.zeros(3)}, batches, n_steps=30, checkpoint_dir=tmp_path, **kw)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed = train_loop(
        loss, {"w": jnp.zeros(3)}, batches, n_steps=60, checkpoint_dir=tmp_path, **kw
    )
    assert resumed.steps == 60 and resumed.history["step"] == full.history["step"]
    np.testing.assert_allclose(resumed.params["w"], full.params["w"], rtol=1e-6)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not msgpack")
    with pytest.raises(CheckpointError, match="cannot resume"):
        train_loop(loss, {"w": jnp.zeros(3)}, batches, n_steps=60, checkpoint_dir=tmp_path, **kw)


def test_train_loop_reports_divergence():
    def loss(p, batch, key):
        return jnp.sum(p["w"] ** 2)

    with pytest.raises(FloatingPointError, match="learning"):
        train_loop(
            loss,
            {"w": jnp.ones(2)},
            lambda s, k: None,
            optimizer=optax.sgd(1e30),
            n_steps=20,
            key=jax.random.key(0),
            val_every=5,
        )


def test_theta_norm_against_numpy(x64):
    norm = theta_norm(("flux", "g1"), RANGES)
    theta = np.array([[2e4, 0.1], [1e4, -0.5], [1e5, 0.5]])
    ref = np.stack(
        [(np.log(theta[:, 0]) - np.log(1e4)) / np.log(10.0), (theta[:, 1] + 0.5) / 1.0], 1
    )
    np.testing.assert_allclose(to_unit(norm, jnp.asarray(theta)), ref, rtol=1e-12)
    # gradient of the linear branch at 0 must be finite (double-where)
    g = jax.grad(lambda t: to_unit(norm, t).sum())(jnp.array([1e4, 0.0]))
    assert np.all(np.isfinite(g))
    check_grads(lambda t: to_unit(norm, t), (jnp.array([3e4, 0.2]),), order=1)
    with pytest.raises(ValueError, match="high > low"):
        theta_norm(("g1",), {"g1": (1.0, 1.0)})
    assert flux_column(("a", "flux"), "auto") == 1 and flux_column(("a",), "auto") == -1
    with pytest.raises(ValueError, match="flux_param='b'"):
        flux_column(("a",), "b")


def _domain_emulator():
    info = {"param_names": ["flux", "g1"], "ranges": {k: list(v) for k, v in RANGES.items()}}
    return Emulator(family="pcagp", state=None, config={}, info=info)


def test_out_of_domain_error_warn_ignore():
    emu = _domain_emulator()
    good = np.array([[2e4, 0.0], [1e5, 0.5]])
    assert emu.check_domain(good).all()
    bad = np.array([[2e4, 0.0], [2e4, 0.7]])
    with pytest.raises(
        OutOfDomainError, match=r"g1=0.7 is outside the allowed range \[-0.5, 0.5\]"
    ):
        emu.check_domain(bad)
    with pytest.warns(UserWarning, match="outside the training domain"):
        mask = emu.check_domain(bad, on_ood="warn")
    np.testing.assert_array_equal(mask, [True, False])
    np.testing.assert_array_equal(emu.check_domain(bad, on_ood="ignore"), [True, False])
    with pytest.raises(OutOfDomainError):
        emu.check_domain(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="columns"):
        emu.check_domain(np.zeros((1, 3)))
    with pytest.raises(OutOfDomainError):  # predict checks before computing anything
        emu.predict(bad)


def test_load_refuses_missing_corrupted_and_incompatible(tmp_path):
    with pytest.raises(CheckpointError, match="not a saved jaxsky emulator"):
        load(tmp_path / "nothing")
    d = tmp_path / "m"
    d.mkdir()
    (d / "emulator.json").write_text("{broken")
    (d / "state.msgpack").write_bytes(b"\x00")
    with pytest.raises(CheckpointError, match="corrupted"):
        load(d)
    (d / "emulator.json").write_text(json.dumps({"format": 999, "family": "pcagp"}))
    from flax import serialization

    (d / "state.msgpack").write_bytes(serialization.msgpack_serialize({"a": np.zeros(2)}))
    with pytest.raises(CheckpointError, match="format 999"):
        load(d)


def test_train_cli_end_to_end_and_errors(tmp_path, capsys):
    from jaxsky.cli import main

    data = tmp_path / "p.h5"
    assert main(["generate", "--preset", "paper", "--n", "40", "--out", str(data), "--quiet"]) == 0
    out = tmp_path / "m"
    small = ["n_components=4", "hyper_steps=10", "n_hyper=24", "groups=[2]"]
    args = ["train", "--model", "pcagp", "--data", str(data), "--out", str(out), "--quiet"]
    assert main([*args, "--config", *small]) == 0
    emu = load(out)
    from jaxsky.data import load as load_data

    ds = load_data(data)
    assert emu.predict(ds.params[:2]).shape == (2, *ds.shape)
    capsys.readouterr()
    assert main(args) == 2  # exists, no --overwrite
    assert main([*args, "--overwrite", "--config", "bogus=1"]) == 2
    assert main([*args[:4], str(tmp_path / "none.h5"), *args[5:], "--overwrite"]) == 2
    assert main([*args, "--overwrite", "--config", "novalue"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(e.startswith("jaxsky train: error:") for e in err)
    assert "exists" in err[0] and "bogus" in err[1] and "none.h5" in err[2]
