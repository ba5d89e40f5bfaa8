"""Shear-calibration bias m and c: known shears through a model and through a reference.

Convention (Heymans et al. 2006, STEP): ``g_obs = (1 + m) g_true + c`` per component. Every
galaxy is drawn in a ring of ``n_rot`` orientations (intrinsic shape rotated by 180/n_rot
degrees in position angle; Nakajima & Bernstein 2007) so that shape noise cancels; each ring is
sheared by the four applied shears (+-g, +-g), measured, and the ring-averaged reduced shear
gives one slope and intercept per galaxy and component. m and c are the means over galaxies,
with standard errors from their scatter. Model and reference use the same galaxies, shears and
measurement, so :func:`compare_shear_calibration` also gives m_model - m_ref with paired errors.

A *renderer* is any callable ``render(theta float[B, P], g1 float[B], g2 float[B]) ->
images float[B, ny, nx]`` that applies the shear (g1, g2) on top of the galaxy described by
theta. :func:`param_shear_renderer` makes one from a model whose parameters contain the
intrinsic shear ``g1``, ``g2`` of a round profile (the ``paper`` and ``sersic`` presets).
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

__all__ = [
    "ShearCalibration",
    "compose_shear",
    "rotate_shape",
    "param_shear_renderer",
    "preset_shear_renderer",
    "calibration_thetas",
    "preset_psf_images",
    "measure_shear",
    "ring_images",
    "shear_calibration",
    "calibration_from_galaxies",
    "paired_bias",
    "compare_shear_calibration",
    "METHODS",
]

METHODS = ("moments", "moments-psf", "hsm")


class ShearCalibration(NamedTuple):
    """m, c per component with standard errors, and the per-galaxy values they came from."""

    m: np.ndarray  # float[2]
    m_err: np.ndarray
    c: np.ndarray
    c_err: np.ndarray
    m_gal: np.ndarray  # float[N, 2]
    c_gal: np.ndarray
    n_failed: int
    errors: dict

    def as_dict(self) -> dict:
        return {
            "m1": float(self.m[0]),
            "m2": float(self.m[1]),
            "m1_err": float(self.m_err[0]),
            "m2_err": float(self.m_err[1]),
            "c1": float(self.c[0]),
            "c2": float(self.c[1]),
            "c1_err": float(self.c_err[0]),
            "c2_err": float(self.c_err[1]),
            "n_galaxies": int(self.m_gal.shape[0]),
            "n_failed": self.n_failed,
            "errors": {str(k): v for k, v in list(self.errors.items())[:20]},
        }


def compose_shear(g1, g2, a1, a2):
    """Reduced shear of a round profile sheared by (g1, g2) then by (a1, a2).

    The product of the two shear matrices (DESIGN.md sec. 2) is a shear times a rotation;
    on a round profile only the shear survives, read off from M = A A^T as a distortion
    e = (M11 - M22, 2 M12) / tr M and converted to g = e / (1 + sqrt(1 - |e|^2)).
    """

    def mat(x1, x2):
        f = 1.0 / np.sqrt(1.0 - x1**2 - x2**2)
        return f * np.array([[1 + x1, x2], [x2, 1 - x1]])

    g1, g2, a1, a2 = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (g1, g2, a1, a2)))
    a = np.einsum("ij...,jk...->ik...", mat(a1, a2), mat(g1, g2))
    m = np.einsum("ij...,kj...->ik...", a, a)
    tr = m[0, 0] + m[1, 1]
    e1, e2 = (m[0, 0] - m[1, 1]) / tr, 2 * m[0, 1] / tr
    f = 1.0 / (1.0 + np.sqrt(1.0 - e1**2 - e2**2))
    return e1 * f, e2 * f


def rotate_shape(g1, g2, angle):
    """Shear of a shape rotated by ``angle`` radians in position angle (spin 2)."""
    c, s = np.cos(2 * angle), np.sin(2 * angle)
    return c * g1 - s * g2, s * g1 + c * g2


def param_shear_renderer(predict, param_names):
    """A renderer for a model ``predict(theta float[B, P]) -> images`` whose theta holds the
    intrinsic shear ``g1``, ``g2`` of a round profile: the applied shear is composed into
    those columns (:func:`compose_shear`); ``render.rotate`` rotates them for the ring."""
    names = tuple(param_names)
    if "g1" not in names or "g2" not in names:
        raise ValueError(
            f"param_shear_renderer needs parameters 'g1' and 'g2'; the model has {names}"
        )
    i1, i2 = names.index("g1"), names.index("g2")

    def render(theta, a1, a2):
        th = np.array(theta, dtype=np.float64, copy=True)
        th[:, i1], th[:, i2] = compose_shear(th[:, i1], th[:, i2], a1, a2)
        return np.asarray(predict(th))

    render.rotate = lambda theta, ang: _rotate_cols(theta, ang, i1, i2)
    return render


def preset_shear_renderer(preset, *, survey=None, extra=None, seed: int = 0):
    """The GalSim reference renderer of a data-set preset: the applied shear acts on the
    preset's GalSim galaxy itself (``galsim_galaxy(vals).shear(g1, g2)``), then the PSF.

    ``extra``: name -> float[N] per-galaxy inputs that are not parameters (``Design.extra``);
    rows of the theta handed to the renderer are the N galaxies tiled in blocks (row k is
    galaxy k % N), as :func:`shear_calibration` calls it.
    """
    import galsim

    params = getattr(preset, "parameters", None)
    names = tuple(p.name for p in params(survey)) if params else tuple(preset.param_names)
    if "g1" not in names or "g2" not in names:
        raise ValueError(f"preset {preset.name!r} has no g1, g2 parameters: {names}")
    i1, i2 = names.index("g1"), names.index("g2")
    ny, nx = preset.stamp_shape(survey)
    scale = preset.pixel_scale(survey)
    extra = {k: np.asarray(v) for k, v in (extra or {}).items()}

    def render(theta, a1, a2):
        out = np.empty((len(theta), ny, nx), np.float64)
        for k, (row, x1, x2) in enumerate(zip(np.asarray(theta), a1, a2)):
            vals = {n: float(v) for n, v in zip(names, row)}
            vals.update({n: float(v[k % len(v)]) for n, v in extra.items()})
            # the same galaxy in every orientation: seed from its parameters other than g1, g2
            key = np.delete(np.asarray(row, np.float64), [i1, i2]).tobytes()
            gal = preset.galsim_galaxy(vals, rng_seed=seed + zlib.crc32(key))
            gal = gal.shear(g1=float(x1), g2=float(x2))
            obj = galsim.Convolve(gal, preset.galsim_psf(vals, survey))
            out[k] = obj.drawImage(nx=nx, ny=ny, scale=scale).array
        return out

    render.rotate = lambda theta, ang: _rotate_cols(theta, ang, i1, i2)
    return render


def calibration_thetas(dataset, n: int, *, g: float = 0.02, split: str = "test") -> np.ndarray:
    """Up to ``n`` parameter rows of ``split`` whose intrinsic shear stays inside the
    declared g1/g2 ranges (and |g| < 0.95) after every rotation and applied shear."""
    part = dataset.split(split)
    g1, g2 = part.param("g1"), part.param("g2")
    gmod = np.hypot(g1, g2) + 2 * g  # rotations keep |g|; composition adds at most ~|a|
    lo1, hi1 = dataset.ranges["g1"]
    lo2, hi2 = dataset.ranges["g2"]
    lim = min(-lo1, hi1, -lo2, hi2, 0.95)
    keep = np.flatnonzero(gmod < lim)
    if keep.size == 0:
        raise ValueError(f"no {split} galaxy has |g| < {lim - 2 * g:.3f} for the calibration")
    return part.params[keep[:n]]


def preset_psf_images(preset, theta, *, survey=None) -> np.ndarray:
    """float64[N, ny, nx] effective PSF (pixel included, unit flux) of each row of theta
    float[N, P], as the preset's data sets store it: the PSF images HSM ``EstimateShear``
    needs for the ring test (:func:`shear_calibration` tiles them over orientations and
    shears; the PSF is round, so rotating the galaxy does not change it)."""
    params = getattr(preset, "parameters", None)
    names = tuple(p.name for p in params(survey)) if params else tuple(preset.param_names)
    theta = np.atleast_2d(np.asarray(theta, np.float64))
    if theta.shape[1] != len(names):
        raise ValueError(f"theta has {theta.shape[1]} columns; preset {preset.name!r} has {names}")
    ny, nx = preset.stamp_shape(survey)
    scale = preset.pixel_scale(survey)
    out = [
        preset.galsim_psf(dict(zip(names, map(float, row))), survey)
        .drawImage(nx=nx, ny=ny, scale=scale)
        .array
        for row in theta
    ]
    return np.stack(out).astype(np.float64)


def _rotate_cols(theta, angle, i1, i2):
    th = np.array(theta, dtype=np.float64, copy=True)
    th[:, i1], th[:, i2] = rotate_shape(th[:, i1], th[:, i2], angle)
    return th


def measure_shear(images, *, method: str = "moments", psfs=None):
    """Reduced-shear estimates g1, g2 float[B] and a failure dict {index: message}.

    ``"moments"``: observed JAX adaptive moments (no PSF correction); ``"moments-psf"``: the
    same moments minus the PSF's (:mod:`jaxsky.validate.psfcorr`; needs ``psfs``, fails where
    the image is not larger than its PSF); ``"hsm"``: GalSim re-Gaussianization with each
    image's PSF, its corrected distortion converted to g.

    ``psfs``: float[G, py, px] with G dividing B: image k has PSF ``k % G`` (G = B: one PSF per
    image; a ring stack of G galaxies: one per galaxy, each PSF's moments measured once).
    """
    if method == "moments":
        from jaxsky.validate.moments import batch_adaptive_moments

        m = batch_adaptive_moments(np.asarray(images))  # float64 only under x64
        ok = np.asarray(m.converged)
        g1 = np.where(ok, np.asarray(m.g1, np.float64), np.nan)
        g2 = np.where(ok, np.asarray(m.g2, np.float64), np.nan)
        return g1, g2, {int(i): "adaptive moments did not converge" for i in np.flatnonzero(~ok)}
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    if psfs is None:
        raise ValueError(f"method={method!r} needs psfs")
    if method == "moments-psf":
        from jaxsky.validate.psfcorr import batch_corrected_shape

        r = batch_corrected_shape(images, psfs)  # measures each of the G PSFs once
        ok = r.converged & np.isfinite(r.g1) & np.isfinite(r.g2)
        g1 = np.where(ok, r.g1.astype(np.float64), np.nan)
        g2 = np.where(ok, r.g2.astype(np.float64), np.nan)
        errs = {int(i): f"moments not converged or unresolved (R2={r.r2[i]:.3g})" for i in
                np.flatnonzero(~ok)}  # fmt: skip
        return g1, g2, errs
    from jaxsky.validate.hsm import hsm_shear
    from jaxsky.validate.moments import e_to_g

    psfs = np.asarray(psfs)
    if psfs.ndim == 3 and len(psfs) != len(images):  # EstimateShear measures PSFs per image
        if len(psfs) == 0 or len(images) % len(psfs):
            raise ValueError(f"{len(psfs)} psfs do not divide {len(images)} images")
        psfs = np.concatenate([psfs] * (len(images) // len(psfs)))
    r = hsm_shear(images, psfs)
    g1, g2 = e_to_g(r.shear1, r.shear2)
    return np.asarray(g1), np.asarray(g2), dict(r.errors)


def _applied(g):
    return np.array([(g, g), (g, -g), (-g, g), (-g, -g)], dtype=np.float64)


def ring_images(render, theta, *, g: float = 0.02, n_rot: int = 4, rotate=None) -> np.ndarray:
    """float[n_rot * 4 * N, ny, nx] images of the ring test: for each orientation r (outer)
    and applied shear s (:func:`_applied` order), the N galaxies of theta float[N, P].

    Render once and hand the stack to :func:`shear_calibration` (``images=``) to measure it
    with several methods or to keep it (a GalSim reference costs far more than a measurement).
    """
    theta = np.asarray(theta, np.float64)
    n = theta.shape[0]
    rot = rotate if rotate is not None else getattr(render, "rotate", None)
    if rot is None:
        raise ValueError("render has no .rotate; pass rotate=(theta, angle) -> theta")
    th_all, a_all = [], []
    for r in range(n_rot):
        th_r = rot(theta, np.pi * r / n_rot)
        for a in _applied(g):
            th_all.append(th_r)
            a_all.append(np.broadcast_to(a, (n, 2)))
    th_all = np.concatenate(th_all)
    a_all = np.concatenate(a_all)
    return np.asarray(render(th_all, a_all[:, 0], a_all[:, 1]))


def _ring_measure(images, n, *, g, n_rot, method, psfs):
    """g_hat float[N, 4 shears, 2] ring-averaged, and failures per galaxy."""
    if images.shape[0] != n_rot * 4 * n:
        raise ValueError(
            f"images has {images.shape[0]} stamps; the ring of {n} galaxies x {n_rot} "
            f"orientations x 4 shears needs {n_rot * 4 * n}"
        )
    # one PSF per galaxy: image k of the stack is galaxy k % n (measure_shear tiles them)
    p = None if psfs is None else np.asarray(psfs)
    if p is not None and len(p) != n:
        raise ValueError(f"psfs has {len(p)} PSFs; the ring of {n} galaxies needs one per galaxy")
    g1, g2, errs = measure_shear(images, method=method, psfs=p)
    gh = np.stack([g1, g2], -1).reshape(n_rot, 4, n, 2)
    failed = {}
    for flat_i, msg in errs.items():
        failed.setdefault(int(flat_i) % n, msg)
    return gh.mean(axis=0).transpose(1, 0, 2), _applied(g), failed


def _fit(gh, shears, g):
    # per galaxy: slope from the +g/-g contrast of each component, intercept from the mean
    m = np.empty(gh.shape[:1] + (2,))
    c = gh.mean(axis=1)
    for a in range(2):
        plus, minus = shears[:, a] > 0, shears[:, a] < 0
        m[:, a] = (gh[:, plus, a].mean(1) - gh[:, minus, a].mean(1)) / (2 * g) - 1.0
    return m, c


def _stats(x):
    x = x[np.all(np.isfinite(x), axis=1)]
    n = x.shape[0]
    err = x.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(2, np.nan)
    return x.mean(axis=0) if n else np.full(2, np.nan), err


def calibration_from_galaxies(m_gal, c_gal, errors=None) -> ShearCalibration:
    """:class:`ShearCalibration` from per-galaxy m, c float[N, 2] (NaN rows: failed)."""
    m_gal, c_gal = np.array(m_gal, np.float64), np.array(c_gal, np.float64)  # copies
    errors = dict(errors or {})
    bad = np.array(sorted(errors), dtype=int)
    m_gal[bad], c_gal[bad] = np.nan, np.nan
    m, m_err = _stats(m_gal)
    c, c_err = _stats(c_gal)
    return ShearCalibration(m, m_err, c, c_err, m_gal, c_gal, len(errors), errors)


def shear_calibration(
    render,
    theta,
    *,
    g: float = 0.02,
    n_rot: int = 4,
    method="moments",
    psfs=None,
    rotate=None,
    images=None,
) -> ShearCalibration:
    """m and c of ``render`` for the galaxies theta float[N, P] (see the module docstring).

    ``images``: the ring stack of :func:`ring_images` if already rendered (``render`` is then
    not called). Galaxies whose measurement failed in any orientation or shear are left out
    of the fit and counted in ``n_failed`` with their messages.
    """
    if not 0 < g < 0.2:
        raise ValueError(f"g={g} must be in (0, 0.2)")
    if n_rot < 2 or n_rot % 2:
        raise ValueError(f"n_rot={n_rot} must be an even number >= 2")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    if method != "moments" and psfs is None:
        raise ValueError(f"method={method!r} needs psfs (one PSF image per galaxy)")
    theta = np.asarray(theta, np.float64)
    if images is None:
        images = ring_images(render, theta, g=g, n_rot=n_rot, rotate=rotate)
    gh, shears, failed = _ring_measure(
        np.asarray(images), theta.shape[0], g=g, n_rot=n_rot, method=method, psfs=psfs
    )
    m_gal, c_gal = _fit(gh, shears, g)
    return calibration_from_galaxies(m_gal, c_gal, failed)


def paired_bias(ref: ShearCalibration, mod: ShearCalibration, keep=None) -> dict:
    """m_model - m_ref, the relative responsivity bias and c_model - c_ref on the same
    galaxies (``keep`` bool[N] selects a subset, e.g. resolved galaxies), with paired errors.

    ``dm_rel`` is (1 + m_model) / (1 + m_ref) - 1 per galaxy, averaged: the multiplicative
    bias the model would leave after a PSF correction (or calibration) that divides by the
    reference's responsivity. It equals ``dm`` for a PSF-corrected estimator (m_ref ~ 0) and
    is dm / (1 + m_ref) where observed moments are diluted by the PSF (1 + m_ref < 1).
    """
    n = ref.m_gal.shape[0]
    if mod.m_gal.shape[0] != n:
        raise ValueError(f"reference has {n} galaxies, model {mod.m_gal.shape[0]}")
    keep = np.ones(n, bool) if keep is None else np.asarray(keep, bool)
    if keep.shape != (n,):
        raise ValueError(f"keep must be bool[{n}], got shape {keep.shape}")
    dm, dm_err = _stats((mod.m_gal - ref.m_gal)[keep])
    dc, dc_err = _stats((mod.c_gal - ref.c_gal)[keep])
    rel, rel_err = _stats(((1.0 + mod.m_gal) / (1.0 + ref.m_gal) - 1.0)[keep])
    both = keep & np.all(np.isfinite(mod.m_gal - ref.m_gal), axis=1)
    return {
        "dm": dm.tolist(),
        "dm_err": dm_err.tolist(),
        "dm_rel": rel.tolist(),
        "dm_rel_err": rel_err.tolist(),
        "dc": dc.tolist(),
        "dc_err": dc_err.tolist(),
        "n_selected": int(keep.sum()),
        "n_used": int(both.sum()),
    }


def compare_shear_calibration(render_ref, render_model, theta, *, keep=None, **kw) -> dict:
    """m, c of a reference and a model on the same galaxies, and their paired differences
    (:func:`paired_bias`; ``keep`` bool[N] restricts the differences to a subset).

    ``kw`` go to :func:`shear_calibration`, except ``images_ref`` / ``images_model``: ring
    stacks already rendered (:func:`ring_images`) for the reference / the model.
    """
    im_ref, im_mod = kw.pop("images_ref", None), kw.pop("images_model", None)
    ref = shear_calibration(render_ref, theta, images=im_ref, **kw)
    mod = shear_calibration(render_model, theta, images=im_mod, **kw)
    return {
        **paired_bias(ref, mod, keep),
        "reference": ref.as_dict(),
        "model": mod.as_dict(),
        "g": kw.get("g", 0.02),
        "n_rot": kw.get("n_rot", 4),
        "method": kw.get("method", "moments"),
    }
