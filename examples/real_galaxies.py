"""Build small real-galaxy sets (cosmos-real and xdf presets) and save a gallery PNG.

python examples/real_galaxies.py --out real_galaxies.png [--catalog DIR_OR_FILE] [--n 5]

Top rows: real HST galaxies of a GalSim RealGalaxyCatalog (default: the 5-galaxy AEGIS test
catalogue in tests/data) at HST resolution, then PSF-matched to an LSST-like survey. Bottom
rows: isolated galaxies cut from scikit-image's Hubble XDF composite, at native resolution and
PSF-matched. Titles give each image's conditioning parameters (the same galaxy's).
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import numpy as np

from jaxsky._io import atomic_write_bytes
from jaxsky.data.presets.base import Survey
from jaxsky.data.real import XDF, CosmosReal

AEGIS = Path(__file__).resolve().parents[1] / "tests" / "data" / "AEGIS_F814w_catalog.fits"
LSST = Survey(
    name="lsst", scale=0.2, stamp=32, psf_family="moffat", psf_fwhm=(0.6, 0.9), psf_beta=3.5
)
HST = Survey(name="hst", scale=0.03, stamp=96, psf_family="airy", psf_fwhm=(0.15, 0.15))


def build(preset, n, seed, survey):
    """Images float32[n, ny, nx] and params float64[n, P] of a small set."""
    design = preset.design(n, seed=seed, survey=survey)
    images = np.stack(
        [preset.simulate(design, i, seed=seed, survey=survey).image for i in range(n)]
    )
    return images, design.params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="real_galaxies.png")
    ap.add_argument("--catalog", default=str(AEGIS), help="RealGalaxyCatalog file or directory")
    ap.add_argument("--n", type=int, default=5, help="galaxies per row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise SystemExit(f"error: {out} exists; pass --overwrite to replace it")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # AEGIS lacks its noise-correlation file
        real = CosmosReal(catalog=args.catalog, replace=False, noise_pad=True)
    n = min(args.n, real.catalog.n)
    xdf = XDF()
    rows = [
        ('cosmos-real, HST-like 0.03"', real, HST),
        ("cosmos-real -> LSST-like", real, LSST),
        ('xdf, native 0.138"', xdf, None),
        ("xdf -> LSST-like", xdf, LSST),
    ]
    fig, axes = plt.subplots(len(rows), n, figsize=(2.0 * n, 2.2 * len(rows)), squeeze=False)
    for r, (label, preset, survey) in enumerate(rows):
        images, params = build(preset, n, args.seed, survey)
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.arcsinh(images[c] / (0.02 * images[c].max())), origin="lower", cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                ", ".join(
                    f"{k}={v:.3g}" for k, v in zip(preset.param_names, params[c], strict=True)
                ),
                fontsize=6,
            )
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue(), overwrite=args.overwrite)
    print(f"wrote {out}: {n} galaxies per row; xdf kept {len(xdf.cutouts.params)} sources")


if __name__ == "__main__":
    main()
