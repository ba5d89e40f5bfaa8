"""PCA + GP emulator: against a numpy GP, held-out accuracy, variance, gradients, checkpoints.

Data: the real ``paper`` preset rendered with GalSim (the reference, and at 160 images faster
than compiling the jaxsky renderer), hold-out from an independent design stream.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxsky.emulators as em
from jaxsky.data import simulate
from jaxsky.emulators import _pca_features, pcagp
from jaxsky.errors import CheckpointError

SMALL = {"n_components": 10, "hyper_steps": 60, "n_hyper": 96, "groups": [1, 3]}


@pytest.fixture(scope="module")
def data():
    train = simulate("paper", 160, seed=0, backend="galsim")
    return train, simulate("paper", 32, seed=0, stream=1, backend="galsim")


def _ranges(ds):
    names = ds.param_names
    ranges = ds.ranges if hasattr(ds, "ranges") else ds.info["ranges"]
    lo = np.array([ranges[k][0] for k in names])
    hi = np.array([ranges[k][1] for k in names])
    return lo, hi


@pytest.fixture(scope="module")
def emu(data):
    return em.fit("pcagp", data[0], SMALL, key=jax.random.key(0))


def _matern52(x1, x2, amp, ls):
    """Matern-5/2 ARD kernel written from Rasmussen & Williams (2006) Eq. 4.17."""
    r = np.sqrt((((x1[:, None, :] - x2[None, :, :]) / ls) ** 2).sum(-1))
    return amp * (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)


def test_matches_numpy_pca_and_gp(emu, data):
    st = emu.state
    train = data[0]
    mask = train.split_of != 2
    theta = train.params[mask]
    # reference: numpy SVD on the same representation spans the same subspace
    rep, logp = pcagp.representation(train.images[mask], theta, 0, "peak")
    y = rep.reshape(len(rep), -1)
    _, _, vt = np.linalg.svd(y - y.mean(0), full_matrices=False)
    basis = np.asarray(st.basis).reshape(10, -1)
    np.testing.assert_allclose(basis.T @ basis, vt[:10].T @ vt[:10], atol=1e-8)
    # reference GP mean of the log-peak output, written with numpy from the fitted kernel
    x = np.asarray(st.X)
    g = int(st.group_of[-1])
    assert g == int(st.group_of.max()) and np.sum(np.asarray(st.group_of) == g) == 1  # own kernel
    amp, ls = np.exp(float(st.log_amp[g])), np.exp(np.asarray(st.log_ls[g]))
    z = (logp - logp.mean()) / logp.std()
    kxx = _matern52(x, x, amp, ls) + np.exp(float(st.log_noise[g])) * np.eye(len(x))
    test = data[1].params[:5]
    with jax.enable_x64(True):
        xs = np.asarray(pcagp._features(st, jnp.asarray(test)))
    ref = _matern52(xs, x, amp, ls) @ np.linalg.solve(kxx, z) * logp.std() + logp.mean()
    with jax.enable_x64(True):
        got = jax.vmap(lambda t: pcagp._outputs(st, t)[0][-1])(jnp.asarray(test))
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9)


def test_heldout_accuracy_and_flux(emu, data):
    hold = data[1]
    pred = np.asarray(emu.predict(hold.params))
    truth = np.asarray(hold.images, np.float64)
    assert pred.shape == truth.shape
    err = np.abs(pred - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2))
    # reference: nearest training neighbour (unit-box distance), rescaled by flux; the GP
    # must interpolate clearly better (the benchmark measures the 2,048-image targets)
    train = data[0]
    lo, hi = _ranges(train)
    wd = hi - lo
    d = ((hold.params[:, None, 1:] - train.params[None, :, 1:]) / wd[1:]) ** 2
    nn = d.sum(-1).argmin(1)
    base = train.images[nn] * (hold.params[:, 0] / train.params[nn, 0])[:, None, None]
    err_nn = np.abs(base - truth).max(axis=(1, 2)) / truth.max(axis=(1, 2))
    assert np.median(err) < 0.5 * np.median(err_nn), (np.median(err), np.median(err_nn))
    assert np.median(err) < 0.06, np.median(err)
    flux_bias = pred.sum(axis=(1, 2)) / truth.sum(axis=(1, 2)) - 1
    assert abs(np.median(flux_bias)) < 2e-2
    # flux is applied analytically: doubling it doubles the image exactly
    t2 = hold.params[:3].copy()
    t1 = t2.copy()
    t1[:, 0] = 2e4
    t2[:, 0] = 4e4
    np.testing.assert_allclose(emu.predict(t2), 2 * np.asarray(emu.predict(t1)), rtol=1e-12)


def test_variance_small_at_training_points_and_calibrated_scale(emu, data):
    train, hold = data
    tr = train.split("train")
    var_tr = np.asarray(emu.variance(tr.params[:8]))
    var_ho = np.asarray(emu.variance(hold.params))
    assert np.all(var_ho >= 0) and np.all(np.isfinite(var_ho))
    # relative to the image peak, the GP variance is smaller at training inputs
    peak_tr = np.asarray(emu.predict(tr.params[:8])).max(axis=(1, 2))
    peak_ho = np.asarray(emu.predict(hold.params)).max(axis=(1, 2))
    rel_tr = np.sqrt(var_tr.max(axis=(1, 2))) / peak_tr
    rel_ho = np.sqrt(var_ho.max(axis=(1, 2))) / peak_ho
    assert np.median(rel_tr) < np.median(rel_ho), (np.median(rel_tr), np.median(rel_ho))
    # the held-out errors are of the order of the predicted standard deviation
    resid = np.asarray(emu.predict(hold.params)) - hold.images
    ratio = np.sqrt(np.mean(resid**2) / np.mean(var_ho))
    assert 0.1 < ratio < 10, ratio


def test_predict_grads_and_domain_edges(emu, x64):
    assert emu.state.moments is not None  # "auto" picked the moment features on paper
    f = emu.predict_fn()
    theta = jnp.array([3e4, 0.4, 0.1, -0.2, 0.3])
    check_grads(f, (theta,), order=1, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)
    lo, hi = _ranges(emu)
    for corner in (lo, hi, np.array([1e4, 0.1, 0.0, 0.0, 0.2])):  # corners and g = 0
        img, jac = f(jnp.asarray(corner)), jax.jacfwd(f)(jnp.asarray(corner))
        assert np.all(np.isfinite(img)) and np.all(np.isfinite(jac))
        assert np.all(np.isfinite(pcagp.predict_var(emu.state, jnp.asarray(corner))))


def test_save_load_round_trip_and_refusals(emu, data, tmp_path):
    path = emu.save(tmp_path / "m")
    with pytest.raises(FileExistsError):
        emu.save(path)
    back = em.load(path)
    theta = data[1].params[:4]
    np.testing.assert_array_equal(back.predict(theta), emu.predict(theta))
    np.testing.assert_array_equal(back.variance(theta), emu.variance(theta))
    assert back.info["versions"]["jaxsky"] and back.config["n_components"] == 10
    # incompatible: the configuration says there is no peak output
    doc = json.loads((path / "emulator.json").read_text())
    doc["config"]["normalize"] = "flux"
    (path / "emulator.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="does not match a pcagp emulator"):
        em.load(path)
    # corrupted: truncated state
    emu.save(path, overwrite=True)
    blob = (path / "state.msgpack").read_bytes()
    (path / "state.msgpack").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError):
        em.load(path)


def test_config_errors(data):
    with pytest.raises(ValueError, match="unknown pcagp config keys"):
        em.fit("pcagp", data[0], {"n_comp": 3}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="kernel='cubic'"):
        em.fit("pcagp", data[0], {"kernel": "cubic"}, key=jax.random.key(0))


def test_marginal_likelihood_matches_tinygp(x64):
    import tinygp

    rng = np.random.default_rng(3)
    x, z = rng.uniform(size=(30, 3)), rng.normal(size=(30, 2))
    q = {"a": jnp.asarray(0.3), "l": jnp.log(jnp.array([0.2, 0.5, 1.0])), "n": jnp.log(1e-3)}
    for kind, base in (
        ("matern52", tinygp.kernels.Matern52(distance=tinygp.kernels.distance.L2Distance())),
        ("rbf", tinygp.kernels.ExpSquared()),
    ):
        kern = np.exp(0.3) * tinygp.transforms.Linear(jnp.exp(-q["l"]), base)
        gp = tinygp.GaussianProcess(kern, jnp.asarray(x), diag=1e-3)
        ref = -np.mean([gp.log_probability(jnp.asarray(z[:, j])) for j in range(2)]) / 30
        got = pcagp._nll(q, jnp.asarray(x), jnp.asarray(z), kind, -50.0)
        np.testing.assert_allclose(got, ref, rtol=1e-10)


def _moments_reference(theta):
    """Moment features from an explicit matrix product and eigen-decomposition (numpy)."""
    out = []
    for _, r, g1, g2, fwhm in theta:
        a = np.array([[1 + g1, g2], [g2, 1 - g1]]) / np.sqrt(1 - g1**2 - g2**2)
        s_psf = (fwhm / (2 * np.sqrt(2 * np.log(2)))) ** 2
        cov = 3 * r**2 * a @ a.T + s_psf * np.eye(2)  # Exponential: <x^2> = 3 r^2 per axis
        lam, vec = np.linalg.eigh(cov)
        eta = 0.5 * np.log(lam[1] / lam[0])  # atanh((l1 - l2) / (l1 + l2))
        phi = np.arctan2(vec[1, 1], vec[0, 1])  # major-axis angle
        size = 0.25 * np.log(lam[0] * lam[1])
        out.append([size, eta * np.cos(2 * phi), eta * np.sin(2 * phi), 0.5 * np.log(s_psf)])
    return np.array(out)


def test_moment_features_match_eigen_reference_and_grads(x64):
    cols = _pca_features.moment_columns(("flux", "scale_radius", "g1", "g2", "psf_fwhm"))
    rng = np.random.default_rng(5)
    theta = np.column_stack(
        [
            rng.uniform(1e4, 1e5, 20),
            rng.uniform(0.1, 1.0, 20),
            rng.uniform(-0.5, 0.5, (20, 2)),
            rng.uniform(0.2, 0.4, 20),
        ]
    )
    got = np.asarray(_pca_features.moment_features(jnp.asarray(theta), cols))
    np.testing.assert_allclose(got, _moments_reference(theta), rtol=1e-9, atol=1e-10)
    f = lambda t: _pca_features.moment_features(t, cols)  # noqa: E731
    for t in (theta[0], np.array([2e4, 0.3, 0.0, 0.0, 0.3]), np.array([2e4, 1.0, 0.5, 0.5, 0.2])):
        check_grads(f, (jnp.asarray(t),), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
        assert np.all(np.isfinite(jax.jacrev(f)(jnp.asarray(t))))
    assert _pca_features.moment_columns(("flux", "sersic_n", "psf_fwhm")) is None


def test_unit_features_and_shared_peak_round_trip(data, tmp_path):
    cfg = {**SMALL, "features": "unit", "peak_group": "first", "groups": [3]}
    old = em.fit("pcagp", data[0], cfg, key=jax.random.key(1))
    assert old.state.moments is None and int(old.state.group_of[-1]) == 0
    path = old.save(tmp_path / "old")
    # a checkpoint written before the features / peak_group keys existed still loads
    doc = json.loads((path / "emulator.json").read_text())
    for k in ("features", "peak_group"):
        del doc["config"][k]
    (path / "emulator.json").write_text(json.dumps(doc))
    back = em.load(path)
    theta = data[1].params[:4]
    np.testing.assert_array_equal(back.predict(theta), old.predict(theta))
    with pytest.raises(ValueError, match="features='moments' needs a size"):
        em.fit("pcagp", _no_psf(data[0]), {**SMALL, "features": "moments"}, key=jax.random.key(0))


def _no_psf(ds):
    import dataclasses

    names = tuple("seeing" if k == "psf_fwhm" else k for k in ds.param_names)
    ranges = {("seeing" if k == "psf_fwhm" else k): v for k, v in ds.ranges.items()}
    return dataclasses.replace(ds, param_names=names, ranges=ranges)
