"""Emulators: map physical parameters to galaxy images behind one pure-functional interface."""

from jaxsky.emulators._base import (
    Emulator,
    EmulatorFamily,
    families,
    fit,
    get_family,
    load,
    register_family,
)

__all__ = ["Emulator", "EmulatorFamily", "families", "fit", "get_family", "load", "register_family"]
