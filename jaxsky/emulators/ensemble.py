"""Ensembles: members of any families, weighted by validation error, with a calibrated spread.

Each member is fitted on its own random subsample of the ``train`` split (and its own key), so
members differ in data as well as in configuration. On the ``val`` split the members'
mean-squared errors give inverse-MSE weights ``w_i ∝ 1 / mse_i``. The mean is ``sum w_i mu_i``;
the variance is the weighted spread ``sum w_i (mu_i - mu)^2`` plus the weighted member
variances (for members that have one), multiplied by one calibration factor ``c^2`` fitted on
the ``val`` split so that 68% of the validation pixel values in each galaxy's footprint (true
value above ``footprint`` x peak) lie within ``mu +/- sigma``. Held-out coverage of that same
interval is what the benchmark reports (target 63-73%).

Members are evaluated one after another inside one program (a ``lax.scan`` over the member
index with a ``lax.switch`` per member), not side by side: with jaxlib 0.10 on CPU, several
independent batched LAPACK calls (the PCA+GP members' triangular solves) running at once can
deadlock XLA's intra-op thread pool (see :mod:`jaxsky._cpu_pool`). Sequential members
cost nothing measurable: each member's work is already parallel over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsky.emulators._base import EmulatorFamily, get_family, register_family

__all__ = ["EnsembleState", "default_config", "fit", "predict", "predict_var", "restore"]


@struct.dataclass
class EnsembleState:
    """Fitted ensemble: member states, weights float[M], calibration factor (a scalar)."""

    members: tuple
    weights: jax.Array
    calib: jax.Array
    families: tuple = struct.field(pytree_node=False, default=())


def default_config() -> dict:
    """Configuration keys and defaults."""
    return {
        "members": [
            {"family": "pcagp", "config": {"kernel": "matern52"}},
            {"family": "pcagp", "config": {"kernel": "matern52", "features": "unit"}},
            {"family": "pcagp", "config": {"kernel": "rbf"}},
            {"family": "pcagp", "config": {"kernel": "matern52", "normalize": "flux"}},
        ],
        "subsample": 0.85,  # fraction of the train split each member sees
        "footprint": 0.01,  # calibration/coverage uses pixels above this fraction of the peak
        "calibrate": True,
    }


def _member_configs(cfg):
    out = []
    for i, m in enumerate(cfg["members"]):
        if not isinstance(m, dict) or "family" not in m:
            raise ValueError(f"members[{i}]={m!r} must be a dict with 'family' and 'config'")
        if m["family"] == "ensemble":
            raise ValueError("an ensemble cannot contain an ensemble")
        fam = get_family(m["family"])
        mc = fam.default_config()
        unknown = set(m.get("config", {})) - set(mc)
        if unknown:
            raise ValueError(f"members[{i}] has unknown {fam.name} config keys {sorted(unknown)}")
        mc.update(m.get("config", {}))
        if "splits" in mc:
            mc["splits"] = ["train"]
        out.append((fam, mc))
    if not out:
        raise ValueError("members must list at least one member")
    return out


def _batch(fn, state, theta):
    return jax.jit(jax.vmap(fn, in_axes=(None, 0)))(state, theta)


def fit(dataset, config: dict, *, key, progress: bool = False, **kw) -> EnsembleState:
    """Fit every member on a subsample of ``train``; weight and calibrate on ``val``."""
    cfg = {**default_config(), **config}
    frac = float(cfg["subsample"])
    if not 0 < frac <= 1:
        raise ValueError(f"subsample={frac} must be in (0, 1]")
    members = _member_configs(cfg)
    train, val = dataset.split("train"), dataset.split("val")
    states = []
    with jax.enable_x64(True):
        for i, (fam, mc) in enumerate(members):
            k = jax.random.fold_in(key, i)
            n = len(train)
            idx = np.asarray(jax.random.permutation(k, n))[: max(8, int(round(frac * n)))]
            if progress:
                print(f"ensemble: member {i + 1}/{len(members)} ({fam.name})")
            states.append(fam.fit(train.subset(idx), mc, key=k))
        theta = jnp.asarray(val.params)
        truth = jnp.asarray(np.asarray(val.images, np.float64))
        mse = []
        for (fam, _), s in zip(members, states, strict=True):
            # one member per program, read back before the next starts (see module docstring)
            pred = _batch(fam.predict, s, theta)
            mse.append(float(jnp.mean((pred - truth) ** 2)))
        mse = jnp.asarray(mse)
        w = (1.0 / mse) / jnp.sum(1.0 / mse)
        state = EnsembleState(
            members=tuple(states),
            weights=w,
            calib=jnp.ones(()),
            families=tuple(f.name for f, _ in members),
        )
        if cfg["calibrate"]:
            mean = _batch(predict, state, theta)
            sd = jnp.sqrt(_batch(predict_var, state, theta))
            z = np.asarray(jnp.abs(mean - truth) / jnp.maximum(sd, 1e-300))
            fp = np.asarray(truth > float(cfg["footprint"]) * truth.max(axis=(1, 2), keepdims=True))
            # the factor that makes the 68.27% quantile of |z| in the footprint equal to 1
            c = float(np.quantile(z[fp], 0.6827))
            state = state.replace(calib=jnp.asarray(max(c, 1e-12)))
    return state


def _members(state: EnsembleState, theta: jax.Array, with_var: bool):
    """Member means float[M, ny, nx] (and variances, zeros where a member has none),
    evaluated one member at a time: a scan over the member index switching between members."""
    fams = [get_family(f) for f in state.families]
    pairs = list(zip(fams, state.members, strict=True))
    shapes = [jax.eval_shape(f.predict, s, theta) for f, s in pairs]
    dtype = jnp.result_type(*[sh.dtype for sh in shapes])

    def branch(f, s):
        def run(_):
            mu = f.predict(s, theta).astype(dtype)
            if with_var and f.predict_var is not None:
                return mu, f.predict_var(s, theta).astype(dtype)
            return mu, jnp.zeros_like(mu)

        return run

    branches = [branch(f, s) for f, s in pairs]

    def body(carry, i):
        return carry, jax.lax.switch(i, branches, None)

    _, (mus, variances) = jax.lax.scan(body, None, jnp.arange(len(pairs)))
    return mus, variances


def predict(state: EnsembleState, theta: jax.Array) -> jax.Array:
    """Weighted mean image float[ny, nx] of the members."""
    outs, _ = _members(state, theta, with_var=False)
    return jnp.tensordot(state.weights, outs, axes=1)


def predict_var(state: EnsembleState, theta: jax.Array) -> jax.Array:
    """Calibrated pixel variance float[ny, nx]: weighted spread + member variances, times c^2."""
    outs, member_var = _members(state, theta, with_var=True)
    mean = jnp.tensordot(state.weights, outs, axes=1)
    var = jnp.tensordot(state.weights, (outs - mean) ** 2 + member_var, axes=1)
    return var * state.calib**2


def restore(raw, config: dict, info: dict) -> EnsembleState:
    """Rebuild an ensemble from its serialised dict, restoring each member by its family."""
    with jax.enable_x64(True):
        return _restore(raw, config, info)


def _restore(raw, config, info):
    cfg = {**default_config(), **config}
    members = _member_configs(cfg)
    raw_members = raw["members"]
    if len(raw_members) != len(members):
        raise ValueError(f"{len(raw_members)} saved members for {len(members)} configured")
    states = tuple(
        fam.restore(raw_members[str(i)], mc, info) for i, (fam, mc) in enumerate(members)
    )
    return EnsembleState(
        members=states,
        weights=jnp.asarray(raw["weights"]),
        calib=jnp.asarray(raw["calib"]),
        families=tuple(f.name for f, _ in members),
    )


FAMILY = register_family(
    EmulatorFamily(
        name="ensemble",
        default_config=default_config,
        fit=fit,
        predict=predict,
        restore=restore,
        predict_var=predict_var,
        x64=True,
    )
)
