"""The planner's fast numpy paths against their plain formulas (same values, bit for bit).

The FFT-size planner (``_planning.plan_sizes_rings``) evaluates its numpy methods with
in-place arithmetic, an exp that keeps underflowing arguments off numpy's slow path, a
windowed search of the Fourier tables, a running argmax in the saddle estimate, a memo of
each transformation's singular values and a stash of the light at each profile's chosen
period. Each is checked here against the plain expression it replaces.
"""

import jax
import numpy as np
import pytest
import scipy.special as sps

import jaxsky
from jaxsky.render import _planning, _tables, profiles


def _np_tree(obj):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, float), obj)


def _paper_like(rng, b):
    g1, g2 = rng.uniform(-0.3, 0.3, (2, b))
    gal = jaxsky.Exponential(
        scale_radius=rng.uniform(0.1, 1.0, b), flux=rng.uniform(1e4, 1e5, b)
    ).shear(g1=g1, g2=g2)
    return jaxsky.Convolve(gal, jaxsky.Gaussian(fwhm=rng.uniform(0.2, 0.4, b)))


def _sersic_moffat(rng, b):
    g1, g2 = rng.uniform(-0.3, 0.3, (2, b))
    dx, dy = rng.uniform(-0.1, 0.1, (2, b))
    gal = (
        jaxsky.Sersic(rng.uniform(0.5, 6.0, b), half_light_radius=rng.uniform(0.1, 1.5, b))
        .shear(g1=g1, g2=g2)
        .shift(dx, dy)
    )
    psf = jaxsky.Moffat(rng.uniform(2, 5, b), fwhm=rng.uniform(0.5, 1.0, b))
    return jaxsky.Convolve(gal, psf)


def test_exp_inplace_is_np_exp():
    rng = np.random.default_rng(0)
    special = [np.nan, -np.inf, np.inf, 0.0, -700.0, -708.0, -745.1, -746.0, 709.0, 710.0]
    x = np.concatenate([rng.uniform(-900, 10, 4995), rng.uniform(-747, -699, 4995), special])
    rng.shuffle(x)
    with np.errstate(all="ignore"):
        want = np.exp(x)
        y = x.reshape(100, 100).copy()
        got = profiles._exp_inplace(y)
    assert got is y  # written in place
    np.testing.assert_array_equal(got.reshape(-1), want)
    # not C-contiguous, or not float64: the plain exp
    with np.errstate(all="ignore"):
        yf = np.asfortranarray(x.reshape(100, 100))
        np.testing.assert_array_equal(profiles._exp_inplace(yf), np.exp(yf))
    x32 = x[:50].astype(np.float32)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(profiles._exp_inplace(x32), np.exp(x32))


def test_inplace_falls_back_where_it_cannot_write():
    y = np.ones((3, 1))
    assert profiles._inplace(np.add, y, np.ones(4)).shape == (3, 4)  # broadcast grows
    assert profiles._inplace(np.add, np.ones(3), 1j).dtype == complex
    assert profiles._inplace(np.add, np.ones(3, np.float32), 1.0).dtype == np.float32
    y = np.full(3, 2.0)
    out = profiles._inplace(np.subtract, y, 5.0, swap=True)
    assert out is y and np.all(y == 3.0)


def _table_maxk_plain(name, p, threshold, tail=None):
    """The plain search: every u column of the interpolated rows."""
    z = _tables.table_numpy(name)
    pn, u, F = z["p"], z["u"], z["F"]
    i = np.clip(np.searchsorted(pn, p, side="right") - 1, 0, len(pn) - 2)
    slope = (F[i + 1] - F[i]) / (pn[i + 1] - pn[i])[:, None]
    rows = slope * (p - pn[i])[:, None] + F[i]
    rows = np.where((p <= pn[0])[:, None], F[0], np.where((p >= pn[-1])[:, None], F[-1], rows))
    above = np.abs(rows) >= threshold
    u_max = u[len(u) - 1 - np.argmax(above[:, ::-1], axis=-1)]
    if tail is not None:
        extra = np.log(np.maximum(np.abs(rows[:, -1]), threshold) / threshold) / tail
        u_max = np.where(above[:, -1], u[-1] + extra, u_max)
    return np.exp(u_max + (u[1] - u[0]))


@pytest.mark.parametrize("name, lo, hi", [("sersic", 0.3, 6.2), ("moffat", 1.1, 10.0)])
@pytest.mark.parametrize("threshold", [0.5, 1e-3, 1e-5, 1e-9, 1e-16, 0.0])
def test_table_maxk_windowed_search_is_plain_search(name, lo, hi, threshold):
    rng = np.random.default_rng(1)
    pn = _tables.table_numpy(name)["p"]
    p = np.concatenate([rng.uniform(lo - 0.1, hi + 0.1, 3000), pn, [lo, hi]])
    tail = 2.0 + 1.0 / p if name == "sersic" else None
    with np.errstate(all="ignore"):
        got = profiles._table_maxk(name, p, threshold, None if tail is None else lambda: tail)
        want = _table_maxk_plain(name, p, threshold, tail)
    np.testing.assert_array_equal(got, want)


