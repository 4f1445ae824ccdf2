"""The ``metrix`` command: ``eval``, ``list``, ``demo``, ``fid``, ``bertscore`` (see docs/cli.md)."""

from metrix.cli.main import main

__all__ = ["main"]
