"""Subcommands of the ``refquant`` command, one module each (see refquant.cli)."""
