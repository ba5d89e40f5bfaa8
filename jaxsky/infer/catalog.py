"""Reading stamp sets and writing fit catalogues (HDF5, FITS, CSV), atomically.

Stamp files: HDF5 with a dataset ``images`` (B, ny, nx) and ``variance`` (scalar, (B,),
(ny, nx) or (B, ny, nx)) or ``noise_sigma`` (B,), optional ``mask``, and the pixel scale in the
attribute ``scale`` (a jaxsky data set written by ``jaxsky generate`` also works: its noiseless
``images`` get noise only if you add it; its ``noise_sigma`` gives the variance). FITS: the
primary HDU (or the first image HDU) holds the cube; an HDU named ``VARIANCE`` is optional;
the header keyword ``PIXSCALE`` (or ``--scale``) gives the scale.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from jaxsky._io import atomic_write_bytes
from jaxsky.errors import DataError

__all__ = ["read_stamps", "write_catalog"]


def read_stamps(path) -> dict:
    """Return {"images": float[B, ny, nx], "variance": array or None, "mask": array or None,
    "scale": float or None} from an HDF5 or FITS stamp file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"stamp file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".hdf"):
        return _read_h5(path)
    if suffix in (".fits", ".fit", ".fz"):
        return _read_fits(path)
    raise DataError(f"{path}: unknown stamp format {suffix!r} (use .h5/.hdf5 or .fits)")


def _read_h5(path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "images" not in f:
                raise DataError(f"{path}: no 'images' dataset (found {sorted(f)})")
            out = {"images": np.asarray(f["images"], float)}
            if "variance" in f:
                out["variance"] = np.asarray(f["variance"], float)
            elif "noise_sigma" in f:
                out["variance"] = np.asarray(f["noise_sigma"], float) ** 2
            else:
                out["variance"] = None
            out["mask"] = np.asarray(f["mask"], bool) if "mask" in f else None
            sc = f.attrs.get("scale", f.attrs.get("pixel_scale"))
            out["scale"] = None if sc is None else float(sc)
            return out
    except OSError as err:
        raise DataError(f"{path}: cannot read as HDF5 ({err})") from None


def _astropy(what):
    try:
        import astropy  # noqa: F401
    except ModuleNotFoundError:
        raise DataError(f"{what} needs astropy: pip install astropy") from None


def _read_fits(path):
    _astropy("reading FITS stamps")
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            cube = next((h for h in hdul if h.data is not None and h.data.ndim in (2, 3)), None)
            if cube is None:
                raise DataError(f"{path}: no 2-D or 3-D image HDU")
            var = hdul["VARIANCE"].data if "VARIANCE" in hdul else None
            sc = cube.header.get("PIXSCALE")
            return {
                "images": np.asarray(cube.data, float),
                "variance": None if var is None else np.asarray(var, float),
                "mask": None,
                "scale": None if sc is None else float(sc),
            }
    except OSError as err:
        raise DataError(f"{path}: cannot read as FITS ({err})") from None


def write_catalog(path, columns: dict, *, overwrite: bool = False, meta: dict | None = None):
    """Write 1-D columns of equal length to .csv, .fits or .h5/.hdf5, atomically."""
    path = Path(path)
    cols = {k: np.asarray(v) for k, v in columns.items() if np.ndim(v) == 1}
    suffix = path.suffix.lower()
    if suffix == ".csv":
        names = list(cols)
        rows = np.column_stack([cols[k].astype(float) for k in names])
        buf = io.StringIO()
        np.savetxt(buf, rows, delimiter=",", header=",".join(names), comments="", fmt="%.9g")
        data = buf.getvalue().encode()
    elif suffix in (".fits", ".fit"):
        _astropy("writing a FITS catalogue")
        from astropy.table import Table

        buf = io.BytesIO()
        t = Table(cols)
        t.meta.update({k[:8].upper(): v for k, v in (meta or {}).items()})
        t.write(buf, format="fits")
        data = buf.getvalue()
    elif suffix in (".h5", ".hdf5"):
        import h5py

        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            for k, v in cols.items():
                f.create_dataset(k, data=v)
            for k, v in (meta or {}).items():
                f.attrs[k] = v
        data = buf.getvalue()
    else:
        raise DataError(f"{path}: unknown catalogue format {suffix!r} (.csv, .fits or .h5)")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data, overwrite=overwrite)
