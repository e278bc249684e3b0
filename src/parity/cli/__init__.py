"""The ``parity`` command."""
