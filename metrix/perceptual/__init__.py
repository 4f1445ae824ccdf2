"""Perceptual similarity: LPIPS metrics (:mod:`~metrix.perceptual.lpips`) and their maths
(:mod:`~metrix.perceptual.lpips_math`). The backbones and calibration files are in
:mod:`metrix.backbones.lpips_nets`.
"""

from metrix.perceptual.lpips import (
    LPIPS,
    LPIPSDistances,
    LPIPSFromFeatures,
    LPIPSState,
    LPIPSWithDistances,
)

__all__ = [
    "LPIPS",
    "LPIPSDistances",
    "LPIPSFromFeatures",
    "LPIPSState",
    "LPIPSWithDistances",
]
