"""HDF5 store: determinism, load/splits/batches, lazy reads, merge, corrupted files."""

import hashlib
import shutil

import h5py
import jax
import numpy as np
import pytest

from jaxsky.data import batches, generate, load, merge, simulate
from jaxsky.errors import DataError

N, CHUNK = 12, 4


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    a = generate("paper", N, seed=4, out=d / "a.h5", chunk=CHUNK, progress=False)
    return d, a


def test_file_matches_in_memory_simulation(made):
    _, a = made
    ds = load(a)
    ref = simulate("paper", N, seed=4)
    np.testing.assert_array_equal(ds.images, ref.images)
    np.testing.assert_array_equal(ds.psfs, ref.psfs)
    np.testing.assert_array_equal(ds.params, ref.params)
    np.testing.assert_array_equal(ds.noise_seeds, ref.noise_seeds)
    assert ds.param_names == ("flux", "scale_radius", "g1", "g2", "psf_fwhm")
    assert ds.param_units[:2] == ("electrons", "arcsec")
    cfg = ds.meta["config"]
    assert cfg["preset"] == "paper" and cfg["n"] == N and cfg["seed"] == 4
    assert set(ds.meta["versions"]) >= {"jaxsky", "galsim", "jax"}
    with h5py.File(a) as f:
        assert f["images"].compression == "lzf" and f["images"].chunks[0] == CHUNK
        assert f["chunks/completed"][()].all() and len(f["chunks/sha256"]) == 3


def test_same_seed_same_bytes_other_seed_differs(made):
    d, a = made
    b = generate("paper", N, seed=4, out=d / "b.h5", chunk=CHUNK, progress=False)
    assert _sha(a) == _sha(b)
    c = generate("paper", N, seed=5, out=d / "c.h5", chunk=CHUNK, progress=False)
    assert not np.array_equal(load(a).params, load(c).params)


def test_no_silent_overwrite(made):
    d, a = made
    before = _sha(a)
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate("paper", N, seed=9, out=a, chunk=CHUNK, progress=False)
    assert _sha(a) == before
    shutil.copy(a, d / "o.h5")
    generate("paper", N, seed=9, out=d / "o.h5", chunk=CHUNK, progress=False, overwrite=True)
    assert load(d / "o.h5").meta["config"]["seed"] == 9


def test_splits_lazy_and_batches(made):
    _, a = made
    mem, lazy = load(a), load(a, lazy=True)
    assert not isinstance(lazy.images, np.ndarray)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(mem.split(name).images, lazy.split(name).images)
    assert sum(len(mem.split(s)) for s in ("train", "val", "test")) == N
    np.testing.assert_array_equal(lazy.images[[5, 1, 5]], mem.images[[5, 1, 5]])
    for ds in (mem, lazy):
        got = list(batches(ds, 3, key=jax.random.key(0), split=None))
        idx = np.concatenate([b.index for b in got])
        assert sorted(idx) == list(range(N))
        for b in got:
            np.testing.assert_array_equal(b.images, mem.images[b.index])
            np.testing.assert_array_equal(b.params, mem.params[b.index])
        again = [b.index for b in batches(ds, 3, key=jax.random.key(0), split=None)]
        assert all(np.array_equal(x, y) for x, y in zip(again, [b.index for b in got]))
    train = np.concatenate([b.index for b in batches(mem, 4, key=jax.random.key(1))])
    assert np.all(mem.split_of[train] == 0)
    # Stopping early leaves no stuck thread behind.
    it = batches(lazy, 1, key=jax.random.key(2), split=None, prefetch=1)
    next(it)
    it.close()


def test_merge_shards_equals_unsharded(made):
    d, a = made
    shards = [
        generate(
            "paper", N, seed=4, out=d / f"s{k}.h5", chunk=CHUNK, shard=f"{k}/3", progress=False
        )
        for k in range(3)
    ]
    m = merge(d / "m.h5", [shards[2], shards[0], shards[1]])
    assert _sha(m) == _sha(a)
    with pytest.raises(DataError, match="missing"):
        merge(d / "m2.h5", shards[:2])
    with pytest.raises(DataError, match="overlap"):
        merge(d / "m3.h5", [shards[0], *shards])
    other = generate("paper", N, seed=5, out=d / "x.h5", chunk=CHUNK, shard="1/3", progress=False)
    with pytest.raises(DataError, match="different configuration"):
        merge(d / "m4.h5", [shards[0], other, shards[2]])
    assert not (d / "m2.h5").exists() and not (d / "m4.h5").exists()


def test_truncated_file(made, tmp_path):
    _, a = made
    data = open(a, "rb").read()
    bad = tmp_path / "t.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupted"):
        load(bad)


def test_corrupted_chunk(made, tmp_path):
    _, a = made
    bad = tmp_path / "c.h5"
    shutil.copy(a, bad)
    with h5py.File(bad, "r") as f:
        offset = f["images"].id.get_chunk_info(1).byte_offset
        size = f["images"].id.get_chunk_info(1).size
    raw = bytearray(bad.read_bytes())
    for j in range(offset + size // 3, offset + size // 3 + 64):
        raw[j] ^= 0x5A
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="chunk 1"):
        load(bad)


def test_incomplete_and_foreign_files(made, tmp_path):
    _, a = made
    inc = tmp_path / "i.h5"
    shutil.copy(a, inc)
    with h5py.File(inc, "r+") as f:
        f["chunks/completed"][2] = False
    with pytest.raises(DataError, match="incomplete"):
        load(inc)
    foreign = tmp_path / "f.h5"
    with h5py.File(foreign, "w") as f:
        f["images"] = np.zeros((2, 3, 3))
    with pytest.raises(DataError, match="not a jaxsky data set"):
        load(foreign)
    text = tmp_path / "x.h5"
    text.write_text("hello")
    with pytest.raises(DataError, match="cannot be read as HDF5"):
        load(text)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.h5")


