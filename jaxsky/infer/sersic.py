"""``fit_sersic``: batched Sersic x PSF maximum-likelihood fits of survey stamps.

Parameters (physical): flux (image units, summed over the plane), half_light_radius (arcsec),
n (Sersic index), g1, g2 (reduced shear of the galaxy's shape), dx, dy (arcsec, from the
stamp's true centre). They are fitted in an unconstrained space: log flux; a logistic box for
log half_light_radius and for n; a disc map for (g1, g2); a wide logistic box for dx, dy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsky.infer import priors
from jaxsky.infer._moments import sersic_init
from jaxsky.infer.likelihood import prepare_stamps
from jaxsky.infer.map import MapConfig, fit_map
from jaxsky.render import (
    SERSIC_N_RANGE,
    Convolve,
    DrawPlan,
    Sersic,
    draw,
    draw_batch,
    make_plan,
)
from jaxsky.render._planning import SIZE_CLASSES
from jaxsky.render.drawing import batch_flags

__all__ = [
    "SERSIC_CONFIG",
    "fit_sersic",
    "sersic_plan",
    "sersic_space",
    "sersic_model",
    "PARAMS",
    "FLAGS",
]

PARAMS = ("flux", "half_light_radius", "n", "g1", "g2", "dx", "dy")
#: per-galaxy flag bits in the ``flags`` column
FLAGS = {
    "not_converged": 1,  # Newton decrement above tolerance after the iteration budget
    "hessian_not_pd": 2,  # no Laplace errors (err columns are NaN)
    "at_bound": 4,  # a parameter sits at the edge of its allowed box
    "masked_pixels": 8,  # some pixels were masked (NaN image, mask, bad variance); informative
    "non_finite": 16,  # the loss or the parameters are not finite
    "too_few_pixels": 32,  # fewer usable pixels than 4x the number of parameters
}
_BAD = 1 | 2 | 4 | 16 | 32
#: default optimiser for fit_sersic (see benchmarks/fit.py for the speed/robustness trade-off)
#: (damped Gauss-Newton from adaptive moments; a galaxy stops once converged or stalled)
SERSIC_CONFIG = MapConfig(adam_steps=0, lbfgs_steps=0, newton_steps=20, ftol=1e-2)


@functools.lru_cache(maxsize=32)
def sersic_space(hlr_range, n_range, pos_range, g_max=0.95) -> priors.ParameterSpace:
    """The fit's :class:`~jaxsky.infer.priors.ParameterSpace` (cached so kernels are reused)."""
    return priors.ParameterSpace(
        [
            ("flux", priors.positive()),
            ("half_light_radius", priors.log_interval(*hlr_range)),
            ("n", priors.interval(*n_range)),
            (("g1", "g2"), priors.unit_disk(g_max)),
            ("dx", priors.interval(-pos_range, pos_range)),
            ("dy", priors.interval(-pos_range, pos_range)),
        ]
    )


def sersic_model(x, psf, plan: DrawPlan):
    """Render float[7] physical parameters (order :data:`PARAMS`) convolved with ``psf``."""
    gal = Sersic(x[2], half_light_radius=x[1], flux=x[0]).shear(g1=x[3], g2=x[4])
    gal = gal.shift(x[5], x[6])
    return draw(Convolve(gal, psf), nx=plan.nx, ny=plan.ny, scale=plan.scale, plan=plan)


@functools.lru_cache(maxsize=32)
def _neg_log_post(space, plan):
    def f(u, data, ivar, psf):
        model = sersic_model(space.to_physical(u), psf, plan)
        # chi^2 / 2 (the log(2 pi v) term is constant; leaving it out keeps float32 precise)
        return 0.5 * jnp.sum(ivar * (data - model) ** 2)

    def r(u, data, ivar, psf):
        return jnp.sqrt(ivar) * (data - sersic_model(space.to_physical(u), psf, plan))

    return f, r


@functools.lru_cache(maxsize=32)
def _neg_log_post_psf_batch(space, plan, treedef, flags):
    """:func:`_neg_log_post` with a per-galaxy PSF passed as its leaves.

    ``flags`` (one bool per PSF leaf, flatten order): True for the leaves carrying the batch
    axis; they come after (data, ivar) as per-galaxy data, the shared ones after them.
    """
    f, r = _neg_log_post(space, plan)
    n_batched = sum(flags)

    def psf_of(leaves):
        own, shared = iter(leaves[:n_batched]), iter(leaves[n_batched:])
        return jax.tree_util.tree_unflatten(treedef, [next(own if b else shared) for b in flags])

    def fb(u, data, ivar, *leaves):
        return f(u, data, ivar, psf_of(leaves))

    def rb(u, data, ivar, *leaves):
        return r(u, data, ivar, psf_of(leaves))

    return fb, rb


