"""Bad input: a ValueError naming the parameter, the value and the allowed range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsky


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: jaxsky.Sersic(7.0, half_light_radius=1.0),
            r"n=7.0 is outside the allowed range \[0.3, 6.2\]",
        ),
        (lambda: jaxsky.Sersic(0.2, half_light_radius=1.0), r"n=0.2"),
        (
            lambda: jaxsky.Sersic(2.0, half_light_radius=-1.0),
            r"half_light_radius=-1.0 .*\(0, inf\)",
        ),
        (lambda: jaxsky.Sersic(2.0, half_light_radius=0.0), r"half_light_radius=0.0"),
        (lambda: jaxsky.Sersic(2.0, half_light_radius=1.0, flux=np.nan), r"flux=nan"),
        (lambda: jaxsky.Exponential(scale_radius=np.inf), r"scale_radius=inf"),
        (lambda: jaxsky.Gaussian(sigma=-2.0), r"sigma=-2.0"),
        (
            lambda: jaxsky.Moffat(1.05, fwhm=0.5),
            r"beta=1.05 is outside the allowed range \(1.1, 10\]",
        ),
        (lambda: jaxsky.Moffat(3.0, fwhm=-0.5), r"fwhm=-0.5"),
        (
            lambda: jaxsky.Gaussian(sigma=1.0).shear(g1=0.8, g2=0.6),
            r"\|g\|=1.0 is outside the allowed range \[0, 1\)",
        ),
        (lambda: jaxsky.Gaussian(sigma=1.0).shear(g1=1.2), r"\|g\|=1.2"),
        (lambda: jaxsky.Gaussian(sigma=1.0).shift(np.nan, 0.0), r"dx=nan"),
        (lambda: jaxsky.Gaussian(sigma=1.0).dilate(0.0), r"scale=0.0"),
        (lambda: jaxsky.Sersic(np.array([1.0, 9.0]), half_light_radius=1.0), r"n=9.0"),
    ],
)
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_size_arguments():
    with pytest.raises(TypeError, match="exactly one of"):
        jaxsky.Gaussian(sigma=1.0, fwhm=2.0)
    with pytest.raises(TypeError, match="exactly one of"):
        jaxsky.Sersic(1.0)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(nx=0, ny=10, scale=0.2), r"nx=0 is outside the allowed range \[1, inf\)"),
        (dict(nx=10, ny=-3, scale=0.2), r"ny=-3"),
        (dict(nx=10.5, ny=10, scale=0.2), r"nx=10.5 must be a Python int"),
        (dict(nx=10, ny=10, scale=0.0), r"scale=0.0 is outside the allowed range \(0, inf\)"),
        (dict(nx=10, ny=10, scale=np.nan), r"scale=nan"),
        (dict(nx=10, ny=10, scale=0.2, method="phot"), r"method='phot' is not one of"),
    ],
)
def test_bad_draw_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        jaxsky.draw(jaxsky.Gaussian(sigma=0.5), **kw)


def test_traced_without_plan_is_a_clear_error():
    f = jax.jit(lambda s: jaxsky.draw(jaxsky.Gaussian(sigma=s), nx=8, ny=8, scale=0.2))
    with pytest.raises(ValueError, match="needs a static plan"):
        f(0.5)


def test_plan_mismatch():
    plan = jaxsky.make_plan(jaxsky.Gaussian(sigma=0.5), 8, 8, 0.2)
    with pytest.raises(ValueError, match="plan is for nx=8"):
        jaxsky.draw(jaxsky.Gaussian(sigma=0.5), nx=9, ny=8, scale=0.2, plan=plan)


def test_checked_mode_under_jit_and_vmap():
    """Traced values skip eager checks; jaxsky.checked turns them into checkify errors."""
    plan = jaxsky.DrawPlan(16, 16, 0.2, n_fft=32, k_fold=2)

    def render(n, hlr, g1):
        obj = jaxsky.Sersic(n, half_light_radius=hlr).shear(g1=g1, g2=0.0)
        return jaxsky.draw(obj, nx=16, ny=16, scale=0.2, plan=plan)

    f = jax.jit(jaxsky.checked(render))
    err, img = f(2.0, 0.5, 0.1)
    assert err.get() is None and np.isfinite(np.asarray(img)).all()
    err, _ = f(8.0, 0.5, 0.1)
    assert "n=" in err.get() and "[0.3, 6.2]" in err.get()
    with pytest.raises(Exception, match="n="):
        err.throw()
    err, _ = f(2.0, 0.5, 1.5)
    assert "|g|" in err.get()
    err, _ = jax.vmap(jaxsky.checked(render))(
        jnp.array([2.0, 3.0]), jnp.array([0.5, -1.0]), jnp.zeros(2)
    )
    assert "half_light_radius" in err.get()
