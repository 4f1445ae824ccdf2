"""Accuracy and BinaryAccuracy: masked means of per-example correctness."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core.keys import REQUIRED, Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import CheckedAverageState
from metrix.core.weights import weighted_checked_state

# ---------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------


def argmax_with_max(logits):
    """``(max, argmax)`` of ``logits`` over the last axis in one pass, as ``jnp.argmax``
    picks it: the first maximum, or the first NaN of a row holding one (then ``max`` is NaN).

    One reduction reads the scores once; ``jnp.argmax`` computes the same maximum internally
    and drops it, so checking NaN rows with ``jnp.isnan(logits).any(-1)`` would cost a second
    pass over every score (a third of a one-shot Accuracy at 10^5 x 10 on CPU).
    """
    # No gradient flows through a choice of index, and a variadic reduce has no JVP rule:
    # without this, a metric computed inside a train step's ``jax.grad`` would fail.
    logits = jax.lax.stop_gradient(logits)
    index = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)

    def pick(a, b):
        (a_value, a_index), (b_value, b_index) = a, b
        a_nan, b_nan = jnp.isnan(a_value), jnp.isnan(b_value)
        earlier = a_index < b_index
        take_a = jnp.where(
            a_nan | b_nan,
            a_nan & (~b_nan | earlier),
            (a_value > b_value) | ((a_value == b_value) & earlier),
        )
        return jnp.where(take_a, a_value, b_value), jnp.where(take_a, a_index, b_index)

    lowest = -jnp.inf if jnp.issubdtype(logits.dtype, jnp.inexact) else jnp.iinfo(logits.dtype).min
    init = (jnp.array(lowest, logits.dtype), jnp.array(jnp.iinfo(jnp.int32).max, jnp.int32))
    return jax.lax.reduce((logits, index), init, pick, (logits.ndim - 1,))


def top_k_correct(logits, labels, k: int = 1):
    """Whether ``labels`` is among the ``k`` largest ``logits`` (ties: lowest index first)."""
    if k == 1:
        return jnp.argmax(logits, axis=-1) == labels
    _, top = jax.lax.top_k(logits, k)
    return jnp.any(top == labels[..., None], axis=-1)


class Accuracy(Metric):
    """Fraction of correct predictions: ``mean(pred == label)`` over unmasked examples.

    Give ``logits`` (``(*b, n)`` scores; correct when the label is among the ``top_k``
    largest) or ``preds`` (``(*b,)`` predicted labels). The accuracy of no examples is NaN.

    ``weights`` (optional, ``(*b,)`` or broadcasting over the leading axes; sklearn's
    ``sample_weight``): ``sum w [correct] / sum w`` over the unmasked examples
    (:mod:`metrix.core.weights`; a negative / NaN / infinite unmasked weight is refused
    eagerly, NaN under jit).

    Invalid inputs (docs/inputs.md): an unmasked example with a NaN logit or a label outside
    ``[0, n)`` (with ``preds``: a negative label or prediction) raises eagerly; under ``jit``
    it is left out and counted, and ``compute()`` is NaN. Mask padding labels out.
    """

    logits: Key | None = None
    labels: Key = REQUIRED
    preds: Key | None = None
    mask: Key | None = None
    weights: Key | None = None
    top_k: int = 1

    State = CheckedAverageState

    def get_state(
        self,
        logits: Float[Array, "*b n"] | None = None,
        labels: Integer[Array, "*b"] | None = None,
        preds: Integer[Array, "*b"] | None = None,
        mask: Shaped[Array, "*b"] | None = None,
        weights: Shaped[Array, "*w"] | None = None,
    ) -> State:
        if labels is None:
            raise TypeError("Accuracy.get_state() needs labels")
        if (logits is None) == (preds is None):
            raise TypeError("Accuracy.get_state() needs exactly one of logits= or preds=")
        if preds is not None:
            if self.top_k != 1:
                raise ValueError("Accuracy: top_k > 1 needs logits, not predicted labels")
            correct = preds == labels
            bad = (labels < 0) | (preds < 0)
            what = "a negative label or predicted label"
        else:
            n = logits.shape[-1]
            if not 1 <= self.top_k <= n:
                raise ValueError(f"Accuracy: top_k={self.top_k} outside [1, {n}]")
            bad_label = (labels < 0) | (labels >= n)
            if self.top_k == 1:  # one pass: the row maximum is NaN iff the row holds a NaN
                top, pred = argmax_with_max(logits)
                bad, correct = jnp.isnan(top) | bad_label, pred == labels
            else:
                bad = jnp.any(jnp.isnan(logits), axis=-1) | bad_label
                correct = top_k_correct(logits, labels, self.top_k)
            what = f"a NaN logit or a label outside [0, {n})"
        return weighted_checked_state(
            self.State,
            correct,
            bad,
            mask=mask,
            weights=weights,
            message=lambda count: _invalid_message(count, what),
        )


def _invalid_message(count, what: str) -> str:
    return (
        f"{count} unmasked example(s) with {what}; these are invalid inputs (mask them out, "
        "or fix the scores / labels)."
    )


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
    applies to ``sigmoid(preds)``), or already 0/1 labels (integer/bool). ``labels`` are 0/1
    (integer, bool, or float 0.0/1.0). Any shape; ``mask`` covers the leading axes. The
    accuracy of no examples is NaN. ``compute`` is jit-able.

    ``weights`` (optional, sklearn's ``sample_weight``, over the leading axes):
    ``sum w [correct] / sum w``, as :class:`Accuracy`.

    Invalid inputs (docs/inputs.md): an unmasked NaN score, a predicted label that is not 0/1,
    or a label that is not 0/1 (``2``, ``-1``, ``0.7``) raises eagerly; under ``jit`` it is
    left out and counted, and ``compute()`` is NaN.
    """

    preds: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    weights: Key | None = None
    threshold: float = 0.5
    from_logits: bool = False

    State = CheckedAverageState

    def get_state(
        self,
        preds: Shaped[Array, "*b"],
        labels: Shaped[Array, "*b"],
        mask: Shaped[Array, "..."] | None = None,
        weights: Shaped[Array, "*w"] | None = None,
    ) -> State:
        preds, labels = jnp.asarray(preds), jnp.asarray(labels)
        hard = binarize(preds, self.threshold, self.from_logits)
        if jnp.issubdtype(preds.dtype, jnp.floating):
            bad_pred = jnp.isnan(preds)
        else:
            bad_pred = (hard != 0) & (hard != 1)
        bad = bad_pred | ((labels != 0) & (labels != 1))  # NaN labels too
        correct = hard == labels.astype(jnp.int32)
        return weighted_checked_state(
            self.State,
            correct,
            bad,
            mask=mask,
            weights=weights,
            message=lambda count: _invalid_message(
                count, "a NaN score, a predicted label not 0/1, or a label not 0/1"
            ),
        )


__all__ = [
    "Accuracy",
    "BinaryAccuracy",
    "top_k_correct",
    "binarize",
]
