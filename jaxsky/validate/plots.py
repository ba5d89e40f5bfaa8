"""PNG figures for validation reports (matplotlib, Agg backend; one function per figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "gallery",
    "residual_vs_params",
    "metric_histograms",
    "power_spectra",
    "learning_curves",
    "comparison",
    "population",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def gallery(truth, pred, path: Path, *, n: int = 6, titles=None) -> Path:
    """Rows truth / emulated / residual (residual on a symmetric scale, % of the peak)."""
    plt = _plt()
    n = min(n, len(truth))
    fig, ax = plt.subplots(3, n, figsize=(2.0 * n, 6.2), squeeze=False)
    for j in range(n):
        t, p = np.asarray(truth[j]), np.asarray(pred[j])
        peak = np.abs(t).max() or 1.0
        r = 100 * (p - t) / peak
        lim = max(np.abs(r).max(), 1e-6)
        ax[0, j].imshow(t, origin="lower", cmap="magma", vmin=0, vmax=peak)
        ax[1, j].imshow(p, origin="lower", cmap="magma", vmin=0, vmax=peak)
        im = ax[2, j].imshow(r, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=ax[2, j], fraction=0.046, label="% of peak" if j == n - 1 else None)
        if titles is not None:
            ax[0, j].set_title(titles[j], fontsize=7)
        for a in ax[:, j]:
            a.set_xticks([])
            a.set_yticks([])
    for a, lab in zip(ax[:, 0], ("truth", "emulated", "residual")):
        a.set_ylabel(lab)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def residual_vs_params(params, names, metrics: dict, path: Path, *, keys=None) -> Path:
    """Scatter of each metric against each parameter (rows metrics, columns parameters)."""
    plt = _plt()
    keys = keys or [k for k in ("max_res_over_peak", "dsigma_over_sigma", "de1") if k in metrics]
    params = np.asarray(params)
    fig, ax = plt.subplots(
        len(keys), len(names), figsize=(2.6 * len(names), 2.2 * len(keys)), squeeze=False
    )
    for i, k in enumerate(keys):
        v = np.asarray(metrics[k])
        for j, name in enumerate(names):
            ax[i, j].scatter(params[:, j], v, s=4, alpha=0.6)
            if i == len(keys) - 1:
                ax[i, j].set_xlabel(name)
            if j == 0:
                ax[i, j].set_ylabel(k, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def metric_histograms(metrics: dict, path: Path, *, keys=None) -> Path:
    """One histogram per metric (finite values)."""
    plt = _plt()
    keys = keys or list(metrics)
    ncol = 4
    nrow = -(-len(keys) // ncol)
    fig, ax = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.4 * nrow), squeeze=False)
    for a, k in zip(ax.ravel(), keys):
        v = np.asarray(metrics[k], dtype=float)
        a.hist(v[np.isfinite(v)], bins=30)
        a.set_title(k, fontsize=8)
    for a in ax.ravel()[len(keys) :]:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def power_spectra(ps: dict, hist: dict, path: Path) -> Path:
    """Residual and truth power spectra, and the pixel-intensity distributions."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    k = np.asarray(ps["k"])
    ax[0].loglog(k[1:], np.asarray(ps["truth"])[1:], label="truth")
    ax[0].loglog(k[1:], np.maximum(np.asarray(ps["residual"])[1:], 1e-30), label="residual")
    ax[0].set_xlabel("k [cycles/pixel]")
    ax[0].set_ylabel("azimuthal power")
    ax[0].legend()
    e = np.asarray(hist["edges"])
    c = 0.5 * (e[1:] + e[:-1])
    ax[1].semilogy(c, np.maximum(hist["truth"], 1e-6), label="truth")
    ax[1].semilogy(c, np.maximum(hist["pred"], 1e-6), "--", label="emulated")
    ax[1].set_xlabel("pixel / peak")
    ax[1].set_ylabel("density")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def learning_curves(rows: list, path: Path, *, metric: str = "max_res_over_peak") -> Path:
    """Median metric against training size, one line per latent dimension (or config)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    groups: dict = {}
    for r in rows:
        groups.setdefault(str(r.get("label", "")), []).append(r)
    for lab, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["n_train"])
        ax.loglog([r["n_train"] for r in rs], [r[metric] for r in rs], "o-", label=lab or None)
    ax.set_xlabel("training-set size")
    ax.set_ylabel(f"median {metric}")
    if any(groups):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def comparison(table: list[dict], path: Path, *, keys=None) -> Path:
    """Bar chart of a few summary metrics for several models."""
    plt = _plt()
    keys = keys or ["max_res_over_peak", "rel_flux_err", "dsigma_over_sigma", "de1", "de2"]
    names = [r["model"] for r in table]
    fig, ax = plt.subplots(1, len(keys), figsize=(2.8 * len(keys), 3.2), squeeze=False)
    for a, k in zip(ax[0], keys):
        a.bar(range(len(names)), [abs(r.get(k, np.nan)) for r in table])
        a.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
        a.set_yscale("log")
        a.set_title(f"median |{k}|", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def population(truth: dict, pred: dict, path: Path, *, bins: int = 20) -> Path:
    """Histograms of |g| and size (sigma, pixels), truth against emulated, with their means."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(8.0, 3.2))
    for a, (q, label) in zip(ax, (("abs_g", "|g| (observed moments)"), ("sigma", "sigma (px)"))):
        t, p = np.asarray(truth[q], float), np.asarray(pred[q], float)
        ok = np.isfinite(t) & np.isfinite(p)
        if not ok.any():
            continue
        edges = np.histogram_bin_edges(np.concatenate([t[ok], p[ok]]), bins=bins)
        a.hist(t[ok], bins=edges, histtype="step", lw=1.5, label="truth")
        a.hist(p[ok], bins=edges, histtype="step", lw=1.5, ls="--", label="emulated")
        a.axvline(t[ok].mean(), color="C0", lw=0.8)
        a.axvline(p[ok].mean(), color="C1", lw=0.8, ls="--")
        a.set_xlabel(label)
    ax[0].set_ylabel("galaxies")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
