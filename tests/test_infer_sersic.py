"""fit_sersic on GalSim-simulated noisy Sersic x Moffat stamps with known truth; bad input; CLI.

Small scale (24 galaxies, 32x32): the coverage over >= 200 galaxies is in benchmarks/fit.py.
All fits share one static plan and chunk size, so the kernel compiles once for the module.
"""

import h5py
import numpy as np
import pytest

import jaxsky
from jaxsky import cli
from jaxsky.infer import FLAGS, PARAMS, SERSIC_CONFIG, fit_sersic, sersic_plan
from jaxsky.testing import galsim_sersic_stamps

N, SCALE, NGAL = 32, 0.2, 24
PSF_BETA, PSF_FWHM = 3.0, 0.7
CONFIG = SERSIC_CONFIG._replace(chunk_size=8)


def simulate(ngal, seed, nx=N):
    """GalSim truth: SNR 20-200 (optimal), n in {0.6, 1, 2, 3.5}, |g| <= 0.3."""
    st = galsim_sersic_stamps(
        ngal,
        seed=seed,
        nx=nx,
        scale=SCALE,
        psf_beta=PSF_BETA,
        psf_fwhm=PSF_FWHM,
        flux=(500, 3000),
        hlr=(0.3, 0.7),
        sersic_n=(0.6, 1.0, 2.0, 3.5),
        g_max=0.3,
    )
    return st.truth, st.images, st.variance


@pytest.fixture(scope="module")
def setup():
    psf = jaxsky.Moffat(PSF_BETA, fwhm=PSF_FWHM)
    # no alias rings: a 64-pixel FFT already holds these galaxies; compiles twice as fast
    plan = sersic_plan(psf, N, N, SCALE, 0.8)._replace(n_fft=64, alias_rings=0)
    truth, images, var = simulate(NGAL, seed=1)
    res = fit_sersic(images, var, psf, scale=SCALE, plan=plan, config=CONFIG)
    return psf, plan, truth, images, var, res


def test_recovery_and_zscores(setup):
    _, _, truth, _, _, res = setup
    ok = res["converged"]
    assert ok.mean() >= 0.9, res["flags"]
    assert set(res) >= set(PARAMS) | {f"{k}_err" for k in PARAMS} | {"converged", "chi2"}
    chi2_pix = res["chi2"][ok] / res["n_pix"][ok]
    assert np.all(np.abs(chi2_pix - 1) < 5 * np.sqrt(2 / N**2))  # good fits, not over-fitted
    zs = []
    for k in PARAMS:
        z = ((res[k] - truth[k]) / res[f"{k}_err"])[ok]
        zs.append(z)
        # mean z has sd 1/sqrt(24) ~ 0.2; var(z) of 24 unit normals lies in (0.4, 1.8) at ~99%
        assert abs(z.mean()) < 0.8, (k, z.mean())
        assert 0.3 < z.var() < 2.2, (k, z.var())
    zs = np.concatenate(zs)
    assert 0.6 < np.mean(zs**2) < 1.6  # pooled over parameters
    assert 0.5 < np.mean(np.abs(zs) < 1) < 0.85  # 68% intervals, loosely


def test_bad_pixels_and_flags(setup):
    psf, plan, truth, images, var, res = setup
    imgs = images[:8].copy()
    imgs[0, 3, 4] = np.nan  # one NaN pixel: masked, flagged, still a good fit
    imgs[1] = np.nan  # nothing left: flagged, not converged, never a silent number
    rng = np.random.default_rng(5)
    imgs[2] = rng.normal(0, np.sqrt(var[2]), imgs[2].shape)  # no galaxy: flux runs to 0
    out = fit_sersic(imgs, var[:8], psf, scale=SCALE, plan=plan, config=CONFIG)
    assert out["flags"][0] & FLAGS["masked_pixels"] and out["converged"][0]
    np.testing.assert_allclose(out["flux"][0], res["flux"][0], rtol=0.02)
    assert out["flags"][1] & FLAGS["too_few_pixels"] and not out["converged"][1]
    assert not out["converged"][2] and out["flags"][2] & (FLAGS["at_bound"] | 1)
    np.testing.assert_allclose(out["flux"][3:], res["flux"][3:8], rtol=1e-4)
    bad = np.broadcast_to(var[:8, None, None], imgs.shape).copy()
    bad[3, 5, 5] = -1.0
    with pytest.raises(ValueError, match="variance must be finite and > 0"):
        fit_sersic(images[:8], bad, psf, scale=SCALE, plan=plan, config=CONFIG)
    with pytest.raises(ValueError, match="variance has shape"):
        fit_sersic(images[:8], var[:5], psf, scale=SCALE, plan=plan, config=CONFIG)
    with pytest.raises(ValueError, match="plan is for"):
        fit_sersic(images[:8, :30], var[:8], psf, scale=SCALE, plan=plan, config=CONFIG)


