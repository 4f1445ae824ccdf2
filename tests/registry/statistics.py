"""Registry examples for the core statistics and Accuracy."""

import numpy as np

import metrix as mx
from tests.registry import Example


def _values(rng, n):
    return {"values": rng.normal(size=(n, 3)).astype(np.float32) * 10 + 1e3}


def _logits(rng, n):
    return {
        "logits": rng.normal(size=(n, 5)).astype(np.float32),
        "labels": rng.integers(0, 5, size=(n,)).astype(np.int32),
    }


EXAMPLES = [
    Example("Average", mx.Average(values="values"), _values, ("values",)),
    Example("Sum", mx.Sum(values="values"), _values, ("values",), rtol=1e-5, atol=1e-2),
    Example("Std", mx.Std(values="values"), _values, ("values",), rtol=1e-4),
    Example("Min", mx.Min(values="values"), _values, ("values",)),
    Example("Max", mx.Max(values="values"), _values, ("values",)),
    Example("Accuracy", mx.Accuracy(logits="logits", labels="labels"), _logits, ("logits", "labels")),
    Example("Accuracy_top3", mx.Accuracy(logits="logits", labels="labels", top_k=3), _logits, ("logits", "labels")),
]
