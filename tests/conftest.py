import jax
import pytest


@pytest.fixture
def x64():
    """Run a test in float64 (check_grads and tight GalSim comparisons need it)."""
    with jax.enable_x64(True):
        yield
