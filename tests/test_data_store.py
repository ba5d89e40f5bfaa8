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
        assert f["images"].compression == "gzip" and f["images"].chunks[0] == CHUNK
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
    one = generate("paper", 6, seed=1, out=tmp_path / "1.h5", chunk=2, progress=False)
    two = generate("paper", 6, seed=1, out=tmp_path / "2.h5", chunk=2, workers=2, progress=False)
    assert _sha(one) == _sha(two)


def test_resume_checks_config_and_redoes_damaged_chunks(made, tmp_path):
    from jaxsky.data._chunks import chunk_path, prepare_partial, save_chunk
    from jaxsky.data.generate import plan_run
    from jaxsky.errors import UserError

    _, a = made
    out = tmp_path / "r.h5"
    run = plan_run("paper", N, seed=4, chunk=CHUNK)
    partial = prepare_partial(
        out, {"config": run.config, "shard": None}, resume=False, overwrite=False
    )
    good = simulate("paper", N, seed=4)
    save_chunk(partial, 0, good.images[:CHUNK], good.psfs[:CHUNK])  # a finished chunk
    save_chunk(partial, 1, good.images[:1], good.psfs[:1])  # wrong size: redone
    chunk_path(partial, 2).write_bytes(b"PK\x03\x04 truncated")  # unreadable: redone
    with pytest.raises(UserError, match="different configuration"):
        generate("paper", N, seed=5, out=out, chunk=CHUNK, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        generate("paper", N, seed=4, out=out, chunk=CHUNK, progress=False)
    generate("paper", N, seed=4, out=out, chunk=CHUNK, resume=True, progress=False)
    assert _sha(out) == _sha(a) and not partial.exists()
