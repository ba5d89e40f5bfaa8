"""The shared optax training loop: jit step, progress bar, early stopping, checkpoints, resume.

Every learned family trains through :func:`train_loop`::

    result = train_loop(
        loss_fn,                      # (params, batch, key) -> scalar loss
        params,                       # initial pytree
        batches_fn,                   # (step, key) -> batch pytree (pure: same step, same batch)
        optimizer=optax.adam(1e-3),
        n_steps=5000,
        key=key,
        val_fn=val_loss,              # params -> scalar, evaluated every ``val_every`` steps
        patience=10,                  # stop after 10 evaluations without improvement
        checkpoint_dir="ckpt/",       # periodic checkpoints; an existing one is resumed
    )
    result.params                     # the best parameters by validation loss (else the last)

A resumed run reproduces an uninterrupted one exactly: the step's random key is
``fold_in(key, step)``, and ``batches_fn`` receives the step number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from jaxsky._io import atomic_write_bytes
from jaxsky.errors import CheckpointError

__all__ = ["TrainResult", "train_loop", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "train_state.msgpack"


class TrainResult(NamedTuple):
    """Outcome of :func:`train_loop`.

    Attributes:
        params: best parameters by validation loss (the last ones when there is no ``val_fn``).
        last_params: parameters after the final step.
        best_step: step at which ``params`` were taken.
        best_val: their validation loss (``nan`` without ``val_fn``).
        steps: number of steps done (including those of a resumed run).
        history: dict with ``step``, ``loss`` (mean training loss since the previous
            evaluation), ``val`` lists; ``stopped_early`` (bool); ``seconds``.
    """

    params: Any
    last_params: Any
    best_step: int
    best_val: float
    steps: int
    history: dict


def _progress(enabled: bool, description: str, total: int):
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    bar.start()
    bar.add_task(description, total=total, info="")
    return bar


def train_loop(
    loss_fn: Callable[[Any, Any, jax.Array], jax.Array],
    params: Any,
    batches_fn: Callable[[int, jax.Array], Any],
    *,
    optimizer: optax.GradientTransformation,
    n_steps: int,
    key: jax.Array,
    val_fn: Callable[[Any], jax.Array] | None = None,
    val_every: int = 100,
    patience: int | None = None,
    checkpoint_dir=None,
    checkpoint_every: int = 1000,
    resume: bool = True,
    progress: bool = False,
    description: str = "training",
) -> TrainResult:
    """Minimise ``loss_fn`` with ``optimizer`` for ``n_steps`` steps.

    Args:
        loss_fn: ``(params, batch, key) -> scalar``; differentiated in ``params`` and jitted.
        params: initial parameter pytree.
        batches_fn: ``(step, key) -> batch``; called outside jit (may slice numpy arrays).
        optimizer: an optax transformation.
        n_steps: total number of steps (a resumed run continues up to it).
        key: PRNG key; step ``s`` uses ``fold_in(key, s)`` for its batch and loss.
        val_fn: ``params -> scalar`` validation loss; the best parameters are kept.
        val_every: steps between validations (and progress-bar updates).
        patience: stop after this many validations without improvement (None: never).
        checkpoint_dir: directory for ``train_state.msgpack``, written atomically every
            ``checkpoint_every`` steps and at the end; resumed from when ``resume``.
        progress: show a rich progress bar with the current loss.
        description: label of the progress bar.

    Returns:
        :class:`TrainResult`.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps={n_steps} must be >= 0")
    if val_every < 1 or checkpoint_every < 1:
        raise ValueError("val_every and checkpoint_every must be >= 1")
    opt_state = optimizer.init(params)
    best_params, best_val, best_step, step = params, math.inf, 0, 0
    history = {"step": [], "loss": [], "val": [], "stopped_early": False, "seconds": 0.0}
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        params, opt_state, best_params, best_val, best_step, step, history = _restore(
            ckpt, params, opt_state
        )

    @jax.jit
    def train_step(params, opt_state, batch, k):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, k)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    val_jit = jax.jit(val_fn) if val_fn is not None else None
    bar = _progress(progress, description, n_steps)
    if bar is not None:
        bar.update(0, completed=step)
    t0, losses, stale = time.perf_counter(), [], 0
    if history.get("stopped_early"):
        step = n_steps  # a finished run is not resumed past its early stop
    try:
        while step < n_steps:
            k = jax.random.fold_in(key, step)
            kb, kl = jax.random.split(k)
            params, opt_state, loss = train_step(params, opt_state, batches_fn(step, kb), kl)
            losses.append(loss)
            step += 1
            if step % val_every == 0 or step == n_steps:
                mean_loss = float(jnp.mean(jnp.stack(losses)))
                losses = []
                if not np.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"training loss became {mean_loss} at step {step}; lower the learning "
                        "rate or check the data normalisation"
                    )
                val = float(val_jit(params)) if val_jit is not None else math.nan
                history["step"].append(step)
                history["loss"].append(mean_loss)
                history["val"].append(val)
                if val_jit is None or val < best_val:
                    best_params, best_val, best_step, stale = params, val, step, 0
                else:
                    stale += 1
                if bar is not None:
                    info = f"loss {mean_loss:.4g}" + (f" val {val:.4g}" if val_jit else "")
                    bar.update(0, completed=step, info=info)
                if patience is not None and stale >= patience:
                    history["stopped_early"] = True
                    break
            if ckpt is not None and (step % checkpoint_every == 0):
                _save(ckpt, params, opt_state, best_params, best_val, best_step, step, history)
    finally:
        if bar is not None:
            bar.stop()
    history["seconds"] = history.get("seconds", 0.0) + time.perf_counter() - t0
    if val_jit is None:
        best_params, best_step = params, step
    if ckpt is not None:
        _save(ckpt, params, opt_state, best_params, best_val, best_step, step, history)
    return TrainResult(
        params=best_params,
        last_params=params,
        best_step=int(best_step),
        best_val=float(best_val) if math.isfinite(best_val) else math.nan,
        steps=int(step),
        history=history,
    )


