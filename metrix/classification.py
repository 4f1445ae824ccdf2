"""Classification metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.keys import REQUIRED, Key
from metrix.metric import Metric
from metrix.states import AverageState


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

    class State(AverageState):
        pass

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


__all__ = ["Accuracy", "top_k_correct"]
