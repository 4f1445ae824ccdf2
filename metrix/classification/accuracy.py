"""Accuracy and BinaryAccuracy: masked means of per-example correctness."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core.keys import REQUIRED, Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import AverageState

# ---------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------


def top_k_correct(logits, labels, k: int = 1):
    """Whether ``labels`` is among the ``k`` largest ``logits`` (ties: lowest index first)."""
    if k == 1:
        return jnp.argmax(logits, axis=-1) == labels
    _, top = jax.lax.top_k(logits, k)
    return jnp.any(top == labels[..., None], axis=-1)


class Accuracy(Metric):
    """Fraction of correct predictions: ``mean(pred == label)`` over unmasked examples.

    Give ``logits`` (``(*b, n)`` scores; correct when the label is among the ``top_k``
    largest) or ``preds`` (``(*b,)`` predicted labels). Labels outside ``[0, n)`` count as
    wrong. The accuracy of no examples is NaN.
    """

    logits: Key | None = None
    labels: Key = REQUIRED
    preds: Key | None = None
    mask: Key | None = None
    top_k: int = 1

    State = AverageState

    def get_state(
        self,
        logits: Float[Array, "*b n"] | None = None,
        labels: Integer[Array, "*b"] | None = None,
        preds: Integer[Array, "*b"] | None = None,
        mask: Shaped[Array, "*b"] | None = None,
    ) -> State:
        if labels is None:
            raise TypeError("Accuracy.get_state() needs labels")
        if (logits is None) == (preds is None):
            raise TypeError("Accuracy.get_state() needs exactly one of logits= or preds=")
        if preds is not None:
            if self.top_k != 1:
                raise ValueError("Accuracy: top_k > 1 needs logits, not predicted labels")
            correct = preds == labels
        else:
            if not 1 <= self.top_k <= logits.shape[-1]:
                raise ValueError(f"Accuracy: top_k={self.top_k} outside [1, {logits.shape[-1]}]")
            correct = top_k_correct(logits, labels, self.top_k)
        return self.State.from_values(correct, mask=mask)


def binarize(preds, threshold: float = 0.5, from_logits: bool = False):
    """Hard 0/1 predictions: ``preds > threshold`` (``sigmoid(preds) > threshold`` for logits).

    Integer or boolean ``preds`` are already labels and pass through unchanged.
    """
    preds = jnp.asarray(preds)
    if not jnp.issubdtype(preds.dtype, jnp.floating):
        return preds.astype(jnp.int32)
    if from_logits:
        # sigmoid is increasing, so comparing logits with logit(threshold) avoids overflow.
        if threshold <= 0.0:
            cut = -jnp.inf
        elif threshold >= 1.0:
            cut = jnp.inf
        else:
            cut = math.log(threshold / (1.0 - threshold))
        return (preds > cut).astype(jnp.int32)
    return (preds > threshold).astype(jnp.int32)


class BinaryAccuracy(Metric):
    """Fraction of correct binary predictions: ``mean([preds > threshold] == labels)``.

    ``preds`` are probabilities (or logits with ``from_logits=True``: the threshold then
    applies to ``sigmoid(preds)``), or already 0/1 labels (integer/bool). Any shape; ``mask``
    covers the leading axes. NaN scores count as wrong (``NaN > t`` is false). The accuracy
    of no examples is NaN. ``compute`` is jit-able.
    """

    preds: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    threshold: float = 0.5
    from_logits: bool = False

    State = AverageState

    def get_state(
        self,
        preds: Shaped[Array, "*b"],
        labels: Shaped[Array, "*b"],
        mask: Shaped[Array, "..."] | None = None,
    ) -> State:
        hard = binarize(preds, self.threshold, self.from_logits)
        return self.State.from_values(hard == jnp.asarray(labels).astype(jnp.int32), mask=mask)


__all__ = [
    "Accuracy",
    "BinaryAccuracy",
    "top_k_correct",
    "binarize",
]