def _psf_batch(psf, nb: int):
    """(psf profile, treedef, per-leaf batch flags or None when the PSF is shared).

    A sequence of profiles is stacked into one batched profile (leading axis B).
    """
    if isinstance(psf, list | tuple):
        if len(psf) != nb:
            raise ValueError(f"psf is a sequence of {len(psf)} profiles; expected one per image")
        psf = jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *psf)
        flags = (True,) * len(jax.tree_util.tree_leaves(psf))
    else:
        flags = batch_flags(psf)
    leaves, treedef = jax.tree_util.tree_flatten(psf)
    if not any(flags):
        return psf, treedef, None
    sizes = {np.shape(x)[0] for x, b in zip(leaves, flags, strict=True) if b}
    if sizes != {nb}:
        raise ValueError(
            f"psf has a batch axis of size {sorted(sizes)}; a per-image PSF needs one entry per "
            f"image ({nb}), and a shared PSF no batch axis"
        )
    return psf, treedef, flags


def sersic_plan(psf, nx: int, ny: int, scale: float, hlr: float, *, fast: bool = False) -> DrawPlan:
    """Static FFT sizes for fits of n <= 4 galaxies up to half-light radius ``hlr`` (arcsec).

    Larger or steeper galaxies are still drawn, with a little more wrap-around error (partly
    removed by the renderer's alias correction); pass a bigger ``hlr`` for accuracy first.
    ``fast=True`` (the :func:`fit_sersic` default) uses the smallest FFT that holds the stamp
    with one ring of alias correction: several times cheaper, and at pixel-noise levels the
    fits keep their calibration (``benchmarks/fit.py``: 68% coverage 0.68, var z 0.9-1.1).
    """
    example = Convolve(Sersic(4.0, half_light_radius=float(hlr)), psf)
    plan = make_plan(example, nx, ny, scale)
    if fast:
        n_fft = int(SIZE_CLASSES[SIZE_CLASSES >= max(nx, ny)][0])
        return plan._replace(n_fft=n_fft, alias_rings=1)
    return plan._replace(n_fft=max(plan.n_fft, nx, ny))


def _auto_plan(psf, init_hlr, nx, ny, scale, hlr_range):
    """Fast plan for the 90th percentile of the initial sizes (x1.5)."""
    h = float(np.clip(1.5 * np.nanpercentile(init_hlr, 90), *hlr_range))
    return sersic_plan(psf, nx, ny, scale, h, fast=True)