def _saddle_plain(log_a, log_b, d, m=17):
    """The saddle estimate with np.argmax and np.take_along_axis (the plain composition)."""
    t = np.linspace(0.0, 1.0, m).reshape((m,) + (1,) * d.ndim)
    s = t * d
    with np.errstate(all="ignore"):
        la, lb = np.broadcast_arrays(log_a(s), log_b(d - s))
        g = la + lb
        j = np.argmax(np.where(np.isnan(g), -np.inf, g), axis=0)
        inner = (j > 0) & (j < m - 1)
        jc = np.clip(j, 1, m - 2)[None]

        def at(a, o):
            return np.take_along_axis(a, jc + o, axis=0)[0]

        h = d / (m - 1)
        c1, c2 = 0.5 * (at(g, 1) - at(g, -1)), at(g, 1) - 2 * at(g, 0) + at(g, -1)
        g_max = at(g, 0) - c1 * c1 / (2 * c2)
        s_max = (jc[0] - c1 / c2) * h
        da = (at(la, 1) - at(la, -1)) / (2 * h)
        db = (at(lb, 1) - at(lb, -1)) / (2 * h)
        curv_t = -da / s_max + db / (d - s_max)
        out = np.exp(g_max) * 2 * np.pi / np.sqrt(-c2 / (h * h) * curv_t)
        good = inner & (c2 < 0) & (curv_t > 0) & np.isfinite(out)
    return np.where(good, out, 0.0)


@pytest.mark.parametrize("make", [_paper_like, _sersic_moffat])
def test_saddle_is_plain_saddle(make):
    rng = np.random.default_rng(2)
    b = 64
    conv = _np_tree(make(rng, b))
    a, psf = conv.objs
    d = rng.uniform(0.5, 15.0, (14, b))
    got = conv._saddle_np(d, True)
    want = _saddle_plain(lambda s: a._log_sb_np(s, True), lambda s: psf._log_sb_np(s, True), d)
    assert np.count_nonzero(want) > 10  # the saddle is found, not only the ends
    np.testing.assert_array_equal(got, want)
    # _sb_np is the larger of the far field and the saddle light
    np.testing.assert_array_equal(conv._sb_np(d, True), np.maximum(conv._far_sb_np(d), want))


def test_saddle_two_gaussians_is_exact():
    # Laplace's method is exact for two Gaussians: (A * B)(d) is a Gaussian of variance
    # s_a^2 + s_b^2. The estimate takes the transverse curvature from differences at the
    # sample nearest the saddle: ~1% off.
    sa, sb = np.array([0.3, 0.5]), np.array([0.2, 0.4])
    conv = _np_tree(jaxsky.Convolve(jaxsky.Gaussian(sigma=sa), jaxsky.Gaussian(sigma=sb)))
    d = np.array([[1.0, 2.0], [1.7, 3.1]])
    v = sa**2 + sb**2
    want = np.exp(-0.5 * d * d / v) / (2 * np.pi * v)
    np.testing.assert_allclose(conv._saddle_np(d, True), want, rtol=0.02)


def test_peak_sb_is_plain_trapezoid():
    rng = np.random.default_rng(3)
    for obj in (_paper_like(rng, 64), _sersic_moffat(rng, 64)):
        obj = _np_tree(obj)
        a, b = obj.objs
        r = np.geomspace(1e-6, 1e4, 121)[:, None]
        with np.errstate(all="ignore"):
            y = a._sb_np(r, False) * b._sb_np(r, False) * 2 * np.pi * r * r
            want = np.trapezoid(y, np.log(r[:, 0]), axis=0)
            got = _planning._peak_sb(obj, 0.2)
        np.testing.assert_array_equal(got, want)


def test_singular_values_memo_follows_the_object():
    rng = np.random.default_rng(4)
    t = _np_tree(
        jaxsky.Exponential(scale_radius=np.full(5, 0.5)).shear(
            g1=rng.uniform(-0.4, 0.4, 5), g2=rng.uniform(-0.4, 0.4, 5)
        )
    )
    sv = t._singular_values()
    assert t._singular_values() is sv  # computed once per object
    np.testing.assert_array_equal(sv, t._singular_values_uncached())
    # new leaves make a new object, without the memo
    t2 = jax.tree_util.tree_map(lambda x: 2.0 * x, t)
    np.testing.assert_array_equal(t2._singular_values(), 2.0 * sv)
    sub = _planning._take(t, _planning._batch_flags(t), np.array([3, 1]))
    np.testing.assert_array_equal(sub._singular_values(), sv[[3, 1]])
    np.testing.assert_array_equal(sub._shift_np(), t._shift_np()[[3, 1]])
    # sub-batches carry the memo, indexed only where the leaves are batched (here a shared
    # Jacobian with a batch of 2: its (2,) singular values stay whole)
    t = _np_tree(jaxsky.Exponential(scale_radius=np.array([0.5, 0.7])).shear(g1=0.3, g2=0.1))
    sv = t._singular_values()
    sub = _planning._take(t, _planning._batch_flags(t), np.array([1]))
    assert "sv" in sub.__dict__["_np_memo_"]
    np.testing.assert_array_equal(sub._singular_values(), sv)
    np.testing.assert_array_equal(sub._singular_values(), sub._singular_values_uncached())


