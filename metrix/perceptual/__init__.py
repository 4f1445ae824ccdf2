"""Perceptual similarity: LPIPS metrics (:mod:`~metrix.perceptual.lpips`) and their maths
(:mod:`~metrix.perceptual.lpips_math`). The backbones and calibration files are in
:mod:`metrix.backbones.lpips_nets`.
"""

import importlib

from metrix.perceptual.lpips import (
    LPIPS,
    LPIPSDistances,
    LPIPSFromFeatures,
    LPIPSState,
    LpipsVgg,
    LPIPSWithDistances,
    default_weights_dir,
)

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("lpips",)
__all__ = [name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__]
