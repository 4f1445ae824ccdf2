"""Metric-learning losses and miners, as mergeable metrics and pure functions.

* :mod:`~metrix.metric_learning.distances`: pairwise distances, pair masks.
* :mod:`~metrix.metric_learning.miners`: which pairs / triplets a loss looks at.
* :mod:`~metrix.metric_learning.terms`: the state every loss shares (sums and counts of terms).
* :mod:`~metrix.metric_learning.pair_losses`: contrastive, triplet, NT-Xent, SupCon,
  multi-similarity and circle losses.
* :mod:`~metrix.metric_learning.proxy_losses`: ArcFace, CosFace, ProxyNCA, ProxyAnchor.
"""

import importlib

from metrix.metric_learning.distances import pair_masks, pairwise_distances
from metrix.metric_learning.miners import (
    BatchHardMiner,
    HardNegativeMiner,
    MinedIndices,
    SemiHardMiner,
    TripletMarginMiner,
)
from metrix.metric_learning.pair_losses import (
    CircleLoss,
    ContrastiveLoss,
    MultiSimilarityLoss,
    NTXentLoss,
    SupConLoss,
    TripletMarginLoss,
    _triplet_chunked,  # noqa: F401 - private: the triplet kernels the tests compare
    _triplet_hinge_sorted,  # noqa: F401
    circle_losses,
    contrastive_terms,
    multi_similarity_losses,
    ntxent_terms,
    supcon_losses,
    triplet_margin_terms,
)
from metrix.metric_learning.proxy_losses import (
    ArcFaceLoss,
    CosFaceLoss,
    ProxyAnchorLoss,
    ProxyNCALoss,
    margin_softmax_losses,
    proxy_anchor_terms,
    proxy_nca_losses,
)
from metrix.metric_learning.terms import LossTermsState

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("distances", "miners", "terms", "pair_losses", "proxy_losses",)
__all__ = [name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__]
