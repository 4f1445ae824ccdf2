"""Registry examples for the bootstrap wrapper (its state is stacked resample states)."""

import numpy as np

import metrix as mx
from tests.registry import Example


def _values(rng, n):
    return {"values": rng.normal(size=(n,)).astype(np.float32)}


def _scores(rng, n):
    return {
        "logits": rng.normal(size=(n, 3)).astype(np.float32),
        "labels": rng.integers(0, 3, size=(n,)).astype(np.int32),
        "ids": np.arange(n, dtype=np.int32) * 7 + 3,
    }


EXAMPLES = [
    Example(
        "bootstrap_average",
        mx.Bootstrap(mx.Average(values="x"), num_resamples=16, max_weight=4),
        _values,
        batched=("values",),
    ),
    Example(
        "bootstrap_accuracy_ids",
        mx.Bootstrap(mx.Accuracy(logits="l", labels="y"), num_resamples=16, ids="i"),
        _scores,
        batched=("logits", "labels", "ids"),
    ),
]