def test_worker_processes_give_the_same_file(tmp_path):
    import subprocess
    import sys

    one = generate("paper", 7, seed=1, out=tmp_path / "1.h5", chunk=2, progress=False)
    spawn = generate(
        "paper", 7, seed=1, out=tmp_path / "spawn.h5", chunk=2, workers=2, progress=False,
        start_method="spawn",
    )  # fmt: skip
    assert _sha(one) == _sha(spawn)
    # A fresh process without JAX forks its workers (this one has started JAX: it must not).
    # With one worker and a spare core the parent compresses what the worker renders.
    code = (
        "import importlib, sys; g = importlib.import_module('jaxsky.data.generate'); "
        "generate = g.generate; "
        "assert g._start_method() == 'fork', g._start_method(); "
        "g._spare_core = lambda workers: workers == 1; "  # whatever the machine's load
        "generate('paper', 7, seed=1, out=sys.argv[1], chunk=2, workers=2, progress=False); "
        "generate('paper', 7, seed=1, out=sys.argv[2], chunk=2, workers=1, progress=False)"
    )
    fork, fork1 = tmp_path / "fork.h5", tmp_path / "fork1.h5"
    subprocess.run([sys.executable, "-c", code, str(fork), str(fork1)], check=True, timeout=300)
    assert _sha(one) == _sha(fork) == _sha(fork1)
    from jaxsky.data.generate import _start_method

    jax.random.key(0)  # a started JAX backend rules out fork
    assert _start_method() == "spawn"


def test_compression_options_and_older_gzip_shuffle_files(made, tmp_path):
    from jaxsky.errors import UserError

    _, a = made
    ref = load(a)
    for comp, filt in (("gzip", "gzip"), ("none", None)):
        out = generate(
            "paper", N, seed=4, out=tmp_path / f"{comp}.h5", chunk=CHUNK, progress=False,
            compression=comp,
        )  # fmt: skip
        with h5py.File(out) as f:
            assert f["images"].compression == filt and f["psfs"].compression == filt
        got = load(out)
        np.testing.assert_array_equal(got.images, ref.images)
        np.testing.assert_array_equal(got.psfs, ref.psfs)
    with pytest.raises(UserError, match="--compression='zstd'"):
        generate("paper", N, seed=4, out=tmp_path / "z.h5", compression="zstd", progress=False)
    # A file as earlier versions wrote it (gzip level 4 + shuffle, no "compression" in its
    # config) loads, verifies and merges the same.
    old = tmp_path / "old.h5"
    with h5py.File(a) as src, h5py.File(old, "w") as dst:
        for key, val in src.attrs.items():
            dst.attrs[key] = val
        for name in ("params", "design", "noise", "render_seeds", "split", "chunks"):
            src.copy(name, dst)
        for name in ("images", "psfs"):
            d = dst.create_dataset(
                name, data=src[name][()], chunks=src[name].chunks, compression="gzip",
                compression_opts=4, shuffle=True,
            )  # fmt: skip
            assert d.shuffle
    got = load(old, verify=True)
    np.testing.assert_array_equal(got.images, ref.images)
    merged = merge(tmp_path / "old-merged.h5", [old])
    np.testing.assert_array_equal(load(merged).images, ref.images)


def test_resume_refuses_a_partial_of_another_format(tmp_path):
    import json

    from jaxsky.errors import UserError

    out = tmp_path / "p.h5"
    partial = tmp_path / "p.h5.partial"
    partial.mkdir()
    (partial / "manifest.json").write_text(json.dumps({"config": {}, "shard": None}))
    (partial / "chunk-000000.npz").write_bytes(b"PK")
    with pytest.raises(UserError, match="another jaxsky version"):
        generate("paper", N, seed=4, out=out, chunk=CHUNK, resume=True, progress=False)
    assert not out.exists()


def test_resume_checks_config_and_redoes_damaged_chunks(made, tmp_path):
    from jaxsky.data._chunks import (
        PARTIAL_FORMAT,
        chunk_ok,
        chunk_path,
        prepare_partial,
        write_chunk,
    )
    from jaxsky.data.generate import plan_run
    from jaxsky.errors import UserError

    _, a = made
    out = tmp_path / "r.h5"
    run = plan_run("paper", N, seed=4, chunk=CHUNK)
    manifest = {"config": run.config, "shard": None, "partial_format": PARTIAL_FORMAT}
    partial = prepare_partial(out, manifest, resume=False, overwrite=False)
    good = simulate("paper", N, seed=4)
    # A finished chunk, uncompressed (as a worker leaves it for the parent to compress).
    write_chunk(partial, 0, good.images[:CHUNK], good.psfs[:CHUNK], rows=CHUNK, compression="none")
    assert chunk_ok(partial, 0, CHUNK, rows=CHUNK)  # kept by --resume
    write_chunk(partial, 1, good.images[:1], good.psfs[:1], rows=CHUNK)  # wrong size: redone
    chunk_path(partial, 2).write_bytes(b"\x89HDF\r\n truncated")  # unreadable: redone
    with pytest.raises(UserError, match="different configuration"):
        generate("paper", N, seed=5, out=out, chunk=CHUNK, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        generate("paper", N, seed=4, out=out, chunk=CHUNK, progress=False)
    generate("paper", N, seed=4, out=out, chunk=CHUNK, resume=True, progress=False)
    assert _sha(out) == _sha(a) and not partial.exists()
