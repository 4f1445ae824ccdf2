"""Registry examples for the generative metrics (features, small static sizes).

All five are split-invariant: FID's Chan-merged moments are order-free, and the buffered
metrics keep rows in data order, so any batching merged in order gives the same buffers
(KID's random subsets and the Inception Score's splits are defined on that order).
``mask`` masks the real and the generated row of each example together.
"""

import numpy as np

import metrix as mx
from tests.registry import Example

D = 8


def _pairs(rng, n):
    return {
        "real": rng.normal(size=(n, D)).astype(np.float32),
        "generated": (rng.normal(size=(n, D)) * 1.3 + 0.4).astype(np.float32),
    }


def _logits(rng, n):
    return {"logits": (rng.normal(size=(n, 5)) * 2).astype(np.float32)}


PAIRS = ("real", "generated")

EXAMPLES = [
    Example(
        "FID",
        mx.FID(real="real", generated="generated", num_features=D),
        _pairs,
        PAIRS,
        rtol=1e-4,
        atol=1e-4,
        min_batch=1,
    ),
    Example(
        "KID",
        mx.KID(
            real="real",
            generated="generated",
            num_features=D,
            capacity=32,
            num_subsets=3,
            subset_size=4,
        ),
        _pairs,
        PAIRS,
        rtol=1e-4,
        atol=1e-5,
    ),
    Example(
        "InceptionScore",
        mx.InceptionScore(logits="logits", num_classes=5, splits=3, capacity=32),
        _logits,
        ("logits",),
        rtol=1e-5,
    ),
    Example(
        "PrecisionRecall",
        mx.PrecisionRecall(real="real", generated="generated", num_features=D, capacity=32, k=3),
        _pairs,
        PAIRS,
    ),
    Example(
        "DensityCoverage",
        mx.DensityCoverage(real="real", generated="generated", num_features=D, capacity=32, k=3),
        _pairs,
        PAIRS,
    ),
]
