"""Per-image accuracy metrics, distributions, residual power spectra and parameter binning.

All functions take numpy-compatible arrays: ``truth`` and ``pred`` float[B, ny, nx] in the same
flux units, ``params`` float64[B, P]. Shape metrics use the JAX adaptive moments of
:mod:`jaxsky.validate.moments` on both image sets (same pipeline, so differences are the
emulator's), with non-converged measurements NaN and counted.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "image_metrics",
    "moment_metrics",
    "pixel_histograms",
    "power_spectrum",
    "residual_power",
    "wasserstein_distances",
    "binned",
    "summarize",
]


def _pair(truth, pred):
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 3:
        raise ValueError(f"truth {t.shape} and pred {p.shape} must both be (B, ny, nx)")
    return t, p


def image_metrics(truth, pred) -> dict[str, np.ndarray]:
    """Pixel metrics per image (float64[B] each).

    ``mse``: mean squared residual; ``r2``: 1 - sum(res^2) / sum((truth - mean)^2);
    ``max_res_over_peak``: max |res| / max |truth|; ``rel_flux_err``: sum(pred)/sum(truth) - 1.
    """
    t, p = _pair(truth, pred)
    res = p - t
    ss_res = np.sum(res**2, axis=(1, 2))
    ss_tot = np.sum((t - t.mean(axis=(1, 2), keepdims=True)) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "mse": ss_res / res[0].size,
            "r2": 1.0 - ss_res / ss_tot,
            "max_res_over_peak": np.abs(res).max(axis=(1, 2)) / np.abs(t).max(axis=(1, 2)),
            "rel_flux_err": p.sum(axis=(1, 2)) / t.sum(axis=(1, 2)) - 1.0,
        }


def moment_metrics(truth, pred, **moment_kw) -> tuple[dict[str, np.ndarray], dict]:
    """Adaptive-moment size and shape differences per image, plus both sets' values.

    Returns (metrics, failures): ``dsigma_over_sigma`` = sigma_pred/sigma_true - 1, ``de1``,
    ``de2`` (distortion differences), ``dg1``, ``dg2``, and ``sigma_true``, ``e1_true`` ...
    ``sigma_pred`` ... (pixels; NaN where either measurement did not converge). ``failures``
    counts non-converged measurements in each set and lists their indices.
    """
    from jaxsky.validate.moments import batch_adaptive_moments

    t, p = _pair(truth, pred)
    mt = batch_adaptive_moments(t.astype(np.float32), **moment_kw)
    mp = batch_adaptive_moments(p.astype(np.float32), **moment_kw)
    ok_t = np.asarray(mt.converged) & np.isfinite(np.asarray(mt.sigma))
    ok_p = np.asarray(mp.converged) & np.isfinite(np.asarray(mp.sigma))
    ok = ok_t & ok_p
    out = {}
    for name, m, okk in (("true", mt, ok_t), ("pred", mp, ok_p)):
        for f in ("sigma", "e1", "e2", "g1", "g2"):
            out[f"{f}_{name}"] = np.where(okk, np.asarray(getattr(m, f), np.float64), np.nan)
    nan = np.where(ok, 1.0, np.nan)
    out["dsigma_over_sigma"] = nan * (out["sigma_pred"] / out["sigma_true"] - 1.0)
    for f in ("e1", "e2", "g1", "g2"):
        out[f"d{f}"] = nan * (out[f"{f}_pred"] - out[f"{f}_true"])
    failures = {
        "truth_not_converged": np.flatnonzero(~ok_t).tolist(),
        "pred_not_converged": np.flatnonzero(~ok_p).tolist(),
    }
    return out, failures


def pixel_histograms(truth, pred, *, bins: int = 50) -> dict:
    """Histograms of pixel intensity / per-image peak (shared bins over [-0.05, 1.05])."""
    t, p = _pair(truth, pred)
    peak = np.abs(t).max(axis=(1, 2), keepdims=True)
    peak = np.where(peak > 0, peak, 1.0)
    edges = np.linspace(-0.05, 1.05, bins + 1)
    ht, _ = np.histogram(np.clip(t / peak, -0.05, 1.05), bins=edges, density=True)
    hp, _ = np.histogram(np.clip(p / peak, -0.05, 1.05), bins=edges, density=True)
    return {"edges": edges, "truth": ht, "pred": hp}


def power_spectrum(images) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged power |FFT|^2 of float[B, ny, nx], averaged over the batch.

    Returns (k, P): k in cycles/pixel at integer annuli of the FFT grid (of the larger side),
    P the mean power per annulus (flux^2).
    """
    im = np.asarray(images, dtype=np.float64)
    ny, nx = im.shape[1:]
    power = np.mean(np.abs(np.fft.fft2(im)) ** 2, axis=0)
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    kr = np.hypot(kx, ky)
    n = max(nx, ny)
    ring = np.rint(kr * n).astype(int)
    n_ring = n // 2 + 1
    sums = np.bincount(ring.ravel(), weights=power.ravel(), minlength=n_ring)[:n_ring]
    counts = np.bincount(ring.ravel(), minlength=n_ring)[:n_ring]
    return np.arange(n_ring) / n, sums / np.maximum(counts, 1)


