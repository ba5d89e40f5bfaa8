"""The one interface every emulator family implements, and the :class:`Emulator` wrapper.

A family is a ``NamedTuple`` of pure functions (the optax pattern)::

    state = family.fit(dataset, config, key=key)      # state: a pytree of arrays
    image = family.predict(state, theta)               # theta: float[P] -> float[ny, nx]

``predict`` is written for ONE parameter vector in physical units; the wrapper vmaps and
jit-compiles it. Families with an uncertainty give ``predict_var`` (pixel variance), stochastic
ones give ``sample(state, theta, key=key)``. ``restore(state_dict, config, info)`` rebuilds a
state from :func:`flax.serialization.to_state_dict` output for :func:`load`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxsky._io import atomic_output_dir
from jaxsky.errors import CheckpointError, OutOfDomainError

__all__ = [
    "EmulatorFamily",
    "Emulator",
    "register_family",
    "get_family",
    "families",
    "fit",
    "load",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1
_FAMILIES: dict[str, EmulatorFamily] = {}


class EmulatorFamily(NamedTuple):
    """Pure functions that define one kind of emulator (see the module docstring)."""

    name: str
    default_config: Callable[[], dict]
    fit: Callable[..., Any]
    predict: Callable[[Any, jax.Array], jax.Array]
    restore: Callable[[Any, dict, dict], Any]
    predict_var: Callable[[Any, jax.Array], jax.Array] | None = None
    sample: Callable[..., jax.Array] | None = None
    x64: bool = False  # predict needs float64 (GP algebra); the wrapper enables it


def register_family(family: EmulatorFamily) -> EmulatorFamily:
    _FAMILIES[family.name] = family
    return family


def families() -> tuple[str, ...]:
    _import_builtin()
    return tuple(sorted(_FAMILIES))


def get_family(name: str) -> EmulatorFamily:
    _import_builtin()
    if name not in _FAMILIES:
        raise ValueError(f"model={name!r} is not one of {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def _import_builtin() -> None:
    import importlib

    for mod in ("pcagp", "vae", "flow", "ensemble", "hybrid"):
        try:
            importlib.import_module(f"jaxsky.emulators.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"jaxsky.emulators.{mod}":
                raise


def _versions() -> dict:
    import flax
    import galsim

    import jaxsky

    return {
        "jaxsky": jaxsky.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "galsim": galsim.__version__,
        "format": FORMAT_VERSION,
    }


@dataclasses.dataclass(frozen=True)
class Emulator:
    """A trained emulator: ``predict`` maps float[B, P] physical parameters to float[B, ny, nx].

    Attributes:
        family: name of the family (``"pcagp"``, ``"vae"``, ...).
        state: the family's fitted pytree.
        config: the family's configuration (JSON-able).
        info: data-set identity: ``param_names``, ``param_units``, ``ranges``, ``shape``,
            ``scale``, ``data`` (file/preset/seed), ``versions``, training metrics.
    """

    family: str
    state: Any
    config: Mapping[str, Any]
    info: Mapping[str, Any]

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.info["param_names"])

    @property
    def _fam(self) -> EmulatorFamily:
        return get_family(self.family)

    def check_domain(self, theta, *, on_ood: str = "error") -> np.ndarray:
        """Boolean[B] mask of rows inside the training box; raise/warn per ``on_ood``.

        ``on_ood``: ``"error"`` (default) raises :class:`OutOfDomainError`, ``"warn"`` warns,
        ``"ignore"`` only returns the mask.
        """
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        names = self.param_names
        if theta.shape[-1] != len(names):
            raise ValueError(f"theta has {theta.shape[-1]} columns; the emulator expects {names}")
        lo = np.array([self.info["ranges"][k][0] for k in names])
        hi = np.array([self.info["ranges"][k][1] for k in names])
        tol = 1e-9 * np.maximum(hi - lo, 1e-300)
        bad = (theta < lo - tol) | (theta > hi + tol) | ~np.isfinite(theta)
        inside = ~bad.any(axis=1)
        if not inside.all() and on_ood != "ignore":
            i, j = np.argwhere(bad)[0]
            msg = (
                f"{int((~inside).sum())} of {len(theta)} parameter rows are outside the training "
                f"domain, e.g. row {i}: {names[j]}={theta[i, j]:g} is outside the allowed range "
                f"[{lo[j]:g}, {hi[j]:g}]"
            )
            if on_ood == "error":
                raise OutOfDomainError(msg)
            if on_ood == "warn":
                warnings.warn(msg, stacklevel=3)
            else:
                raise ValueError(f"on_ood={on_ood!r} is not one of 'error', 'warn', 'ignore'")
        return inside

    def _precision(self):
        return jax.enable_x64(True) if self._fam.x64 else contextlib.nullcontext()

    def predict_fn(self) -> Callable[[jax.Array], jax.Array]:
        """A pure function theta float[P] -> image float[ny, nx] for use inside user JAX code.

        No domain check happens inside (it would need concrete values); call
        :meth:`check_domain` on the parameters you feed it. Families with ``x64`` (PCA+GP)
        lose accuracy unless the caller runs in float64 (``jax.enable_x64``).
        """
        fam, state = self._fam, self.state
        return lambda theta: fam.predict(state, theta)

    def predict(self, theta, *, on_ood: str = "error") -> jax.Array:
        """Mean images float[B, ny, nx] for theta float[B, P] (or float[P] -> float[ny, nx])."""
        theta = np.asarray(theta)
        self.check_domain(theta, on_ood=on_ood)
        with self._precision():
            out = _batched(self._fam.predict)(self.state, jnp.atleast_2d(jnp.asarray(theta)))
        return out[0] if theta.ndim == 1 else out

    def variance(self, theta, *, on_ood: str = "error") -> jax.Array:
        """Pixel variance of the prediction, for families that have one."""
        if self._fam.predict_var is None:
            raise NotImplementedError(f"the {self.family} emulator has no predictive variance")
        theta = np.asarray(theta)
        self.check_domain(theta, on_ood=on_ood)
        with self._precision():
            out = _batched(self._fam.predict_var)(self.state, jnp.atleast_2d(jnp.asarray(theta)))
        return out[0] if theta.ndim == 1 else out

    def sample(self, theta, *, key, on_ood: str = "error") -> jax.Array:
        """Random images float[B, ny, nx] for stochastic families (one key per call)."""
        if self._fam.sample is None:
            raise NotImplementedError(f"the {self.family} emulator is deterministic; use predict")
        theta = jnp.atleast_2d(jnp.asarray(theta))
        self.check_domain(theta, on_ood=on_ood)
        keys = jax.random.split(key, theta.shape[0])
        fam = self._fam
        with self._precision():
            fn = jax.jit(jax.vmap(lambda t, k: fam.sample(self.state, t, key=k)))
            return fn(theta, keys)

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write ``path/`` with ``emulator.json`` and ``state.msgpack`` atomically."""
        path = Path(path)
        doc = {
            "format": FORMAT_VERSION,
            "family": self.family,
            "config": dict(self.config),
            "info": {**dict(self.info), "versions": _versions()},
        }
        blob = serialization.msgpack_serialize(
            jax.tree.map(np.asarray, serialization.to_state_dict(self.state))
        )
        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            (tmp / "emulator.json").write_text(json.dumps(doc, indent=1, default=_json_default))
            (tmp / "state.msgpack").write_bytes(blob)
        return path


