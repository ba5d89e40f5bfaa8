"""The jaxlib 0.10 CPU LAPACK deadlock work-around (jaxsky._cpu_pool).

Without it, several independent batched LAPACK calls in one program deadlock XLA's intra-op
thread pool on a machine with few cores (issue 7); the regression check runs such a program
in a subprocess, with the work-around that `import jaxsky` applies, under a timeout.
"""

from __future__ import annotations

import os
import textwrap

import pytest
from _fresh import run_fresh

from jaxsky.parallel import cpu_pool_workaround, jaxlib_affected


@pytest.mark.parametrize(
    "version,affected",
    [("0.10.0", True), ("0.10.2", True), ("0.11.0", True), ("0.11.1", False),
     ("0.9.2", False), ("1.0.0", False), ("dev", False)],
)  # fmt: skip
def test_jaxlib_affected_versions(version, affected):
    assert jaxlib_affected(version) is affected


def test_workaround_respects_existing_nproc_and_bad_input():
    env = {"NPROC": "3"}
    assert cpu_pool_workaround(environ=env) is False and env == {"NPROC": "3"}
    with pytest.raises(ValueError, match="min_threads=0"):
        cpu_pool_workaround(0, environ={})


# Four independent batched float64 triangular solves in one jitted program: with jaxlib 0.10
# on 2 cores this hung within a few calls (both pool threads in ParallelBatchMap).
_FOUR_SOLVES = textwrap.dedent(
    r"""
    import os, sys
    import jaxsky  # applies the work-around on import, before JAX starts
    applied = os.environ.get("NPROC") == "8"
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np
    from jax.scipy.linalg import solve_triangular
    rng = np.random.default_rng(0)
    Ls = [jnp.asarray(np.tril(rng.normal(size=(16, 300, 300))) + 5 * np.eye(300))
          for _ in range(4)]
    bs = [jnp.asarray(rng.normal(size=(16, 300))) for _ in range(4)]
    solve = jax.vmap(lambda L, b: solve_triangular(L, b, lower=True))
    f = jax.jit(lambda Ls, bs: sum(jnp.sum(solve(L, b)) for L, b in zip(Ls, bs)))
    for _ in range(30):
        got = float(f(Ls, bs))
    ref = sum(float(np.sum(np.linalg.solve(np.asarray(L), np.asarray(b)[..., None])))
              for L, b in zip(Ls, bs))
    assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref)), (got, ref)
    print("RESULT", applied, os.environ.get("NPROC"))
    """
)


def _four_solves(**env_extra):
    """Run the reproducer in a fresh process (NPROC and XLA_FLAGS unset unless given):
    (work-around applied, NPROC) as the strings it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", **env_extra)
    return tuple(run_fresh(_FOUR_SOLVES, env=env, timeout=240).split())


def test_batched_lapack_calls_do_not_deadlock_with_the_workaround():
    applied, nproc = _four_solves()
    needed = jaxlib_affected() and (os.cpu_count() or 1) < 8
    assert applied == str(needed)
    if needed:
        assert nproc == "8"


def test_a_one_thread_pool_runs_batched_lapack_calls_inline():
    # jaxlib splits a batched LAPACK call over the pool only when the pool has more than one
    # thread (lapack_kernels.cc: a chunk of the whole batch when num_threads <= 1), so
    # NPROC=1 cannot deadlock either (the README's thread-pool table; NPROC=2 hangs here).
    assert _four_solves(NPROC="1") == ("False", "1")  # the work-around left NPROC=1 alone


def test_ensemble_members_in_sequence_match_formula_and_differentiate(x64):
    """The ensemble evaluates members one at a time (scan + switch, so their LAPACK calls
    never run side by side); mean, variance and gradients must match the direct formulas."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.scipy.linalg import solve_triangular
    from jax.test_util import check_grads

    from jaxsky.emulators import EmulatorFamily, _base, register_family
    from jaxsky.emulators.ensemble import EnsembleState, predict, predict_var

    def mean(s, t):
        return (s["w"] @ jnp.concatenate([jnp.ones(1), t])).reshape(3, 3)

    def var(s, t):  # a GP-like variance through a triangular solve (a LAPACK call on CPU)
        v = solve_triangular(s["L"], jnp.tanh(s["k"] @ t), lower=True)
        return jnp.full((3, 3), 0.1 + jnp.sum(v**2))

    register_family(EmulatorFamily("pool-test", dict, None, mean, None, predict_var=var))
    try:
        rng = np.random.default_rng(3)
        members = tuple(
            {
                "w": jnp.asarray(rng.normal(size=(9, 3))),
                "L": jnp.asarray(np.tril(rng.normal(size=(5, 5))) + 4 * np.eye(5)),
                "k": jnp.asarray(rng.normal(size=(5, 2))),
            }
            for _ in range(3)
        )
        w = jnp.asarray([0.5, 0.3, 0.2])
        state = EnsembleState(members, w, jnp.asarray(1.5), families=("pool-test",) * 3)
        t = jnp.asarray([0.4, -0.7])
        mus = jnp.stack([mean(s, t) for s in members])
        ref_mean = jnp.tensordot(w, mus, axes=1)
        ref_var = 1.5**2 * jnp.tensordot(
            w, (mus - ref_mean) ** 2 + jnp.stack([var(s, t) for s in members]), axes=1
        )
        np.testing.assert_allclose(predict(state, t), ref_mean, rtol=1e-12)
        np.testing.assert_allclose(predict_var(state, t), ref_var, rtol=1e-12)
        batched = jax.jit(jax.vmap(predict_var, in_axes=(None, 0)))(state, jnp.stack([t, -t]))
        np.testing.assert_allclose(batched[0], ref_var, rtol=1e-12)
        check_grads(lambda x: predict(state, x), (t,), order=1, modes=("fwd", "rev"))
        check_grads(lambda x: predict_var(state, x), (t,), order=1, modes=("fwd", "rev"))
        # Edge of the domain: theta = 0 (tanh'(0) = 1) and large |theta| (tanh saturates).
        for edge in (jnp.zeros(2), jnp.asarray([40.0, -40.0])):
            g = jax.grad(lambda x: jnp.sum(predict_var(state, x)))(edge)
            assert np.all(np.isfinite(np.asarray(g)))
    finally:
        _base._FAMILIES.pop("pool-test", None)
