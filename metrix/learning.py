"""The seed-compatible metric-learning API: ``from metrix.learning import ArcFaceLoss``.

Pair losses and miners are the functional ones of :mod:`metrix.metric_learning` (they
already work as ``loss_fn(embeddings, labels)`` and ``miner.mine(embeddings, labels)``).
The losses with trainable weights take the seed's constructor signatures and are
``flax.nnx`` modules holding their weights as ``nnx.Param``, so ``nnx.grad`` and
``nnx.Optimizer`` see them; their maths is the functional loss's::

    arcface = ArcFaceLoss(num_classes=100, embedding_dim=128, margin=0.5, scale=64.0,
                          rngs=nnx.Rngs(0))
    loss = arcface(embeddings, labels)     # = mx.ArcFaceLoss(...)(embeddings, labels, params)
"""

from __future__ import annotations

import flax.nnx as nnx

from metrix import metric_learning as ml
from metrix.metric_learning import (
    BatchHardMiner,
    CircleLoss,
    ContrastiveLoss,
    HardNegativeMiner,
    MinedIndices,
    MultiSimilarityLoss,
    NTXentLoss,
    SemiHardMiner,
    SupConLoss,
    TripletMarginLoss,
    TripletMarginMiner,
)
from metrix.metric_learning.terms import MetricLearningLoss


class _WeightedLossModule(nnx.Module):
    """An nnx holder of a functional loss's trainable weights (one ``nnx.Param`` each)."""

    _param_name = ""

    def __init__(self, loss: ml.MetricLearningLoss, rngs: nnx.Rngs):
        self.loss = loss
        params = loss.init(rngs.params())
        setattr(self, self._param_name, nnx.Param(params[self._param_name]))

    def params(self) -> dict:
        """The weights as the functional loss's ``params`` pytree."""
        return {self._param_name: getattr(self, self._param_name)[...]}

    def __call__(self, embeddings, labels, mask=None):
        """The differentiable scalar loss of one batch."""
        return self.loss(embeddings, labels, self.params(), mask=mask)

    def get_state(self, embeddings, labels, mask=None):
        """The mergeable evaluation state (see :mod:`metrix.metric_learning`)."""
        return self.loss.get_state(embeddings, labels, self.params(), mask=mask)


class _AngularLossModule(_WeightedLossModule):
    _param_name = "weights"

    @property
    def _weight(self) -> nnx.Param:
        """The ``weights`` parameter under the seed library's attribute name."""
        return self.weights


class ArcFaceLoss(_AngularLossModule):
    """ArcFace with class weights ``weights: (embedding_dim, num_classes)`` as ``nnx.Param``."""

    def __init__(self, num_classes: int = 100, embedding_dim: int = 128, margin: float = 0.5,
                 scale: float = 64.0, reduction: str = "mean", *, rngs: nnx.Rngs):
        super().__init__(
            ml.ArcFaceLoss(num_classes=num_classes, embedding_dim=embedding_dim, margin=margin,
                           scale=scale, reduction=reduction),
            rngs,
        )


class CosFaceLoss(_AngularLossModule):
    """CosFace with class weights ``weights: (embedding_dim, num_classes)`` as ``nnx.Param``."""

    def __init__(self, num_classes: int = 100, embedding_dim: int = 128, margin: float = 0.35,
                 scale: float = 64.0, reduction: str = "mean", *, rngs: nnx.Rngs):
        super().__init__(
            ml.CosFaceLoss(num_classes=num_classes, embedding_dim=embedding_dim, margin=margin,
                           scale=scale, reduction=reduction),
            rngs,
        )


class _ProxyLossModule(_WeightedLossModule):
    _param_name = "proxies"

    @property
    def _proxies(self) -> nnx.Param:
        """The ``proxies`` parameter under the seed library's attribute name."""
        return self.proxies


class ProxyNCALoss(_ProxyLossModule):
    """ProxyNCA with ``proxies: (num_classes, embedding_dim)`` as ``nnx.Param``."""

    def __init__(self, num_classes: int = 100, embedding_dim: int = 128, softmax_scale: float = 1.0,
                 reduction: str = "mean", *, rngs: nnx.Rngs):
        super().__init__(
            ml.ProxyNCALoss(num_classes=num_classes, embedding_dim=embedding_dim,
                            softmax_scale=softmax_scale, reduction=reduction),
            rngs,
        )


class ProxyAnchorLoss(_ProxyLossModule):
    """Proxy-Anchor with ``proxies: (num_classes, embedding_dim)`` as ``nnx.Param``."""

    def __init__(self, num_classes: int = 100, embedding_dim: int = 128, margin: float = 0.1,
                 scale: float = 32.0, *, rngs: nnx.Rngs):
        super().__init__(
            ml.ProxyAnchorLoss(num_classes=num_classes, embedding_dim=embedding_dim, margin=margin,
                               scale=scale),
            rngs,
        )


__all__ = [
    "MetricLearningLoss",
    "ContrastiveLoss",
    "TripletMarginLoss",
    "NTXentLoss",
    "SupConLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
    "ArcFaceLoss",
    "CosFaceLoss",
    "ProxyNCALoss",
    "ProxyAnchorLoss",
    "MinedIndices",
    "HardNegativeMiner",
    "SemiHardMiner",
    "BatchHardMiner",
    "TripletMarginMiner",
]
