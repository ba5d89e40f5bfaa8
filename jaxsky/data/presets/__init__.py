"""Preset registry: analytic presets here, real-galaxy presets from :mod:`jaxsky.data.real`.

A preset factory is a callable returning a :class:`Preset`; catalogue presets accept a
``catalog=`` keyword (file or directory). ``get_preset(name, **kwargs)`` builds one.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxsky.data.presets.analytic import PRESETS as _ANALYTIC
from jaxsky.data.presets.base import Design, Preset, SimResult, Survey
from jaxsky.errors import UserError

__all__ = [
    "Preset",
    "Survey",
    "Design",
    "SimResult",
    "register_preset",
    "get_preset",
    "list_presets",
    "preset_factories",
]

_REGISTRY: dict[str, Callable[..., Preset]] = dict(_ANALYTIC)
_REAL_LOADED = False


def register_preset(preset_factory: Callable[..., Preset], name: str) -> None:
    """Make ``get_preset(name)`` call ``preset_factory(**kwargs)``."""
    if not callable(preset_factory):
        raise TypeError(f"preset_factory for {name!r} must be callable")
    _REGISTRY[str(name)] = preset_factory


def _load_real() -> None:
    global _REAL_LOADED
    if _REAL_LOADED:
        return
    _REAL_LOADED = True
    try:
        import jaxsky.data.real as real
    except ModuleNotFoundError as err:
        if err.name != "jaxsky.data.real":
            raise
        return
    for name, factory in getattr(real, "PRESETS", {}).items():
        _REGISTRY.setdefault(name, factory)


def preset_factories() -> dict[str, Callable[..., Preset]]:
    """name -> factory of every registered preset (real-galaxy presets included)."""
    _load_real()
    return dict(_REGISTRY)


def list_presets() -> list[str]:
    """Names of all registered presets."""
    return sorted(preset_factories())


def get_preset(name: str | Preset, **kwargs) -> Preset:
    """Build the preset ``name`` (a :class:`Preset` instance passes through).

    Keyword arguments go to the factory (e.g. ``catalog="path/to/catalogue"``).
    """
    if isinstance(name, Preset):
        return name
    factories = preset_factories()
    if name not in factories:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(factories)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return factories[name](**kwargs)
    except TypeError as err:
        msg = str(err)
        if "required" in msg and "catalog" in msg:
            raise UserError(f"preset {name!r} needs a catalogue: pass --catalog PATH") from None
        if "unexpected keyword" in msg:
            given = ", ".join(f"{k}=" for k in kwargs)
            raise UserError(f"preset {name!r} does not accept the options {given}") from None
        raise