def test_sersic_memo_follows_the_object():
    def plain(n, re, r):
        b = profiles._sersic_b_np(n)
        log_i0 = 2 * n * np.log(b) - np.log(2 * np.pi * n * re * re) - sps.gammaln(2 * n)
        return log_i0 - b * (r / re) ** (1.0 / n)

    r = np.array([[0.1], [1.0], [3.0]])
    s = _np_tree(jaxsky.Sersic(np.array([0.7, 1.5, 4.0]), half_light_radius=np.full(3, 0.8)))
    n, re = s.n, s.half_light_radius  # as stored (float32 without jax's x64)
    np.testing.assert_allclose(s._log_unit_sb_np(r), plain(n, re, r), rtol=1e-14)
    assert s._b_np() is s._b_np()  # computed once per object
    np.testing.assert_allclose(s._log_unit_sb_np(r), plain(n, re, r), rtol=1e-14)
    # new leaves make a new object: b_n and the normalisation follow the new n
    s2 = jax.tree_util.tree_map(lambda x: x[::-1].copy() if np.ndim(x) else x, s)
    np.testing.assert_allclose(s2._log_unit_sb_np(r), plain(n[::-1], re, r), rtol=1e-14)
    np.testing.assert_allclose(
        s2._enclosed_np(r), sps.gammainc(2 * n[::-1], plain_b(n[::-1]) * (r / re) ** (1 / n[::-1]))
    )


def plain_b(n):
    return sps.gammaincinv(2.0 * n, 0.5)


@pytest.mark.parametrize("make, nx", [(_paper_like, 33), (_sersic_moffat, 64)])
def test_batch_plan_is_per_profile_plan(make, nx):
    # The searches vectorise over the batch and reuse the light stashed at each profile's
    # chosen period: planning a batch must give each profile its own plan.
    rng = np.random.default_rng(5)
    b = 12
    obj = _np_tree(make(rng, b))
    for gsp in (jaxsky.GSParams(1e-3, 1e-3, 1e-3), jaxsky.GSParams()):
        batch = _planning.plan_sizes_rings(obj, nx, nx, 0.2, gsp)
        flags = _planning._batch_flags(obj)
        for i in range(b):
            one = _planning.plan_sizes_rings(_planning._take(obj, flags, i), nx, nx, 0.2, gsp)
            assert [int(x[i]) for x in batch] == [int(np.ravel(x)[0]) for x in one]


def test_saddle_screen_keeps_the_plans(monkeypatch):
    # With a Gaussian PSF the planner evaluates the saddle light only for profiles that
    # have one at their nearest, middle or farthest copy distance; the plans must be those
    # of the exact estimate at every distance.
    rng = np.random.default_rng(11)
    b = 256
    g1, g2 = rng.uniform(-0.4, 0.4, (2, b))
    sersic = jaxsky.Sersic(rng.uniform(0.5, 6.0, b), half_light_radius=rng.uniform(0.05, 1.2, b))
    batches = {
        "paper": (_paper_like(rng, b), 33, 0.2),
        "sersic_gauss": (
            jaxsky.Convolve(sersic.shear(g1=g1, g2=g2), jaxsky.Gaussian(fwhm=0.7)),
            64,
            0.2,
        ),
        "hst_like": (
            jaxsky.Convolve(
                sersic.shear(g1=g1, g2=g2), jaxsky.Gaussian(fwhm=rng.uniform(0.5, 1, b))
            ),
            64,
            0.03,
        ),
    }
    calls = []
    screen = _planning._no_saddle

    def spy(saddle, d):
        out = screen(saddle, d)
        calls.append(out.mean())
        return out

    for name, (obj, nx, scale) in batches.items():
        host = _np_tree(obj)
        assert host._saddle_gaussian_np()
        monkeypatch.setattr(_planning, "_no_saddle", spy)
        fast = _planning.plan_sizes_rings(host, nx, nx, scale)
        monkeypatch.setattr(_planning, "_no_saddle", lambda s, d: np.zeros(d.shape[1], bool))
        exact = _planning.plan_sizes_rings(_np_tree(obj), nx, nx, scale)
        for a, e in zip(fast, exact):
            np.testing.assert_array_equal(a, e, err_msg=name)
    assert max(calls) > 0.5  # the screen did take most profiles out somewhere


def test_saddle_screen_only_with_gaussian_psfs():
    gal = jaxsky.Sersic(1.0, half_light_radius=0.5).shear(g1=0.2, g2=0.0)
    assert jaxsky.Convolve(gal, jaxsky.Gaussian(fwhm=0.3).shift(0.1, 0.0))._saddle_gaussian_np()
    assert not jaxsky.Convolve(gal, jaxsky.Moffat(3.0, fwhm=0.7))._saddle_gaussian_np()
    assert not jaxsky.Convolve(jaxsky.Gaussian(fwhm=0.3), gal)._saddle_gaussian_np()
