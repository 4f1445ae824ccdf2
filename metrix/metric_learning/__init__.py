"""Metric-learning losses and miners, as mergeable metrics and pure functions.

* :mod:`~metrix.metric_learning.distances`: pairwise distances, pair masks.
* :mod:`~metrix.metric_learning.miners`: which pairs / triplets a loss looks at.
* :mod:`~metrix.metric_learning.terms`: the state every loss shares (sums and counts of terms).
* :mod:`~metrix.metric_learning.pair_losses`: contrastive, triplet, NT-Xent, SupCon,
  multi-similarity and circle losses.
* :mod:`~metrix.metric_learning.proxy_losses`: ArcFace, CosFace, ProxyNCA, ProxyAnchor.
"""

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

__all__ = [
    "pairwise_distances",
    "pair_masks",
    "MinedIndices",
    "BatchHardMiner",
    "HardNegativeMiner",
    "SemiHardMiner",
    "TripletMarginMiner",
    "LossTermsState",
    "ContrastiveLoss",
    "TripletMarginLoss",
    "NTXentLoss",
    "SupConLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
    "contrastive_terms",
    "triplet_margin_terms",
    "ntxent_terms",
    "supcon_losses",
    "multi_similarity_losses",
    "circle_losses",
    "ArcFaceLoss",
    "CosFaceLoss",
    "ProxyNCALoss",
    "ProxyAnchorLoss",
    "margin_softmax_losses",
    "proxy_nca_losses",
    "proxy_anchor_terms",
]
