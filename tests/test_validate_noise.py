"""Noise-matched population checks: border noise estimate, seeded noise, noisy moments."""

import galsim
import jax
import numpy as np
import pytest

from jaxsky.data import Dataset
from jaxsky.validate.moments import batch_adaptive_moments
from jaxsky.validate.noise import add_noise, border_sigma, noisy_moments
from jaxsky.validate.report import measure

N, STAMP, SCALE = 48, 32, 0.2


def _galaxies(n=N, seed=3, gmax=0.08):
    """Clean GalSim exponentials (hlr 0.4-0.7", small shapes) and their parameters."""
    rng = np.random.default_rng(seed)
    hlr = rng.uniform(0.4, 0.7, n)
    g = rng.uniform(-gmax, gmax, (n, 2))
    ims = [
        galsim.Convolve(
            galsim.Exponential(half_light_radius=r, flux=1.0).shear(g1=a, g2=b),
            galsim.Gaussian(fwhm=0.6),
        )
        .drawImage(nx=STAMP, ny=STAMP, scale=SCALE)
        .array
        for r, (a, b) in zip(hlr, g)
    ]
    return np.stack(ims).astype(np.float64), np.column_stack([hlr, g])


def test_border_sigma_recovers_gaussian_noise():
    clean, _ = _galaxies(16)
    sig = np.linspace(0.002, 0.01, 16)
    noisy = clean + sig[:, None, None] * np.random.default_rng(0).normal(size=clean.shape)
    est = border_sigma(noisy)
    # MAD sigma of ~350 border pixels: ~6% scatter per stamp; the galaxy light adds ~0
    assert np.all(np.abs(est / sig - 1) < 0.25) and abs(np.mean(est / sig) - 1) < 0.05
    masked = noisy.copy()
    masked[:, :3, :10] = 0.0  # a masked neighbour in the frame: zeros are skipped
    assert np.allclose(border_sigma(masked), border_sigma(noisy), rtol=0.15)
    with pytest.raises(ValueError, match="width"):
        border_sigma(noisy, width=16)
    with pytest.raises(ValueError, match="shape"):
        border_sigma(noisy[0])


def test_add_noise_is_seeded_and_has_the_requested_sigma():
    clean, _ = _galaxies(4)
    sig = np.array([0.0, 0.01, 0.02, 0.05])
    a = np.asarray(add_noise(clean, sig, key=jax.random.key(1), n_real=50))
    b = np.asarray(add_noise(clean, sig, key=jax.random.key(1), n_real=50))
    c = np.asarray(add_noise(clean, sig, key=jax.random.key(2), n_real=50))
    assert a.shape == (50, 4, STAMP, STAMP)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    resid = (a - clean[None]).std(axis=(0, 2, 3))
    assert resid[0] < 1e-6  # sigma 0: float32 rounding only
    assert np.allclose(resid[1:], sig[1:], rtol=0.02)  # 51,200 pixels each
    with pytest.raises(ValueError, match="sigma"):
        add_noise(clean, -1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="n_real"):
        add_noise(clean, 0.01, key=jax.random.key(0), n_real=0)


def test_noisy_moments_without_noise_equal_moments_and_noise_biases_abs_g():
    clean, _ = _galaxies(8)
    m0 = batch_adaptive_moments(clean.astype(np.float32))
    z = noisy_moments(clean.astype(np.float32), 0.0, key=jax.random.key(0), n_real=2)
    assert np.allclose(z["sigma"], np.asarray(m0.sigma), rtol=1e-6)
    assert np.all(z["n_converged"] == 2)
    # noise makes adaptive-moment |g| larger on average (noise bias is positive for |g|)
    peak = clean.max(axis=(1, 2))
    nz = noisy_moments(clean.astype(np.float32), 0.1 * peak, key=jax.random.key(0), n_real=32)
    assert np.mean(nz["abs_g"]) > np.mean(np.hypot(m0.g1, m0.g2)) + 0.006


def test_noise_matched_population_check_is_like_for_like():
    """Truth = clean galaxies + noise; a perfect emulator (the clean images) fails the noiseless
    |g| check by noise bias and passes the noise-matched one."""
    clean, params = _galaxies(gmax=0.05)
    rng = np.random.default_rng(7)
    sig = 0.1 * clean.max(axis=(1, 2))  # peak S/N 10 per pixel
    truth = clean + sig[:, None, None] * rng.normal(size=clean.shape)
    data = Dataset.from_arrays(truth, params, ("hlr", "g1", "g2"), scale=SCALE)
    lookup = {r.tobytes(): im for r, im in zip(data.params, clean)}

    def perfect(theta):
        return np.stack([lookup[np.asarray(r, np.float64).tobytes()] for r in theta])

    res, _ = measure(
        perfect, data, split=None, hsm=False, noise_realisations=16, key=jax.random.key(5)
    )
    plain, matched = res["population"], res["population_noise_matched"]
    # the truth's one noise realisation per galaxy scatters its mean by ~paired_se: judge the
    # differences in units of the paired error of the per-galaxy differences
    g_plain, g_match = plain["abs_g"], matched["abs_g"]
    assert g_plain["diff"] < -4 * g_plain["paired_se"]  # noise bias of the truth alone
    assert abs(g_match["diff"]) < 2 * g_match["paired_se"], g_match
    assert abs(matched["sigma"]["diff"]) < 2 * matched["sigma"]["paired_se"]
    assert matched["noise"]["realisations"] == 16
    assert matched["noise"]["sigma_median"] == pytest.approx(np.median(sig), rel=0.1)
    with pytest.raises(ValueError, match="key"):
        measure(perfect, data, split=None, hsm=False, noise_realisations=4)
