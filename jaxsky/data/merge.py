"""Merge shard files (``jaxsky generate --shard k/K``) into one data set (``jaxsky merge``)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from jaxsky.data.store import _open, _verify, write_dataset
from jaxsky.errors import DataError

__all__ = ["merge"]


def _describe(path):
    f = _open(path)
    if not bool(f.attrs.get("complete", False)) or not f["chunks/completed"][()].all():
        f.close()
        raise DataError(f"{path} is incomplete (its generation did not finish)")
    return f


def merge(out, shards, *, overwrite: bool = False, verify: bool = True) -> Path:
    """Concatenate shard files into ``out``; identical to an unsharded run of the same config.

    Checks that every shard comes from the same configuration (preset, survey, N, seed, design,
    chunk...) and that together they cover indices ``0 .. N-1`` exactly once.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not shards:
        raise DataError("no shard files given")
    files = [_describe(p) for p in shards]
    try:
        return _merge(out, list(shards), files, verify)
    finally:
        for f in files:
            f.close()


def _merge(out, paths, files, verify):
    configs = [f.attrs["config"] for f in files]
    for p, c in zip(paths, configs):
        if c != configs[0]:
            raise DataError(f"{p} comes from a different configuration than {paths[0]}")
    if verify:
        for p, f in zip(paths, files):
            _verify(f, p)
    n = int(files[0].attrs["n_total"])
    spans = sorted(
        (int(f.attrs["index_start"]), int(f.attrs["index_stop"]), j) for j, f in enumerate(files)
    )
    pos = 0
    for a, b, j in spans:
        if a != pos:
            what = "overlap" if a < pos else "a gap"
            raise DataError(
                f"shards leave {what} at index {min(a, pos)} ({paths[j]} covers {a}-{b - 1}); "
                f"they must cover 0-{n - 1} exactly once"
            )
        pos = b
    if pos != n:
        raise DataError(f"shards cover indices 0-{pos - 1} of 0-{n - 1}: some shards are missing")
    order = [files[j] for _, _, j in spans]
    first = order[0]
    config = json.loads(first.attrs["config"])
    chunk = int(config["chunk"])

    def cat(name):
        return np.concatenate([f[name][()] for f in order])

    names = json.loads(first["params"].attrs["names"])
    arrays = {
        "params": cat("params"),
        "param_names": names,
        "param_units": json.loads(first["params"].attrs["units"]),
        "rows": cat("design/rows"),
        "noise_sigma": cat("noise/sigma"),
        "noise_seeds": cat("noise/seeds"),
        "render_seeds": cat("render_seeds"),
        "split": cat("split"),
    }
    extra = {k: cat(f"design/extra/{k}") for k in first["design/extra"]}
    header = {
        "config": config,
        "versions": json.loads(first.attrs["versions"]),
        "scale": float(first.attrs["scale"]),
        "n_total": n,
        "index_start": 0,
        "index_stop": n,
        "shard": None,
    }
    has_psf = "psfs" in first

    def rows(lo, hi):
        """Images/PSFs lo..hi-1 across shard boundaries."""
        ims, pss = [], []
        for f in order:
            a, b = int(f.attrs["index_start"]), int(f.attrs["index_stop"])
            s, e = max(lo, a), min(hi, b)
            if s < e:
                ims.append(f["images"][s - a : e - a])
                if has_psf:
                    pss.append(f["psfs"][s - a : e - a])
        return np.concatenate(ims), (np.concatenate(pss) if has_psf else None)

    chunks = (rows(k * chunk, min((k + 1) * chunk, n)) for k in range(math.ceil(n / chunk)))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        write_dataset(
            tmp,
            header=header,
            arrays=arrays,
            extra=extra,
            image_shape=first["images"].shape[1:],
            psf_shape=first["psfs"].shape[1:] if has_psf else None,
            chunks=chunks,
            chunk=chunk,
            # The shards' own filter (files from before the ``compression`` option: gzip).
            compression=config.get("compression", "gzip"),
        )
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
