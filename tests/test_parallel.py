"""jaxsky.parallel: sharded results equal single-device results, and really are sharded.

The multi-device checks run in a subprocess with 4 host CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before jax is imported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _fresh import run_fresh
from jax.test_util import check_grads

from jaxsky.parallel import pad_batch, process_slice, sharded_map

FOUR_DEVICE_CHECK = textwrap.dedent(
    r"""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    import jaxsky
    from jaxsky.emulators import Emulator, EmulatorFamily, register_family
    from jaxsky.parallel import (batch_mesh, map_galaxies, replicate, shard_batch,
                                 sharded_draw, sharded_map, sharded_predict)

    out = {"n_devices": len(jax.local_devices())}
    one = batch_mesh(jax.local_devices()[:1])
    rng = np.random.default_rng(1)

    # 1. any f(theta) -> image, B = 10 (padded to 12 over 4 devices, then stripped).
    def f(t):
        x = jnp.linspace(-1.0, 1.0, 8)
        return t[0] * jnp.exp(-0.5 * (x[:, None] ** 2 + x[None, :] ** 2) / t[1] ** 2)
    th = np.column_stack([rng.uniform(1, 2, 10), rng.uniform(0.3, 1, 10)])
    xg = np.linspace(-1.0, 1.0, 8)
    r2 = xg[:, None] ** 2 + xg[None, :] ** 2
    ref = th[:, :1, None] * np.exp(-0.5 * r2 / th[:, 1:, None] ** 2)
    out["map_err"] = float(np.abs(np.asarray(sharded_map(f, th)) - ref).max())
    out["map_chunk_err"] = float(np.abs(sharded_map(f, th, chunk=3) - ref).max())
    full = sharded_map(f, th[:8])
    out["map_devices"] = len(full.sharding.device_set)
    out["map_shard_rows"] = sorted(s.data.shape[0] for s in full.addressable_shards)

    # 2. rendering with one plan: sharded over 4 devices == the same program on 1 device.
    b = 12
    gal = jaxsky.Exponential(scale_radius=rng.uniform(0.2, 0.8, b), flux=rng.uniform(1, 3, b))
    obj = jaxsky.Convolve(gal.shear(g1=rng.uniform(-0.3, 0.3, b), g2=rng.uniform(-0.3, 0.3, b)),
                          jaxsky.Gaussian(fwhm=0.6))
    plan = jaxsky.make_plan(obj, 24, 24, 0.25)
    img4 = sharded_draw(obj, nx=24, ny=24, scale=0.25, plan=plan)
    img1 = sharded_draw(obj, nx=24, ny=24, scale=0.25, plan=plan, mesh=one)
    def pick(i):
        return jax.tree.map(lambda x: x[i] if np.ndim(x) else x, obj)
    per = np.stack([np.asarray(jaxsky.draw(pick(i), nx=24, ny=24, scale=0.25, plan=plan))
                    for i in [0, 5, 11]])
    def rel(a, b):
        return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
    out["draw_devices"] = len(img4.sharding.device_set)
    out["draw_spec"] = str(img4.sharding.spec)
    out["draw_rel_err_4_vs_1"] = rel(img4, img1)
    out["draw_rel_err_vs_draw"] = rel(np.asarray(img4)[[0, 5, 11]], per)
    imgc = sharded_draw(obj, nx=24, ny=24, scale=0.25, plan=plan, chunk=5)
    out["draw_chunk_rel_err"] = rel(imgc, img1)
    # Grouped plans (the default without plan=): each group its own FFT sizes.
    from jaxsky.parallel.apps import _groups
    wide = jaxsky.Convolve(
        jaxsky.Exponential(scale_radius=np.geomspace(0.05, 1.5, b)).shear(
            g1=np.full(b, 0.2), g2=np.full(b, -0.1)),
        jaxsky.Gaussian(fwhm=0.5))
    out["n_groups"] = len(_groups(wide, 24, 24, 0.25, None, b, 2))
    grp4 = sharded_draw(wide, nx=24, ny=24, scale=0.25, min_group=2)
    grp1 = sharded_draw(wide, nx=24, ny=24, scale=0.25, min_group=2, mesh=one)
    own = np.stack([np.asarray(jaxsky.draw(jax.tree.map(lambda x: x[i] if np.ndim(x) else x,
                                                        wide), nx=24, ny=24, scale=0.25))
                    for i in range(b)])
    out["group_4_vs_1"] = rel(grp4, grp1)
    out["group_vs_own_plan"] = rel(grp4, own)

    # 3. emulator predict: a least-squares linear emulator (pixels = [1, theta] @ W).
    def lin_fit(ds, cfg, *, key):
        a = np.column_stack([np.ones(len(ds.params)), ds.params])
        w, *_ = np.linalg.lstsq(a, np.asarray(ds.images).reshape(len(a), -1), rcond=None)
        return {"w": jnp.asarray(w, jnp.float32), "shape": None}
    def lin_predict(state, theta):
        return (jnp.concatenate([jnp.ones(1), theta]) @ state["w"]).reshape(8, 8)
    register_family(EmulatorFamily("test-linear", dict, lin_fit, lin_predict, lambda r, c, i: r))
    w = rng.normal(size=(3, 64)).astype(np.float32)
    emu = Emulator("test-linear", {"w": jnp.asarray(w)}, {},
                   {"param_names": ["a", "b"], "ranges": {"a": [1, 2], "b": [0.3, 1]}})
    p4 = sharded_predict(emu, th)
    p_ref = (np.column_stack([np.ones(10), th]) @ w).reshape(10, 8, 8)
    out["predict_err"] = float(np.abs(np.asarray(p4) - p_ref).max() / np.abs(p_ref).max())
    try:
        sharded_predict(emu, th * 10)
        out["predict_ood"] = "no error"
    except ValueError as err:
        out["predict_ood"] = type(err).__name__

    # 4. per-galaxy fits: 30 Gauss-Newton steps for (amplitude, width) of noisy-free stamps.
    def fit_one(img):
        def resid(p):
            return (f(p) - img).ravel()
        def step(p, _):
            r, jmat = resid(p), jax.jacfwd(resid)(p)
            return p - jnp.linalg.solve(jmat.T @ jmat + 1e-9 * jnp.eye(2), jmat.T @ r), None
        return jax.lax.scan(step, jnp.array([1.5, 0.6]), None, length=30)[0]
    fits4 = np.asarray(map_galaxies(fit_one, jnp.asarray(ref, jnp.float32)))
    fits1 = np.asarray(map_galaxies(fit_one, jnp.asarray(ref, jnp.float32), mesh=one))
    out["fit_4_vs_1"] = float(np.abs(fits4 - fits1).max())
    out["fit_vs_truth"] = float(np.abs(fits4 - th).max())

    # 5. data-parallel training: one optax step, batch sharded and parameters replicated.
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = x @ rng.normal(size=5).astype(np.float32)
    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    opt = optax.adam(0.1)
    def train_step(p, s, xb, yb):
        loss, g = jax.value_and_grad(lambda q: jnp.mean((xb @ q["w"] + q["b"] - yb) ** 2))(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss
    step = jax.jit(train_step)
    p1, s1 = params, opt.init(params)
    p4, s4 = replicate((params, opt.init(params)))
    xs, ys = shard_batch((x, y))
    out["train_x_devices"] = len(xs.sharding.device_set)
    for _ in range(5):
        p1, s1, l1 = step(p1, s1, x, y)
        p4, s4, l4 = step(p4, s4, xs, ys)
    out["train_err"] = float(max(np.abs(np.asarray(p4["w"]) - np.asarray(p1["w"])).max(),
                                 abs(float(l4) - float(l1))))

    # 6. gradients flow through the sharded map (padding included).
    g4 = jax.grad(lambda t: jnp.sum(sharded_map(f, t) ** 2))(jnp.asarray(th[:6]))
    g1 = jax.grad(lambda t: jnp.sum(jax.vmap(f)(t) ** 2))(jnp.asarray(th[:6]))
    out["grad_err"] = rel(g4, g1)
    print(json.dumps(out), file=sys.stderr)
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    return json.loads(run_fresh(FOUR_DEVICE_CHECK, env=env))


def test_four_devices_visible(four):
    assert four["n_devices"] == 4


def test_sharded_map_matches_numpy_and_is_sharded(four):
    assert four["map_err"] < 1e-5 and four["map_chunk_err"] < 1e-5
    assert four["map_devices"] == 4
    assert four["map_shard_rows"] == [2, 2, 2, 2]


def test_sharded_draw_equals_single_device(four):
    assert four["draw_devices"] == 4 and "batch" in four["draw_spec"]
    # Same program on 1 and 4 devices: agreement to float32 rounding (1e-6 of peak).
    assert four["draw_rel_err_4_vs_1"] < 1e-6
    assert four["draw_rel_err_vs_draw"] < 1e-6
    assert four["draw_chunk_rel_err"] < 1e-6


def test_sharded_draw_grouped_plans(four):
    assert four["n_groups"] > 1
    assert four["group_4_vs_1"] < 1e-6
    # Each galaxy's group plan is at least as large as its own: the images agree to the
    # renderer's accuracy target (1e-5 of the peak by default; allow 1e-4).
    assert four["group_vs_own_plan"] < 1e-4


def test_sharded_predict(four):
    assert four["predict_err"] < 1e-6
    assert four["predict_ood"] == "OutOfDomainError"


def test_sharded_fits_and_training(four):
    assert four["fit_4_vs_1"] < 1e-6
    assert four["fit_vs_truth"] < 1e-3  # Gauss-Newton recovers the true (amplitude, width)
    assert four["train_x_devices"] == 4
    assert four["train_err"] < 1e-6


def test_grad_through_sharded_map_with_padding(four):
    assert four["grad_err"] < 1e-6


def test_check_grads_sharded_map(x64):
    def f(t):
        return jnp.stack([jnp.sin(t[0]) * t[1], t[1] ** 2])

    th = jnp.array([[0.3, 1.2], [1.1, -0.4], [2.0, 0.7]])
    check_grads(lambda t: sharded_map(f, t), (th,), order=2, modes=("fwd", "rev"))
    # Edges: zeros in, finite gradients out.
    g = jax.grad(lambda t: jnp.sum(sharded_map(f, t)))(jnp.zeros((3, 2)))
    assert np.all(np.isfinite(g))


def test_pad_batch_and_errors():
    tree, n = pad_batch({"a": np.arange(5.0), "b": np.ones((5, 2))}, 4)
    assert n == 5 and tree["a"].shape == (8,) and np.all(tree["a"][5:] == 4.0)
    with pytest.raises(ValueError, match="leading"):
        pad_batch({"a": np.zeros(3), "b": np.zeros(4)}, 2)
    with pytest.raises(ValueError, match="multiple=0"):
        pad_batch(np.zeros(3), 0)
    with pytest.raises(ValueError, match="chunk=0"):
        sharded_map(jnp.sin, np.zeros(3), chunk=0)


@pytest.mark.parametrize("n,count", [(0, 3), (10, 3), (7, 7), (5, 8), (1000, 6)])
def test_process_slice_partitions(n, count):
    sl = [process_slice(n, i, count) for i in range(count)]
    idx = np.concatenate([np.arange(n)[s] for s in sl])
    assert np.array_equal(idx, np.arange(n))  # covers every item once, in order
    sizes = [s.stop - s.start for s in sl]
    assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="index=3"):
        process_slice(n, 3, 3)