def residual_power(truth, pred) -> dict:
    """Azimuthal power spectra of truth and of the residual, and their ratio per k."""
    t, p = _pair(truth, pred)
    k, pt = power_spectrum(t)
    _, pr = power_spectrum(p - t)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"k": k, "truth": pt, "residual": pr, "ratio": pr / pt}


def wasserstein_distances(stats_true: dict, stats_pred: dict) -> dict[str, float]:
    """Wasserstein-1 distance between truth and prediction for each shared statistic.

    NaN entries (failed measurements) are left out of each sample; the result is NaN when a
    side has no finite values.
    """
    from scipy.stats import wasserstein_distance

    out = {}
    for k in stats_true:
        if k not in stats_pred:
            continue
        a = np.asarray(stats_true[k], dtype=np.float64).ravel()
        b = np.asarray(stats_pred[k], dtype=np.float64).ravel()
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        out[k] = float(wasserstein_distance(a, b)) if a.size and b.size else float("nan")
    return out


def binned(metrics: dict, params, param_names, *, n_bins: int = 5) -> dict:
    """Every metric binned along each parameter (equal-count bins).

    Returns ``{param: {"edges": [...], "count": [...], metric: {"median": [...],
    "mean_abs": [...]}}}`` as JSON-able lists; empty bins give NaN.
    """
    params = np.asarray(params, dtype=np.float64)
    out = {}
    for j, name in enumerate(param_names):
        x = params[:, j]
        edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
        if edges.size < 2:
            edges = np.array([x.min(), x.max() + 1e-12])
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
        nb = edges.size - 1
        entry = {"edges": edges.tolist(), "count": np.bincount(idx, minlength=nb).tolist()}
        for mname, vals in metrics.items():
            v = np.asarray(vals, dtype=np.float64)
            med, mab = [], []
            for b in range(nb):
                vb = v[(idx == b) & np.isfinite(v)]
                med.append(float(np.median(vb)) if vb.size else float("nan"))
                mab.append(float(np.mean(np.abs(vb))) if vb.size else float("nan"))
            entry[mname] = {"median": med, "mean_abs": mab}
        out[name] = entry
    return out


def summarize(metrics: dict) -> dict:
    """Mean, median, 95th percentile of |x|, max |x| and the finite count of each metric."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v, dtype=np.float64)
        f = v[np.isfinite(v)]
        if not f.size:
            out[k] = {"n": 0}
            continue
        out[k] = {
            "n": int(f.size),
            "mean": float(f.mean()),
            "median": float(np.median(f)),
            "p95_abs": float(np.quantile(np.abs(f), 0.95)),
            "max_abs": float(np.abs(f).max()),
        }
    return out
