"""draw_batch's own XLA CPU client on small machines (jaxsky._cpu_pool.register_render_client).

Each case runs in a fresh process: the client is registered before JAX's backends start.
"""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
from _fresh import run_fresh

from jaxsky._cpu_pool import render_pool_size

_DRAW = textwrap.dedent(
    r"""
    import json, sys
    import numpy as np
    import jaxsky
    from jaxsky._cpu_pool import render_device
    rng = np.random.default_rng(3)
    b = 40
    gal = jaxsky.Exponential(scale_radius=rng.uniform(0.1, 1.0, b), flux=rng.uniform(1, 9, b))
    gal = gal.shear(g1=rng.uniform(-0.3, 0.3, b), g2=rng.uniform(-0.3, 0.3, b))
    psf = jaxsky.Gaussian(fwhm=0.3)  # a shared (unbatched) leaf
    imgs = jaxsky.draw_batch(jaxsky.Convolve(gal, psf), nx=33, ny=33, scale=0.2)
    np.save(sys.argv[1], np.asarray(imgs))
    dev = render_device()
    print("RESULT", json.dumps(None if dev is None else dev.client.platform))
    """
)


def _run(tmp_path, name, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "JAXSKY_RENDER_CLIENT")}
    env.update(env_extra)
    out = tmp_path / f"{name}.npy"
    platform = json.loads(run_fresh(_DRAW, out, env=env))
    return np.load(out), platform


def test_render_pool_size_leaves_the_planner_a_core():
    assert [render_pool_size(c) for c in (1, 2, 4, 16)] == [1, 1, 3, 15]


def test_draw_batch_on_the_render_client_matches_the_default_client(tmp_path):
    own, platform = _run(tmp_path, "own")
    default, none = _run(tmp_path, "default", JAXSKY_RENDER_CLIENT="0")
    assert none is None
    # Registered only where the default pool is oversubscribed (fewer than 8 cores).
    assert (platform == "cpu") == ((os.cpu_count() or 1) < 8)
    # The same programs on another client: the same images (to float32 rounding).
    peak = np.abs(default).max()
    assert own.shape == default.shape == (40, 33, 33)
    np.testing.assert_allclose(own, default, rtol=0, atol=1e-6 * peak)


def test_a_user_chosen_pool_is_left_alone(tmp_path):
    _, platform = _run(tmp_path, "nproc", NPROC="1")
    assert platform is None