def _gauss_stamp(t):
    x = jnp.linspace(-1.0, 1.0, 6)
    return t[0] * jnp.exp(-0.5 * (x[:, None] ** 2 + x[None, :] ** 2) / t[1] ** 2)


def _gauss_ref(th):
    x = np.linspace(-1.0, 1.0, 6)
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    return th[:, :1, None] * np.exp(-0.5 * r2 / th[:, 1:, None] ** 2)


def test_stream_to_hdf5_writes_atomically_and_refuses_overwrite(tmp_path):
    import h5py

    from jaxsky.parallel import partial_path, stream_to_hdf5

    th = np.column_stack([np.linspace(1, 2, 11), np.linspace(0.3, 1.0, 11)])
    path = tmp_path / "stamps.h5"
    stream_to_hdf5(_gauss_stamp, th, path, chunk=4, progress=False, attrs={"who": "test"})
    assert path.exists() and not partial_path(path).exists()
    with h5py.File(path) as f:
        np.testing.assert_allclose(f["images"][:], _gauss_ref(th), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(f["params"][:], th)
        assert f["images"].compression == "gzip" and f["images"].chunks[0] <= 4
        assert f.attrs["n_done"] == 11 and f.attrs["who"] == "test"
    with pytest.raises(FileExistsError, match="overwrite"):
        stream_to_hdf5(_gauss_stamp, th, path, chunk=4, progress=False)
    stream_to_hdf5(_gauss_stamp, th[:5] * 1.5, path, chunk=4, progress=False, overwrite=True)
    with h5py.File(path) as f:
        np.testing.assert_allclose(f["images"][:], _gauss_ref(th[:5] * 1.5), rtol=1e-6)
    with pytest.raises(ValueError, match="thetas must be"):
        stream_to_hdf5(_gauss_stamp, th[0], tmp_path / "x.h5", chunk=4, progress=False)


def test_stream_to_hdf5_resumes_after_interruption(tmp_path):
    import h5py

    from jaxsky.parallel import partial_path, stream_to_hdf5

    th = np.column_stack([np.linspace(1, 2, 10), np.linspace(0.3, 1.0, 10)])
    path = tmp_path / "s.h5"
    stream_to_hdf5(_gauss_stamp, th, path, chunk=4, progress=False)
    # Make it look like a run stopped after 4 stamps: rows 0-3 hold a marker that a resumed
    # run must keep, rows 4+ are garbage that it must recompute.
    part = partial_path(path)
    path.rename(part)
    with h5py.File(part, "r+") as f:
        f["images"][:4] = -1.0
        f["images"][4:] = np.nan
        f.attrs["n_done"] = 4
    stream_to_hdf5(_gauss_stamp, th, path, chunk=4, progress=False)
    with h5py.File(path) as f:
        imgs = f["images"][:]
    assert np.all(imgs[:4] == -1.0)
    np.testing.assert_allclose(imgs[4:], _gauss_ref(th)[4:], rtol=1e-6, atol=1e-7)
    # A partial file of other parameters is not resumed silently.
    path.rename(part)
    with pytest.raises(FileExistsError, match="different parameters"):
        stream_to_hdf5(_gauss_stamp, th * 1.1, path, chunk=4, progress=False)


TWO_PROCESS_WORKER = textwrap.dedent(
    r"""
    import sys
    import numpy as np
    from jaxsky.parallel import initialize, process_slice, sharded_map

    pid, nproc = initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import jax, jax.numpy as jnp

    assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2, jax.devices()
    th = np.column_stack([np.linspace(1, 2, 9), np.linspace(0.3, 1, 9)])
    sl = process_slice(len(th))

    def f(t):
        x = jnp.linspace(-1.0, 1.0, 6)
        return t[0] * jnp.exp(-0.5 * (x[:, None] ** 2 + x[None, :] ** 2) / t[1] ** 2)

    out = sharded_map(f, th[sl])
    np.save(sys.argv[3], np.asarray(out))
    """
)


def test_two_processes_on_localhost(tmp_path):
    """jax.distributed.initialize with 2 CPU processes x 2 devices; each does its slice."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                TWO_PROCESS_WORKER,
                f"localhost:{port}",
                str(i),
                str(tmp_path / f"part{i}.npy"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        errs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-1500:] for e in errs)
    got = np.concatenate([np.load(tmp_path / f"part{i}.npy") for i in range(2)])
    th = np.column_stack([np.linspace(1, 2, 9), np.linspace(0.3, 1, 9)])
    np.testing.assert_allclose(got, _gauss_ref(th), rtol=1e-6, atol=1e-7)


def test_repeated_calls_do_not_recompile():
    from jaxsky.parallel import batch_mesh
    from jaxsky.parallel.sharding import _compiled

    def f(t):
        return jnp.cos(t) * t

    x = np.linspace(0.0, 1.0, 12).reshape(6, 2)
    mesh = batch_mesh()
    for scale in (1.0, 2.0, 3.0):  # same shapes, different values
        sharded_map(f, x * scale, mesh=mesh)
    for _ in range(2):  # fixed-size steps: the padded last step reuses the program
        sharded_map(f, x, chunk=4, mesh=mesh)
    jitted = _compiled(f, mesh, 1, False)
    n_dev = mesh.size
    sizes = {-(-6 // n_dev) * n_dev, -(-4 // n_dev) * n_dev}
    assert jitted._cache_size() == len(sizes)
