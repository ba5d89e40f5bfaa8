"""Sub-commands of the ``jaxsky`` CLI, one module each (see :mod:`jaxsky.cli`)."""