def fit_sersic(
    images,
    variance,
    psf,
    *,
    scale: float,
    init=None,
    mask=None,
    plan: DrawPlan | None = None,
    hlr_range=None,
    n_range=(0.35, 6.0),
    config: MapConfig | None = None,
    bad_variance: str = "raise",
) -> dict[str, np.ndarray]:
    """Fit a sheared, shifted Sersic profile convolved with a known PSF to each stamp.

    Args:
      images: float[B, ny, nx] (or [ny, nx]) flux per pixel, background subtracted. NaN
        pixels are masked and flagged.
      variance: scalar, float[B], float[ny, nx] or float[B, ny, nx] pixel-noise variance;
        values <= 0 raise (or are masked with ``bad_variance="mask"``).
      psf: a jaxsky profile (e.g. ``jaxsky.Moffat(3.5, fwhm=0.7)``) shared by all stamps, or
        one PSF per stamp: a batched profile (parameters with a leading axis B, as for
        ``draw_batch``: ``jaxsky.Moffat(3.5, fwhm=fwhm_b)``) or a sequence of B profiles of
        one kind. Each stamp is then fitted exactly as alone with its own PSF.
      scale: pixel scale, arcsec/pixel.
      init: optional mapping {name: float[B]} of starting values (physical units); missing
        names come from adaptive moments.
      mask: optional bool array broadcastable to images (True = use the pixel).
      plan: static FFT sizes (``jaxsky.make_plan``); default: ``sersic_plan(..., fast=True)``
        for an n = 4 galaxy at 1.5x the 90th percentile of the initial sizes (the FFT period
        equals the stamp, one ring of alias correction); pass ``sersic_plan(...)`` for
        accuracy first.
      hlr_range: (lo, hi) arcsec box for the half-light radius; default
        (0.1 scale, 0.25 min(nx, ny) scale).
      n_range: box for the Sersic index, within the renderer's SERSIC_N_RANGE.
      config: optimiser settings (:class:`~jaxsky.infer.MapConfig`).
    Returns:
      dict of NumPy arrays, length B: each of :data:`PARAMS` and its ``*_err`` (1-sigma Laplace,
      NaN when unavailable), ``cov`` float[B, 7, 7], ``chi2``, ``n_pix`` (pixels used),
      ``n_steps`` (L-BFGS iterations), ``decrement`` (Newton decrement), ``flags`` (bits of
      :data:`FLAGS`) and ``converged`` (no flag other than ``masked_pixels``).
    """
    config = SERSIC_CONFIG if config is None else config
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"scale={scale} must be > 0 (arcsec/pixel)")
    stamps = prepare_stamps(images, variance, mask, bad_variance=bad_variance)
    data, ivar = stamps.data, stamps.ivar
    if data.ndim == 2:
        data, ivar = data[None], ivar[None]
    nb, ny, nx = data.shape
    lo_n, hi_n = (float(v) for v in n_range)
    if not SERSIC_N_RANGE[0] <= lo_n < hi_n <= SERSIC_N_RANGE[1]:
        raise ValueError(f"n_range={n_range} must lie within SERSIC_N_RANGE={SERSIC_N_RANGE}")
    if hlr_range is None:
        hlr_range = (0.1 * scale, 0.25 * min(nx, ny) * scale)
    hlr_range = tuple(float(v) for v in hlr_range)
    pos_range = 0.25 * min(nx, ny) * scale
    space = sersic_space(hlr_range, (lo_n, hi_n), pos_range)

    psf, treedef, flags = _psf_batch(psf, nb)
    if flags is None:
        psf_img = np.asarray(draw(psf, nx=nx, ny=ny, scale=scale))
        x0 = sersic_init(np.asarray(data), np.asarray(ivar), psf_img, scale)
    else:  # adaptive-moment start points, each with its own PSF
        psf_img = np.asarray(draw_batch(psf, nx=nx, ny=ny, scale=scale))
        x0 = sersic_init(np.asarray(data), np.asarray(ivar), psf_img, scale)
    if init is not None:
        for k, v in init.items():
            if k not in PARAMS:
                raise ValueError(f"init has unknown parameter {k!r}; expected some of {PARAMS}")
            x0[:, PARAMS.index(k)] = np.broadcast_to(np.asarray(v, float), (nb,))
    # keep starting points strictly inside the boxes
    iv = np.asarray(ivar)
    noise = np.sqrt(np.sum(np.where(iv > 0, 1.0 / np.where(iv > 0, iv, 1.0), 0.0), (1, 2)))
    x0[:, 0] = np.maximum(x0[:, 0], 1e-3 * noise + 1e-30)  # flux > 0: start at >= 1e-3 sigma
    x0[:, 1] = np.clip(x0[:, 1], hlr_range[0] * 1.05, hlr_range[1] * 0.95)
    x0[:, 2] = np.clip(x0[:, 2], lo_n + 0.05 * (hi_n - lo_n), hi_n - 0.05 * (hi_n - lo_n))
    x0[:, 5:7] = np.clip(x0[:, 5:7], -0.9 * pos_range, 0.9 * pos_range)
    if plan is None:
        plan = _auto_plan(psf, x0[:, 1], nx, ny, scale, hlr_range)
    elif (plan.nx, plan.ny) != (nx, ny) or not np.isclose(plan.scale, scale):
        raise ValueError(
            f"plan is for {plan.nx}x{plan.ny} at {plan.scale}; stamps are "
            f"{nx}x{ny} at scale={scale}"
        )
    u0 = np.asarray(space.to_unconstrained(jnp.asarray(x0)))
    if flags is None:
        nlp, resid = _neg_log_post(space, plan)
        per_image, shared = (data, ivar), (psf,)
    else:
        nlp, resid = _neg_log_post_psf_batch(space, plan, treedef, flags)
        leaves = jax.tree_util.tree_leaves(psf)
        per_image = (data, ivar, *(x for x, b in zip(leaves, flags, strict=True) if b))
        shared = tuple(x for x, b in zip(leaves, flags, strict=True) if not b)
    res = fit_map(
        nlp,
        u0,
        per_image,
        shared,
        to_physical=space.to_physical,
        residuals=resid,
        config=config,
    )
    return _catalogue(
        res, stamps.n_masked, ivar, hlr_range, (lo_n, hi_n), pos_range, config.decrement_tol
    )


def _catalogue(res, n_masked, ivar, hlr_range, n_range, pos_range, tol):
    x = res.x
    out = {k: x[:, i] for i, k in enumerate(PARAMS)}
    out.update({f"{k}_err": res.err[:, i] for i, k in enumerate(PARAMS)})
    n_pix = np.asarray((np.asarray(ivar) > 0).sum((1, 2)))
    flags = np.zeros(len(x), np.int32)
    flags |= np.where(res.decrement < tol, 0, 1).astype(np.int32)
    flags |= np.where(res.hess_ok, 0, 2).astype(np.int32)

    def near(v, lo, hi, frac=1e-3):
        return (v - lo < frac * (hi - lo)) | (hi - v < frac * (hi - lo))

    lh = np.log(x[:, 1])
    at = near(lh, *np.log(hlr_range)) | near(x[:, 2], *n_range)
    at |= np.hypot(x[:, 3], x[:, 4]) > 0.949
    at |= near(x[:, 5], -pos_range, pos_range) | near(x[:, 6], -pos_range, pos_range)
    flags |= np.where(at, 4, 0).astype(np.int32)
    flags |= np.where(np.asarray(n_masked).reshape(-1) > 0, 8, 0).astype(np.int32)
    finite = np.isfinite(res.loss) & np.all(np.isfinite(x), axis=1)
    flags |= np.where(finite, 0, 16).astype(np.int32)
    flags |= np.where(n_pix < 4 * len(PARAMS), 32, 0).astype(np.int32)
    out.update(
        cov=res.cov,
        chi2=2 * res.loss,
        n_pix=n_pix,
        n_steps=res.n_steps,
        decrement=res.decrement,
        flags=flags,
        converged=(flags & _BAD) == 0,
    )
    return out
