"""Generative-model metrics: FID, KID, Inception Score, precision/recall, density/coverage.

* :mod:`~metrix.generative.frechet`: the Frechet distance (float64 or float32).
* :mod:`~metrix.generative.fid`: ``FID`` and ``ReferenceStats``.
* :mod:`~metrix.generative.kid`: ``KID`` (unbiased polynomial MMD).
* :mod:`~metrix.generative.inception_score`: ``InceptionScore``.
* :mod:`~metrix.generative.manifold`: ``PrecisionRecall``, ``DensityCoverage`` (k-NN).
* :mod:`~metrix.generative.features`: the inputs they share (images or features, masks,
  feature buffers).
"""

import importlib

from metrix.generative.fid import FID, ReferenceStats
from metrix.generative.frechet import frechet_distance
from metrix.generative.inception_score import InceptionScore, inception_score
from metrix.generative.kid import KID, kid_subset_indices, polynomial_mmd
from metrix.generative.manifold import (
    DensityCoverage,
    PrecisionRecall,
    density_coverage,
    precision_recall,
)

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("frechet", "fid", "kid", "inception_score", "manifold",)
__all__ = [name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__]
