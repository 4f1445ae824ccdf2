"""Registry examples for the metric-learning losses.

Pair, triplet and proxy-anchor losses form their pairs/classes inside each batch, so they
are not split-invariant; ArcFace, CosFace and ProxyNCA average per-example losses and are.
"""

import jax
import numpy as np

import metrix as mx
from tests.registry import Example

_D = 4
_CLASSES = 3


def _pairs(rng, n):
    return {
        "embeddings": rng.normal(size=(n, _D)).astype(np.float32),
        "labels": rng.integers(0, _CLASSES, size=(n,)).astype(np.int32),
    }


def _with_params(metric):
    params = jax.tree.map(np.asarray, metric.init(jax.random.PRNGKey(0)))

    def make(rng, n):
        return {**_pairs(rng, n), "params": params}

    return make


_KEYS = dict(embeddings="embeddings", labels="labels", mask="mask")
_BATCHED = ("embeddings", "labels")


def _pair_example(name, metric):
    return Example(name, metric, _pairs, _BATCHED, split_invariant=False, min_batch=2)


def _weighted(name, cls, split_invariant, **kw):
    metric = cls(**_KEYS, params="params", num_classes=_CLASSES, embedding_dim=_D, **kw)
    return Example(name, metric, _with_params(metric), _BATCHED, split_invariant=split_invariant)


EXAMPLES = [
    _pair_example("ContrastiveLoss", mx.ContrastiveLoss(**_KEYS)),
    _pair_example("ContrastiveLoss_pml", mx.ContrastiveLoss(**_KEYS, normalize=True, reduction="mean_nonzero")),
    _pair_example("TripletMarginLoss", mx.TripletMarginLoss(**_KEYS)),
    _pair_example("TripletMarginLoss_smooth_swap", mx.TripletMarginLoss(**_KEYS, smooth_loss=True, swap=True)),
    _pair_example("TripletMarginLoss_sum", mx.TripletMarginLoss(**_KEYS, reduction="sum")),
    _pair_example("NTXentLoss", mx.NTXentLoss(**_KEYS)),
    _pair_example("SupConLoss", mx.SupConLoss(**_KEYS)),
    _pair_example("MultiSimilarityLoss", mx.MultiSimilarityLoss(**_KEYS)),
    _pair_example("CircleLoss", mx.CircleLoss(**_KEYS, gamma=8.0)),
    _weighted("ArcFaceLoss", mx.ArcFaceLoss, True, scale=8.0),
    _weighted("CosFaceLoss", mx.CosFaceLoss, True, scale=8.0),
    _weighted("ProxyNCALoss", mx.ProxyNCALoss, True),
    _weighted("ProxyAnchorLoss", mx.ProxyAnchorLoss, False),
]
