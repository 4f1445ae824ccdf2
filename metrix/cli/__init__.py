"""The ``metrix`` command: ``eval``, ``list``, ``demo``, ``fid``, ``bertscore`` (see docs/cli.md).

The entry point is :func:`metrix.cli.main.main` (console script ``metrix``, ``python -m metrix``).
"""
