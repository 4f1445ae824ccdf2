"""Segmentation metrics: MeanIoU and Dice from one global confusion matrix; SoftDice.

The state is the ``(num_classes, num_classes)`` confusion matrix ``C[target, pred]`` of every
unmasked pixel, summed exactly (double-float, exact past 2^31 pixels). Per class
``c``: ``TP = C[c, c]``, ``FP = sum_t C[t, c] - TP``, ``FN = sum_p C[c, p] - TP``.
Classes absent from both targets and predictions (``TP + FP + FN = 0``) are excluded from
the mean, as sklearn's ``jaccard_score`` / ``f1_score`` with ``labels`` = the classes present.
``class_ids`` restricts the mean to a subset of classes (metrax's / Keras' ``target_class_ids``).

``SoftDice`` is the overlap of probabilities with (soft) targets, three exact sums.

Invalid inputs (docs/inputs.md): an unmasked pixel whose target (other than
``ignore_index``) or prediction lies outside ``[0, num_classes)``, or whose logits hold a NaN,
raises eagerly; under ``jit`` it is left out and counted, and ``compute()`` is NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.classification.accuracy import argmax_with_max
from metrix.core import numerics
from metrix.core.fields import exact_sum_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import metric_name, refuse
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


def iou_from_confusion(confusion, per_class: bool = False, class_ids=None):
    """Per class ``TP / (TP + FP + FN)``; their mean over present classes (NaN if none).

    ``class_ids``: only those classes, in that order (the mean over the present ones)."""
    tp, fp, fn = per_class_counts(confusion)
    return _present_mean(tp, tp + fp + fn, per_class, class_ids)


def dice_from_confusion(confusion, per_class: bool = False, class_ids=None):
    """Per class ``2 TP / (2 TP + FP + FN)``; their mean over present classes (NaN if none)."""
    tp, fp, fn = per_class_counts(confusion)
    return _present_mean(2 * tp, 2 * tp + fp + fn, per_class, class_ids)


def _present_mean(numerator, denominator, per_class, class_ids=None):
    if class_ids is not None:
        index = jnp.asarray(class_ids, jnp.int32)
        numerator, denominator = numerator[index], denominator[index]
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
    class_ids: tuple[int, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be a positive int, got {self.num_classes!r}")
        if self.class_ids is not None:
            # A list or array (metrax passes ``jnp.array([0, 2])``) is kept as a hashable tuple.
            ids = tuple(int(i) for i in self.class_ids)
            inside = all(0 <= i < self.num_classes for i in ids)
            if not ids or len(set(ids)) != len(ids) or not inside:
                raise ValueError(
                    f"class_ids must be distinct classes in [0, num_classes={self.num_classes}), "
                    f"at least one, got {self.class_ids!r}"
                )
            object.__setattr__(self, "class_ids", ids)

    class State(State):
        confusion: jax.Array = exact_sum_field(shape=lambda m: (m.num_classes, m.num_classes))
        invalid: jax.Array = exact_sum_field()  # pixels refused (counted under jit)

        def compute(self):
            return self.checked(numerics.df_value(self.confusion))

        def checked(self, value):
            """``value``, refused when invalid pixels were seen: an error eagerly, NaN under jit."""
            return refuse(
                numerics.df_value(self.invalid),
                value,
                lambda _: f"{metric_name(self)}: {numerics.df_to_python(self.invalid)} pixel(s) "
                "had a NaN logit or a target / prediction outside [0, num_classes) (left out "
                "under jit); the value is refused.",
            )

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
            top, preds = argmax_with_max(logits)  # one pass: NaN rows have a NaN maximum
            bad = jnp.isnan(top)
        else:
            bad = (preds < 0) | (preds >= self.num_classes)
        keep = broadcast_mask(mask, targets.shape)
        if self.ignore_index is not None:
            keep = keep & (targets != self.ignore_index)
        bad = keep & (bad | (targets < 0) | (targets >= self.num_classes))
        invalid = numerics.count_true(bad)
        n = self.num_classes
        refuse(
            numerics.df_value(invalid),
            None,
            lambda count: f"{count} unmasked pixel(s) with a NaN logit or a target / prediction "
            f"outside [0, {n}) (ignore_index={self.ignore_index}); mask them out, set "
            "ignore_index, or fix the inputs.",
        )
        counts = confusion_matrix(targets, preds, self.num_classes, keep & ~bad)
        return self.State(confusion=_exact_counts(counts), invalid=invalid)


class MeanIoU(_ConfusionMetric):
    """Mean intersection over union ``mean_c TP / (TP + FP + FN)`` over present classes.

    Give predicted labels ``preds`` or ``logits`` (argmax) with integer ``targets``; pixels
    whose target is ``ignore_index`` or masked out are skipped. ``per_class=True`` returns
    the per-class IoU (NaN for absent classes). No pixels at all give NaN.

    ``class_ids=(0, 2)``: the mean over those classes only (the pixels of the other classes
    still count as their false positives / negatives), as metrax's ``IoU`` /
    Keras' ``MeanIoU(target_class_ids=...)``; with ``per_class=True``, their IoUs in that
    order. metrax averages each batch's mean IoU; metrix keeps one confusion matrix, so
    batches merge exactly (the value of all pixels at once).
    """

    class State(_ConfusionMetric.State):
        def compute(self):
            confusion = numerics.df_value(self.confusion)
            m = self.parent
            return self.checked(iou_from_confusion(confusion, m.per_class, m.class_ids))


class Dice(_ConfusionMetric):
    """Mean Dice (F1) ``mean_c 2 TP / (2 TP + FP + FN)`` over present classes (as MeanIoU,
    ``class_ids`` included)."""

    class State(_ConfusionMetric.State):
        def compute(self):
            confusion = numerics.df_value(self.confusion)
            m = self.parent
            return self.checked(dice_from_confusion(confusion, m.per_class, m.class_ids))


def soft_dice_sums(preds, targets, keep=None):
    """``(sum p y, sum p, sum y)`` over the kept elements (float32; masked-out NaNs ignored)."""
    preds, targets = preds.astype(jnp.float32), targets.astype(jnp.float32)
    keep = jnp.ones(preds.shape, bool) if keep is None else keep

    def total(x):
        return jnp.sum(jnp.where(keep, x, 0.0))

    return total(preds * targets), total(preds), total(targets)


class SoftDice(Metric):
    """Soft Dice on probabilities: ``2 sum(p y) / (sum p + sum y + epsilon)``.

    The formula and ``epsilon=1e-7`` of metrax's ``Dice`` (``metrax.image_metrics.Dice``,
    v0.2.4): sums over every kept element of every batch, so the value is that of all
    elements at once (batches merge exactly; no per-class average). ``preds`` are
    probabilities in [0, 1] (or ``logits``, through a sigmoid), ``targets`` (also
    ``labels``) 0/1 or soft targets of the same shape ``(*b, ...)``; ``mask`` covers the
    leading axes. Returns a float32 scalar in [0, 1]; 0 when both sums are 0. A NaN in a kept
    element raises eagerly (NaN under ``jit``). Jit-safe; nothing host-side.
    """

    preds: Key | None = None
    targets: Key | None = None
    logits: Key | None = None
    labels: Key | None = None
    mask: Key | None = None
    epsilon: float = 1e-7

    key_aliases = {"labels": "targets"}
    required_one_of = (("preds", "logits"), ("targets", "labels"))

    class State(State):
        intersection: jax.Array = exact_sum_field()
        sum_preds: jax.Array = exact_sum_field()
        sum_targets: jax.Array = exact_sum_field()

        def compute(self):
            intersection = numerics.df_value(self.intersection)
            total = numerics.df_value(self.sum_preds) + numerics.df_value(self.sum_targets)
            return 2.0 * intersection / (total + self.parent.epsilon)

    def get_state(
        self,
        preds: Float[Array, "*b"] | None = None,
        targets: Shaped[Array, "*b"] | None = None,
        logits: Float[Array, "*b"] | None = None,
        mask: Shaped[Array, "*m"] | None = None,
    ) -> State:
        if (preds is None) == (logits is None):
            raise TypeError("get_state() needs exactly one of preds= (probabilities) or logits=")
        if targets is None:
            raise TypeError("get_state() needs targets= (also accepted as labels=)")
        preds = jax.nn.sigmoid(logits.astype(jnp.float32)) if logits is not None else preds
        if preds.shape != targets.shape:
            raise ValueError(f"preds {preds.shape} and targets {targets.shape} must have one shape")
        keep = broadcast_mask(mask, preds.shape)
        bad = keep & (jnp.isnan(preds) | jnp.isnan(targets.astype(jnp.float32)))
        refuse(
            numerics.df_value(numerics.count_true(bad)),
            None,
            lambda count: f"{count} kept element(s) with a NaN prediction or target; mask them "
            "out or fix the inputs.",
        )
        # Under jit a kept NaN stays in the sums, so the value is NaN (eagerly it raised).
        a, b, c = (numerics.df_from(x) for x in soft_dice_sums(preds, targets, keep))
        return self.State(intersection=a, sum_preds=b, sum_targets=c)


__all__ = [
    "Dice",
    "MeanIoU",
    "SoftDice",
    "confusion_matrix",
    "dice_from_confusion",
    "iou_from_confusion",
    "per_class_counts",
    "soft_dice_sums",
]
