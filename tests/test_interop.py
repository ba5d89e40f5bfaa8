"""GalSim interoperability: stamps exported as InterpolatedImage, GSObjects in both directions."""

import galsim
import numpy as np
import pytest

import jaxsky as js
from jaxsky.interop import from_galsim, to_galsim, to_interpolated_image


def _stamp():
    gal = js.Sersic(n=2.5, half_light_radius=0.5, flux=100.0).shear(g1=0.2, g2=-0.1)
    return np.asarray(
        js.draw(js.Convolve(gal, js.Moffat(beta=3.0, fwhm=0.7)), nx=48, ny=48, scale=0.2)
    )


def test_interpolated_image_round_trip_and_shift():
    im = _stamp()
    ii = to_interpolated_image(im, scale=0.2)
    back = ii.drawImage(nx=48, ny=48, scale=0.2, method="no_pixel").array
    # Drawing at the native grid reproduces the samples (interpolant passes through them).
    assert np.max(np.abs(back - im)) < 1e-6 * im.max()
    assert ii.flux == pytest.approx(im.sum(), rel=1e-6)
    # A one-pixel shift in GalSim moves the stamp by one pixel: pixel grid and centre agree.
    moved = ii.shift(0.2, 0.0).drawImage(nx=48, ny=48, scale=0.2, method="no_pixel").array
    assert np.max(np.abs(moved[:, 1:] - im[:, :-1])) < 1e-6 * im.max()
    assert to_interpolated_image(im, scale=0.2, flux=7.0).flux == pytest.approx(7.0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(image=np.ones(5), scale=0.2), "2-d"),
        (dict(image=np.full((4, 4), np.nan), scale=0.2), "NaN"),
        (dict(image=np.ones((4, 4)), scale=0.0), "scale=0.0"),
    ],
)
def test_interpolated_image_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        to_interpolated_image(bad.pop("image"), **bad)


def test_galsim_objects_round_trip():
    gs = galsim.Convolve(
        galsim.Sersic(n=1.7, half_light_radius=0.4, flux=3.0).shear(g1=0.1, g2=0.2).shift(0.1, 0),
        galsim.Moffat(beta=2.5, fwhm=0.8),
    )
    ours = from_galsim(gs)
    ref = gs.drawImage(nx=32, ny=32, scale=0.2).array
    mine = np.asarray(js.draw(ours, nx=32, ny=32, scale=0.2))
    assert np.max(np.abs(mine - ref)) < 5e-4 * ref.max()  # GalSim default accuracy ~1e-4
    again = to_galsim(ours).drawImage(nx=32, ny=32, scale=0.2).array
    assert np.max(np.abs(again - ref)) < 1e-7 * ref.max()