_BATCHED: dict = {}


def _batched(fn):
    if fn not in _BATCHED:
        _BATCHED[fn] = jax.jit(jax.vmap(fn, in_axes=(None, 0)))
    return _BATCHED[fn]


def _json_default(o):
    if isinstance(o, np.ndarray | jax.Array):
        return np.asarray(o).tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in emulator.json")


def fit(family: str, dataset, config: Mapping | None = None, *, key, **kw) -> Emulator:
    """Train an emulator of ``family`` on ``dataset`` (a :class:`jaxsky.data.Dataset`).

    ``config`` entries override ``family.default_config()``; unknown keys are an error.
    Extra keyword arguments (``progress``, ``checkpoint_dir``...) go to the family's fit.
    """
    fam = get_family(family)
    cfg = fam.default_config()
    unknown = set(config or {}) - set(cfg)
    if unknown:
        raise ValueError(f"unknown {family} config keys {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(config or {})
    t0 = time.perf_counter()
    state = fam.fit(dataset, cfg, key=key, **kw)
    seconds = time.perf_counter() - t0
    info = {
        "param_names": list(dataset.param_names),
        "param_units": list(dataset.param_units),
        "ranges": {k: list(v) for k, v in dataset.ranges.items()},
        "shape": list(dataset.shape),
        "scale": dataset.scale,
        "data": {k: dataset.meta.get(k) for k in ("path", "preset", "survey", "seed", "digest")},
        "train_seconds": seconds,
        "n_images": len(dataset),
    }
    return Emulator(family=family, state=state, config=cfg, info=info)


def load(path) -> Emulator:
    """Load an emulator saved by :meth:`Emulator.save`; refuse incompatible checkpoints."""
    path = Path(path)
    meta_file, state_file = path / "emulator.json", path / "state.msgpack"
    if not path.is_dir() or not meta_file.exists() or not state_file.exists():
        raise CheckpointError(
            f"{path} is not a saved jaxsky emulator (no emulator.json/state.msgpack)"
        )
    try:
        doc = json.loads(meta_file.read_text())
        raw = serialization.msgpack_restore(state_file.read_bytes())
    except Exception as err:  # corrupted files: say so in one line
        raise CheckpointError(f"{path} is corrupted: {type(err).__name__}: {err}") from None
    if doc.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {doc.get('format')}; this jaxsky reads format "
            f"{FORMAT_VERSION} (retrain or use the jaxsky version in its emulator.json)"
        )
    fam = get_family(doc["family"])
    try:
        state = fam.restore(raw, doc["config"], doc["info"])
    except Exception as err:
        raise CheckpointError(
            f"{path}: state does not match a {fam.name} emulator: {err}"
        ) from None
    return Emulator(family=doc["family"], state=state, config=doc["config"], info=doc["info"])
