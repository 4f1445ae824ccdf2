"""Segmentation metrics from one global confusion matrix: MeanIoU and Dice.

The state is the ``(num_classes, num_classes)`` confusion matrix ``C[target, pred]`` of every
unmasked pixel, summed exactly (double-float, exact past 2^31 pixels). Per class
``c``: ``TP = C[c, c]``, ``FP = sum_t C[t, c] - TP``, ``FN = sum_p C[c, p] - TP``.
Classes absent from both targets and predictions (``TP + FP + FN = 0``) are excluded from
the mean, as sklearn's ``jaccard_score`` / ``f1_score`` with ``labels`` = the classes present.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core import numerics
from metrix.core.fields import exact_sum_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.state import State


def confusion_matrix(targets, preds, num_classes: int, keep=None):
    """``C[t, p]`` = number of kept pixels with target ``t`` predicted ``p`` (float32 counts).

    Pixels with a target or prediction outside ``[0, num_classes)`` are dropped.
    """
    targets, preds = targets.reshape(-1), preds.reshape(-1)
    keep = jnp.ones(targets.shape, bool) if keep is None else keep.reshape(-1)
    inside = keep & (targets >= 0) & (targets < num_classes) & (preds >= 0) & (preds < num_classes)
    flat = jnp.where(inside, targets * num_classes + preds, num_classes * num_classes)
    # int32 counts in the batch, split exactly into a double-float afterwards.
    counts = jnp.zeros((num_classes * num_classes,), jnp.int32).at[flat].add(1, mode="drop")
    return counts.reshape(num_classes, num_classes)


def _exact_counts(counts_int32):
    hi = counts_int32.astype(jnp.float32)
    lo = (counts_int32 - hi.astype(jnp.int32)).astype(jnp.float32)
    return jnp.stack([hi, lo], axis=-1)


def per_class_counts(confusion):
    """``(TP, FP, FN)`` per class from ``C[target, pred]``."""
    tp = jnp.diagonal(confusion)
    return tp, jnp.sum(confusion, axis=0) - tp, jnp.sum(confusion, axis=1) - tp


def iou_from_confusion(confusion, per_class: bool = False):
    """Per class ``TP / (TP + FP + FN)``; their mean over present classes (NaN if none)."""
    tp, fp, fn = per_class_counts(confusion)
    return _present_mean(tp, tp + fp + fn, per_class)


def dice_from_confusion(confusion, per_class: bool = False):
    """Per class ``2 TP / (2 TP + FP + FN)``; their mean over present classes (NaN if none)."""
    tp, fp, fn = per_class_counts(confusion)
    return _present_mean(2 * tp, 2 * tp + fp + fn, per_class)


def _present_mean(numerator, denominator, per_class):
    present = denominator > 0
    scores = jnp.where(present, numerator / jnp.where(present, denominator, 1), jnp.nan)
    if per_class:
        return scores  # NaN for absent classes
    return jnp.sum(jnp.where(present, scores, 0)) / jnp.sum(present)


class _ConfusionMetric(Metric):
    targets: Key = REQUIRED
    preds: Key | None = None
    logits: Key | None = None
    mask: Key | None = None
    num_classes: int = REQUIRED
    ignore_index: int | None = None
    per_class: bool = False

    def __post_init__(self):
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be a positive int, got {self.num_classes!r}")

    class State(State):
        confusion: jax.Array = exact_sum_field(shape=lambda m: (m.num_classes, m.num_classes))

        def compute(self):
            return numerics.df_value(self.confusion)

    def get_state(
        self,
        targets: Integer[Array, "*b"],
        preds: Integer[Array, "*b"] | None = None,
        logits: Float[Array, "*b c"] | None = None,
        mask: Shaped[Array, "*m"] | None = None,
    ) -> State:
        name = type(self).__name__
        if (preds is None) == (logits is None):
            raise TypeError(f"{name}.get_state() needs exactly one of preds= or logits=")
        if logits is not None:
            if logits.shape[-1] != self.num_classes:
                raise ValueError(f"{name}: logits have {logits.shape[-1]} classes, num_classes={self.num_classes}")
            preds = jnp.argmax(logits, axis=-1)
        keep = broadcast_mask(mask, targets.shape)
        if self.ignore_index is not None:
            keep = keep & (targets != self.ignore_index)
        counts = confusion_matrix(targets, preds, self.num_classes, keep)
        return self.State(confusion=_exact_counts(counts))


class MeanIoU(_ConfusionMetric):
    """Mean intersection over union ``mean_c TP / (TP + FP + FN)`` over present classes.

    Give predicted labels ``preds`` or ``logits`` (argmax) with integer ``targets``; pixels
    whose target is ``ignore_index`` or masked out are skipped. ``per_class=True`` returns
    the per-class IoU (NaN for absent classes). No pixels at all give NaN.
    """

    class State(_ConfusionMetric.State):
        def compute(self):
            return iou_from_confusion(numerics.df_value(self.confusion), self.parent.per_class)


class Dice(_ConfusionMetric):
    """Mean Dice (F1) ``mean_c 2 TP / (2 TP + FP + FN)`` over present classes (as MeanIoU)."""

    class State(_ConfusionMetric.State):
        def compute(self):
            return dice_from_confusion(numerics.df_value(self.confusion), self.parent.per_class)


__all__ = [
    "Dice",
    "MeanIoU",
    "confusion_matrix",
    "dice_from_confusion",
    "iou_from_confusion",
    "per_class_counts",
]