def _save(path, params, opt_state, best_params, best_val, best_step, step, history):
    state = {
        "params": serialization.to_state_dict(params),
        "opt_state": serialization.to_state_dict(opt_state),
        "best_params": serialization.to_state_dict(best_params),
        "best_val": float(best_val),
        "best_step": int(best_step),
        "step": int(step),
        "history_step": np.asarray(history["step"], np.int64),
        "history_loss": np.asarray(history["loss"], np.float64),
        "history_val": np.asarray(history["val"], np.float64),
        "stopped_early": int(history["stopped_early"]),
        "seconds": float(history.get("seconds", 0.0)),
    }
    blob = serialization.msgpack_serialize(jax.tree.map(np.asarray, state))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, blob, overwrite=True)


def _restore(path, params, opt_state):
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
        p = serialization.from_state_dict(params, raw["params"])
        o = serialization.from_state_dict(opt_state, raw["opt_state"])
        b = serialization.from_state_dict(params, raw["best_params"])
        for new, old in ((p, params), (b, params)):
            for x, y in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True):
                if np.shape(x) != np.shape(y):
                    raise ValueError(f"parameter shape {np.shape(x)} != {np.shape(y)}")
    except Exception as err:
        raise CheckpointError(
            f"cannot resume from {path}: {type(err).__name__}: {err} (delete it to start over)"
        ) from None
    history = {
        "step": [int(s) for s in np.atleast_1d(raw["history_step"])],
        "loss": [float(s) for s in np.atleast_1d(raw["history_loss"])],
        "val": [float(s) for s in np.atleast_1d(raw["history_val"])],
        "stopped_early": bool(raw["stopped_early"]),
        "seconds": float(raw["seconds"]),
    }
    p = jax.tree.map(jnp.asarray, p)
    b = jax.tree.map(jnp.asarray, b)
    o = jax.tree.map(jnp.asarray, o)
    return p, o, b, float(raw["best_val"]), int(raw["best_step"]), int(raw["step"]), history
