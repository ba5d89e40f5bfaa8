"""Posterior sampling adapters: NUTS through numpyro (the optional extra ``jaxsky[sampling]``).

Two ways in:

* :func:`nuts` samples any log density over a :class:`~jaxsky.infer.ParameterSpace`: it runs in
  the unconstrained space with the bijections' log-Jacobian added, and returns physical draws;
* or write your own numpyro model and call a jaxsky forward model inside it, adding the image
  likelihood with :func:`image_factor` (see ``examples/nuts_numpyro.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxsky.infer.likelihood import gaussian_loglike

__all__ = ["require_numpyro", "unconstrained_log_density", "nuts", "image_factor"]


def require_numpyro():
    """Import numpyro or raise an ImportError that says how to install it."""
    try:
        import numpyro
    except ModuleNotFoundError:
        raise ImportError(
            "NUTS sampling needs numpyro, an optional dependency: "
            "pip install 'jaxsky[sampling]' (or pip install numpyro)"
        ) from None
    return numpyro


def unconstrained_log_density(log_density: Callable, space) -> Callable:
    """``u -> log_density(x(u)) + log|det dx/du|``: the density a sampler in u must target."""

    def f(u):
        return log_density(space.to_physical(u)) + space.log_det_jacobian(u)

    return f


def nuts(
    log_density: Callable[[jax.Array], jax.Array],
    space,
    init: jax.Array,
    *,
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 1,
    max_tree_depth: int = 8,
    progress_bar: bool = False,
) -> dict[str, jax.Array]:
    """Draw from ``exp(log_density(x))`` with numpyro's NUTS in the unconstrained space.

    Args:
      log_density: physical float[P] -> scalar (log likelihood + log prior).
      space: :class:`~jaxsky.infer.ParameterSpace` with the bijections.
      init: float[P] physical starting point (e.g. a MAP fit), or float[num_chains, P].
      key: PRNG key (keyword-only).
    Returns:
      {name: float[num_chains * num_samples]} physical draws, plus ``"diverging"`` (bool).
    """
    require_numpyro()
    from numpyro.infer import MCMC, NUTS

    target = unconstrained_log_density(log_density, space)
    kernel = NUTS(potential_fn=lambda u: -target(u), max_tree_depth=max_tree_depth)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        progress_bar=progress_bar,
        chain_method="sequential" if num_chains > 1 else "parallel",
    )
    u0 = space.to_unconstrained(jnp.asarray(init, jnp.result_type(float)))
    if num_chains > 1 and u0.ndim == 1:
        u0 = jnp.broadcast_to(u0, (num_chains, u0.shape[0]))
    mcmc.run(key, init_params=u0, extra_fields=("diverging",))
    x = jax.vmap(space.to_physical)(mcmc.get_samples())
    out = space.as_dict(x)
    out["diverging"] = mcmc.get_extra_fields()["diverging"]
    return out


def image_factor(name: str, model_image, data, ivar):
    """Inside a numpyro model: add the Gaussian log-likelihood of an observed stamp.

    ``ivar`` float[ny, nx] is the inverse variance (0 = masked), e.g. from
    :func:`~jaxsky.infer.prepare_stamps`.
    """
    numpyro = require_numpyro()
    numpyro.factor(name, gaussian_loglike(model_image, data, ivar))