def test_cli_fit_hdf5(setup, tmp_path, capsys):
    _, _, truth, images, var, res = setup
    stamps = tmp_path / "stamps.h5"
    with h5py.File(stamps, "w") as f:
        f["images"] = images[:8]
        f["noise_sigma"] = np.sqrt(var[:8])
        f.attrs["scale"] = SCALE
    out = tmp_path / "cat.csv"
    argv = [
        "fit", str(stamps), "--out", str(out), "--psf-fwhm", str(PSF_FWHM),
        "--psf-beta", str(PSF_BETA), "--chunk-size", "8", "--max-hlr", "0.8", "--n-fft", "64",
        "--alias-rings", "0",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    cat = np.genfromtxt(out, delimiter=",", names=True)
    assert len(cat) == 8 and "half_light_radius_err" in cat.dtype.names
    np.testing.assert_allclose(cat["flux"], res["flux"][:8], rtol=0.05)
    assert cli.main(argv) == 2  # existing output, no --overwrite
    assert "exists" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite", "--variance", "-1"]) == 2
    assert "variance" in capsys.readouterr().err


def test_cli_fit_fits(setup, tmp_path, capsys):
    fits = pytest.importorskip("astropy.io.fits")
    _, _, _, images, var, res = setup
    cube = fits.PrimaryHDU(images[:8].astype(np.float32))
    cube.header["PIXSCALE"] = SCALE
    vhdu = fits.ImageHDU(np.broadcast_to(var[:8, None, None], (8, N, N)), name="VARIANCE")
    stamps = tmp_path / "stamps.fits"
    fits.HDUList([cube, vhdu]).writeto(stamps)
    out = tmp_path / "cat.fits"
    argv = [
        "fit", str(stamps), "--out", str(out), "--psf-fwhm", str(PSF_FWHM),
        "--psf-beta", str(PSF_BETA), "--chunk-size", "8", "--max-hlr", "0.8", "--n-fft", "64",
        "--alias-rings", "0",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    cat = fits.getdata(out)
    np.testing.assert_allclose(cat["flux"], res["flux"][:8], rtol=0.05)
    assert set(np.unique(cat["converged"])) <= {0, 1}
    # a variance HDU of the wrong shape: one-line error, exit 2
    bad = tmp_path / "bad.fits"
    fits.HDUList([cube, fits.ImageHDU(np.ones((3, 5)), name="VARIANCE")]).writeto(bad)
    assert cli.main(["fit", str(bad), "--out", str(tmp_path / "x.csv"), *argv[4:]]) == 2
    assert "variance has shape" in capsys.readouterr().err
    missing = ["fit", str(tmp_path / "none.h5"), "--out", str(tmp_path / "y.csv")]
    assert cli.main([*missing, "--psf-fwhm", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_per_image_psf_matches_fitting_each_image_alone():
    """A batched PSF (one FWHM per stamp) fits each stamp as a lone fit with its own PSF does.

    GalSim truth with PSF FWHMs 0.5-0.95": a shared PSF would bias the sizes of the extremes by
    many sigma, so a mix-up of PSFs between stamps cannot pass.
    """
    import jax.numpy as jnp

    from jaxsky.infer.sersic import _psf_batch

    fwhm = np.array([0.5, 0.65, 0.8, 0.95])
    sims = [
        galsim_sersic_stamps(1, seed=10 + i, nx=N, scale=SCALE, psf_beta=PSF_BETA, psf_fwhm=f,
                             flux=(1500, 3000), hlr=(0.3, 0.6), sersic_n=(1.0, 2.0), g_max=0.3,
                             snr=(80, 120))
        for i, f in enumerate(fwhm)
    ]  # fmt: skip
    images = np.concatenate([s.images for s in sims])
    var = np.concatenate([np.atleast_1d(s.variance) for s in sims])
    psf = jaxsky.Moffat(PSF_BETA, fwhm=jnp.asarray(fwhm))  # per image: a batched profile
    plan = sersic_plan(jaxsky.Moffat(PSF_BETA, fwhm=fwhm.max()), N, N, SCALE, 0.8)
    plan = plan._replace(n_fft=64, alias_rings=0)
    both = fit_sersic(images, var, psf, scale=SCALE, plan=plan, config=CONFIG)
    alone = [
        fit_sersic(images[i], var[i], jaxsky.Moffat(PSF_BETA, fwhm=f), scale=SCALE, plan=plan,
                   config=CONFIG)
        for i, f in enumerate(fwhm)
    ]  # fmt: skip
    assert both["converged"].all(), both["flags"]
    for k in PARAMS:
        one = np.array([a[k][0] for a in alone])
        err = both[f"{k}_err"]
        # the same optimiser per galaxy: agreement far inside the statistical error
        np.testing.assert_array_less(np.abs(both[k] - one), 0.02 * err + 1e-6, err_msg=k)
        truth = np.array([s.truth[k][0] for s in sims])
        assert np.all(np.abs(both[k] - truth) < 5 * err), (k, both[k], truth, err)
    # a sequence of profiles is the same batched PSF; a wrong batch size is refused
    seq, _, flags = _psf_batch([jaxsky.Moffat(PSF_BETA, fwhm=f) for f in fwhm], 4)
    assert flags is not None and all(flags)
    np.testing.assert_allclose(seq.fwhm, fwhm)
    assert _psf_batch(jaxsky.Moffat(PSF_BETA, fwhm=0.7), 4)[2] is None  # shared: unchanged path
    with pytest.raises(ValueError, match="one entry per image"):
        fit_sersic(images[:3], var[:3], psf, scale=SCALE, plan=plan, config=CONFIG)
    with pytest.raises(ValueError, match="one per image"):
        fit_sersic(images, var, [jaxsky.Moffat(PSF_BETA, fwhm=0.7)] * 3, scale=SCALE)
