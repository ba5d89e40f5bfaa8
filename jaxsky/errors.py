"""Exceptions shared across jaxsky."""

__all__ = ["UserError", "DataError", "CheckpointError", "OutOfDomainError"]


class UserError(Exception):
    """A mistake in the command line or its inputs: the CLI reports it in one line, exit 2."""


class DataError(UserError, ValueError):
    """A data set or catalogue is missing, truncated, corrupted or in the wrong format."""


class CheckpointError(UserError, ValueError):
    """A saved emulator cannot be loaded (missing, corrupted, or from an incompatible version)."""


class OutOfDomainError(UserError, ValueError):
    """Parameters fall outside the domain an emulator was trained on."""
