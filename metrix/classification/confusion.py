"""Confusion-count scores: one exact confusion state for precision, recall, F1 and kin.

Sample weights (``weights=``, sklearn's ``sample_weight``; precision, recall, F-beta, F1,
specificity, balanced accuracy, MCC): each element adds its weight to its cell instead of 1
(:mod:`metrix.core.weights`). Masks select first; an unmasked negative / NaN / infinite
weight is an invalid element (an error eagerly, left out and counted under jit).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Shaped

from metrix.classification._common import (
    _AVERAGES,
    _check_elementwise_shapes,
    _check_task,
    _check_top_k,
    integral_labels,
)
from metrix.classification.accuracy import argmax_with_max, binarize, top_k_correct
from metrix.core import numerics
from metrix.core.fields import exact_sum_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import metric_name, refuse
from metrix.core.state import State
from metrix.core.weights import broadcast_weights, invalid_weights, invalid_weights_message

# ---------------------------------------------------------------------------------------
# Confusion counts: one state for every count-based score
# ---------------------------------------------------------------------------------------


def _top_k_prediction(scores, labels, top_k):
    """The one class a top-k prediction stands for: the label when it is among the ``top_k``
    largest scores (ties: lowest index first), else the arg-max (torchmetrics' rule)."""
    top1 = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    if top_k == 1:
        return top1
    # Out-of-range labels are dropped from the counts later; clipping only keeps this defined.
    labels = jnp.clip(labels, 0, scores.shape[-1] - 1).astype(jnp.int32)
    return jnp.where(top_k_correct(scores, labels, top_k), labels, top1)


@functools.partial(
    jax.jit, static_argnames=("task", "num_classes", "threshold", "from_logits", "top_k")
)
def _confusion_and_invalid(
    preds,
    labels,
    *,
    task,
    num_classes=None,
    threshold=0.5,
    from_logits=False,
    top_k=1,
    mask=None,
    weights=None,
):
    """One batch's confusion counts and counts of bad labels / bad predictions / bad weights.

    Counts are int32 (exact), or float32 summed weights given ``weights``."""
    _check_task(task, num_classes)
    _check_top_k(top_k, task, num_classes)
    preds = jnp.asarray(preds)
    # Float labels of whole numbers (sklearn's [0., 1.]) are class ids; 0.7 is invalid.
    labels, fractional = integral_labels(labels)
    scores = jnp.issubdtype(preds.dtype, jnp.floating)
    if task == "multiclass":
        if scores:
            if preds.ndim < 1 or preds.shape[-1] != num_classes:
                raise ValueError(
                    f"multiclass scores must have shape (*b, num_classes={num_classes}), "
                    f"got {preds.shape}"
                )
            if labels.shape != preds.shape[:-1]:  # before the top-k lookup broadcasts them
                raise ValueError(
                    f"predictions of shape {preds.shape} do not match labels of shape "
                    f"{labels.shape} (multiclass labels are (*b,) class indices)"
                )
            if top_k == 1:  # one pass: the row maximum is NaN iff the row holds a NaN
                top, hard = argmax_with_max(preds)
                bad_pred = jnp.isnan(top)
            else:
                bad_pred = jnp.any(jnp.isnan(preds), axis=-1)
                hard = _top_k_prediction(preds, labels, top_k)
        else:
            if top_k != 1:
                raise TypeError(
                    f"top_k={top_k} needs scores (*b, num_classes) as preds, not predicted "
                    f"labels ({preds.dtype}); pass the logits or probabilities"
                )
            bad_pred = (preds < 0) | (preds >= num_classes)
            hard = preds.astype(jnp.int32)
        if hard.shape != labels.shape:
            raise ValueError(
                f"predictions of shape {preds.shape} do not match labels of shape "
                f"{labels.shape} (multiclass labels are (*b,) class indices)"
            )
        n = num_classes
    else:
        _check_elementwise_shapes(task, num_classes, preds, labels)
        bad_pred = jnp.isnan(preds) if scores else (preds < 0) | (preds > 1)
        hard = binarize(preds, threshold, from_logits)
        n = 2
    bad_label = (labels < 0) | (labels >= n) | fractional
    keep = broadcast_mask(mask, labels.shape)
    invalid_label = keep & bad_label
    invalid_pred = keep & bad_pred & ~bad_label
    keep = keep & ~bad_label & ~bad_pred
    if weights is not None:
        w = broadcast_weights(weights, keep.shape).astype(jnp.float32)
        invalid_weight = keep & invalid_weights(w)
        keep = keep & ~invalid_weight
    if task == "multiclass":
        cells, shape = num_classes * num_classes, (num_classes, num_classes)
        index = labels * num_classes + hard
    elif task == "binary":
        cells, shape = 4, (2, 2)
        index = labels * 2 + hard
    else:
        cells, shape = 4 * num_classes, (num_classes, 2, 2)
        index = jnp.arange(num_classes, dtype=jnp.int32) * 4 + labels * 2 + hard
    index = jnp.broadcast_to(index, keep.shape)
    if weights is None:
        # int32 counts in the batch: a float32 scatter-add stops counting at 2^24.
        counts = numerics.bincount(index, cells, where=keep)
        bad_weights = jnp.zeros((), jnp.int32)
    else:
        summed = jnp.where(keep, w, 0.0).reshape(-1)
        counts = jnp.zeros((cells,), jnp.float32).at[index.reshape(-1)].add(summed)
        bad_weights = invalid_weight.sum(dtype=jnp.int32)
    return (
        counts.reshape(shape),
        invalid_label.sum(dtype=jnp.int32),
        invalid_pred.sum(dtype=jnp.int32),
        bad_weights,
    )


def confusion_counts(
    preds,
    labels,
    *,
    task: str,
    num_classes: int | None = None,
    threshold: float = 0.5,
    from_logits: bool = False,
    top_k: int = 1,
    mask=None,
):
    """Confusion counts of one batch (float32; jit-safe). Rows are true classes, columns predicted.

    ``binary``: ``(2, 2)``; ``multiclass``: ``(C, C)``; ``multilabel``: ``(L, 2, 2)`` (one
    binary matrix per label, as ``sklearn.metrics.multilabel_confusion_matrix``). Masked-out
    and invalid elements (labels out of range, NaN scores) are not counted.

    ``top_k > 1`` (multiclass scores only): an example's predicted class is its label when the
    label is among its ``top_k`` largest scores (ties: lowest index first), otherwise its
    arg-max -- torchmetrics' top-k stat scores, which count one predicted class per example.
    """
    counts, _, _, _ = _confusion_and_invalid(
        preds,
        labels,
        task=task,
        num_classes=num_classes,
        threshold=threshold,
        from_logits=from_logits,
        top_k=top_k,
        mask=mask,
    )
    return counts.astype(jnp.float32)


def _confusion_shape(m):
    if m.task == "binary":
        return (2, 2)
    if m.task == "multilabel":
        return (m.num_classes, 2, 2)
    return (m.num_classes, m.num_classes)



class ConfusionState(State):
    """Exact confusion counts shared by every count-based classification score.

    ``matrix`` is the double-float confusion matrix (rows: true class, columns: predicted;
    ``(2, 2)``, ``(C, C)`` or ``(L, 2, 2)``), ``invalid`` the number of rejected elements.
    Any count-based score can be computed from one state: :meth:`scores` gives
    precision/recall/F-beta/specificity with any averaging (all jit-able).
    """

    matrix: jax.Array = exact_sum_field(shape=_confusion_shape)
    invalid: jax.Array = exact_sum_field()

    @classmethod
    def from_inputs(cls, metric, preds, labels, mask=None, weights=None):
        """One batch's state; invalid elements raise eagerly (counted in ``invalid`` under jit).

        ``weights``: summed weights in the cells instead of counts."""
        counts, bad_labels, bad_preds, bad_weights = _confusion_and_invalid(
            preds,
            labels,
            task=metric.task,
            num_classes=metric.num_classes,
            threshold=metric.threshold,
            from_logits=metric.from_logits,
            top_k=getattr(metric, "top_k", 1),
            mask=mask,
            weights=weights,
        )
        n = 2 if metric.task != "multiclass" else metric.num_classes
        refuse(
            jnp.stack([bad_labels, bad_preds]),
            None,
            lambda bad: f"{int(bad[0])} label(s) outside [0, {n}) and {int(bad[1])} invalid "
            "prediction(s) (NaN scores or predicted labels out of range).",
        )
        refuse(bad_weights, None, invalid_weights_message("elements"))
        matrix = numerics.df_from_int(counts) if weights is None else numerics.df_from(counts)
        return cls(
            parent=metric,
            matrix=matrix,
            invalid=numerics.df_from_int(bad_labels + bad_preds + bad_weights),
        )

    # -- reading ------------------------------------------------------------------------
    def counts(self):
        """The confusion matrix as float32 (exact up to 2^24 per cell)."""
        return numerics.df_value(self.matrix)

    def counts_host(self) -> np.ndarray:
        """The exact confusion matrix as host int64 (eager only)."""
        m = np.asarray(self.matrix, np.float64)
        return (m[..., 0] + m[..., 1]).astype(np.int64)

    def checked(self, value):
        """``value``, refused when invalid inputs were seen: an error eagerly, NaN under jit."""
        return refuse(
            numerics.df_value(self.invalid),
            value,
            lambda _: f"{metric_name(self)}: {numerics.df_to_python(self.invalid)} input "
            "element(s) had a label out of range, a predicted label out of range or a NaN score "
            "(they were left out of the counts under jit); the value is refused.",
        )


def stat_scores(matrix, task: str):
    """Per-class ``(tp, fp, fn, tn)`` from a confusion matrix (binary: the positive class)."""
    m = jnp.asarray(matrix)
    if task == "binary":
        return m[1, 1], m[0, 1], m[1, 0], m[0, 0]
    if task == "multilabel":
        return m[:, 1, 1], m[:, 0, 1], m[:, 1, 0], m[:, 0, 0]
    tp = jnp.diagonal(m)
    fp = m.sum(axis=0) - tp
    fn = m.sum(axis=1) - tp
    tn = m.sum() - tp - fp - fn
    return tp, fp, fn, tn


def _ratio(num, den, zero_division):
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), zero_division)


def _score_parts(kind: str, tp, fp, fn, tn, beta: float = 1.0):
    """(numerator, denominator) of a count ratio."""
    if kind == "precision":
        return tp, tp + fp
    if kind == "recall":
        return tp, tp + fn
    if kind == "specificity":
        return tn, tn + fp
    if kind == "fbeta":
        b2 = beta * beta
        return (1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp
    raise ValueError(f"unknown score {kind!r}")


@functools.partial(jax.jit, static_argnames=("kind", "task", "average", "beta", "top_k"))
def score_from_confusion(
    matrix,
    kind: str,
    *,
    task: str,
    average: str = "macro",
    zero_division: float = 0.0,
    beta: float = 1.0,
    top_k: int = 1,
):
    """Precision / recall / F-beta / specificity from a confusion matrix (jit-able).

    ``precision = tp/(tp+fp)``, ``recall = tp/(tp+fn)``, ``specificity = tn/(tn+fp)``,
    ``F_beta = (1+b^2) tp / ((1+b^2) tp + b^2 fn + fp)``; a 0/0 ratio is ``zero_division``.
    ``binary`` gives the positive class (``average`` ignored). Otherwise ``average``:

    * ``"micro"``: the ratio of counts summed over classes;
    * ``"macro"``: the mean over classes; for multiclass only classes that occur (in labels or
      predictions, ``tp+fp+fn > 0``) count, as sklearn (labels present in y_true or y_pred)
      and torchmetrics; for multilabel every label counts (as sklearn);
    * ``"weighted"``: the mean weighted by support ``tp+fn``;
    * ``"none"``: per class (all ``num_classes`` entries; absent classes get ``zero_division``).

    With ``zero_division=nan``, undefined classes are left out of macro/weighted averages
    (sklearn's rule). An average over no class is ``zero_division``.

    ``top_k`` only changes the macro average of multiclass precision and recall: with
    ``top_k > 1`` the classes averaged are those present in the labels (``tp+fn > 0``), as
    torchmetrics 1.9 does (its F-beta and specificity keep the ``tp+fp+fn > 0`` rule). The
    matrix itself must come from ``confusion_counts(..., top_k=top_k)``.
    """
    tp, fp, fn, tn = stat_scores(matrix, task)
    if task == "binary":
        num, den = _score_parts(kind, tp, fp, fn, tn, beta)
        return _ratio(num, den, zero_division)
    if average == "micro":
        num, den = _score_parts(kind, tp.sum(), fp.sum(), fn.sum(), tn.sum(), beta)
        return _ratio(num, den, zero_division)
    num, den = _score_parts(kind, tp, fp, fn, tn, beta)
    per_class = _ratio(num, den, zero_division)
    if average == "none":
        return per_class
    by_support = top_k > 1 and kind in ("precision", "recall")
    return _average(per_class, tp, fp, fn, task, average, zero_division, by_support)


def _average(per_class, tp, fp, fn, task, average, zero_division, by_support=False):
    if average == "weighted":
        weights = tp + fn
    elif average == "macro":
        if task != "multiclass":
            present = jnp.ones_like(tp, bool)
        else:
            present = (tp + fn if by_support else tp + fp + fn) > 0
        weights = present.astype(per_class.dtype)
    else:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    defined = ~jnp.isnan(per_class)
    weights = jnp.where(defined, weights, 0)
    total = weights.sum()
    value = jnp.sum(jnp.where(weights > 0, per_class * weights, 0))
    return jnp.where(total > 0, value / jnp.where(total > 0, total, 1), zero_division)


@functools.partial(jax.jit, static_argnames=("task", "average"))
def balanced_accuracy_from_confusion(matrix, *, task: str, average: str = "macro"):
    """Mean recall over the classes present in the labels (sklearn ``balanced_accuracy_score``).

    Binary / multiclass: ``mean_{c: support_c > 0} tp_c / support_c`` (NaN when no label
    was seen). Multilabel: each label's binary balanced accuracy (its 2x2 matrix), then
    ``average`` over labels (``"micro"``: of the summed 2x2 matrix; ``"none"``: per label).
    """
    m = jnp.asarray(matrix)
    if task == "multilabel":
        if average == "micro":
            return balanced_accuracy_from_confusion(m.sum(0), task="binary")
        per_label = jax.vmap(lambda x: balanced_accuracy_from_confusion(x, task="binary"))(m)
        if average == "none":
            return per_label
        support = m[:, 1, :].sum(-1)
        weights = support if average == "weighted" else jnp.ones_like(support)
        weights = jnp.where(jnp.isnan(per_label), 0, weights)
        total = weights.sum()
        return jnp.where(
            total > 0,
            jnp.sum(jnp.where(weights > 0, per_label * weights, 0))
            / jnp.where(total > 0, total, 1),
            jnp.nan,
        )
    support = m.sum(axis=1)
    recall = jnp.diagonal(m) / jnp.where(support > 0, support, 1)
    present = support > 0
    n = present.sum()
    return jnp.where(n > 0, jnp.sum(jnp.where(present, recall, 0)) / jnp.maximum(n, 1), jnp.nan)


def _flatten_multilabel(m, task):
    return m.sum(0) if task == "multilabel" else m


@functools.partial(jax.jit, static_argnames=("task",))
def matthews_corrcoef_from_confusion(matrix, *, task: str):
    """Matthews correlation coefficient (sklearn's multiclass R_K statistic), jit-able.

    With ``t`` the true-class and ``p`` the predicted-class frequencies (fractions of the
    total ``s``) and ``c`` the fraction correct:
    ``MCC = (c - t.p) / sqrt((1 - p.p)(1 - t.t))``, 0 when the denominator is 0 (sklearn).
    Multilabel: the MCC of the summed 2x2 matrices (all label decisions pooled, as
    torchmetrics). Fractions, not raw counts, keep float32 products well scaled.
    """
    m = _flatten_multilabel(jnp.asarray(matrix), task)
    total = m.sum()
    scale = jnp.where(total > 0, total, 1)
    frac = m / scale
    t, p, c = frac.sum(axis=1), frac.sum(axis=0), jnp.trace(frac)
    cov_tp = c - t @ p
    cov_pp = 1 - p @ p
    cov_tt = 1 - t @ t
    den = cov_pp * cov_tt
    return jnp.where(den > 0, cov_tp / jnp.sqrt(jnp.where(den > 0, den, 1)), 0.0)


@functools.partial(jax.jit, static_argnames=("task", "weights"))
def cohen_kappa_from_confusion(matrix, *, task: str, weights: str | None = None):
    """Cohen's kappa: ``1 - sum(w * O) / sum(w * E)`` with ``E = outer(rows, cols) / n`` (jit-able).

    ``w`` is ``1 - I`` (unweighted), ``|i - j|`` (``"linear"``) or ``(i - j)^2``
    (``"quadratic"``), with class indices ``0..C-1`` (sklearn with ``labels=range(C)``).
    Undefined (``sum(w * E) = 0``, e.g. one class only) gives NaN, as sklearn 1.9.
    Multilabel: the kappa of the summed 2x2 matrices.
    """
    m = _flatten_multilabel(jnp.asarray(matrix), task)
    n = m.shape[0]
    i, j = jnp.meshgrid(jnp.arange(n), jnp.arange(n), indexing="ij")
    if weights is None:
        w = (i != j).astype(m.dtype)
    elif weights == "linear":
        w = jnp.abs(i - j).astype(m.dtype)
    elif weights == "quadratic":
        w = jnp.square(i - j).astype(m.dtype)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    total = m.sum()
    scale = jnp.where(total > 0, total, 1)
    frac = m / scale
    expected = jnp.outer(frac.sum(axis=1), frac.sum(axis=0))
    den = jnp.sum(w * expected)
    return jnp.where(den > 0, 1 - jnp.sum(w * frac) / jnp.where(den > 0, den, 1), jnp.nan)


class _ConfusionMetric(Metric):
    """Shared configuration of the count-based metrics (see the module docstring)."""

    preds: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    task: str = "multiclass"
    num_classes: int | None = None
    threshold: float = 0.5
    from_logits: bool = False

    eager_compile = True

    def __post_init__(self):
        _check_task(self.task, self.num_classes)
        average = getattr(self, "average", "macro")
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")

    State = ConfusionState

    def get_state(
        self,
        preds: Shaped[Array, "..."],
        labels: Shaped[Array, "..."],
        mask: Shaped[Array, "..."] | None = None,
    ) -> ConfusionState:
        return self.State.from_inputs(self, preds, labels, mask)

    def state_sharing_key(self):
        # Weighted and unweighted counts differ: a metric reading sample weights shares its
        # matrix only with metrics reading the same weights.
        key = self._counts_key()
        sample_weights = getattr(self, "sample_weights_key", None)
        return key if sample_weights is None else (*key, ("weights", sample_weights))

    def _counts_key(self):
        # Every count-based score reads one confusion matrix: in a Collection, precision,
        # recall, F1, MCC, kappa, ... on the same inputs share it. A top-k score counts
        # other predictions, so its matrix is another one (top_k=1 keeps the old key).
        key = (ConfusionState, self.task, self.num_classes, self.threshold, self.from_logits)
        top_k = getattr(self, "top_k", 1)
        return key if top_k == 1 else (*key, ("top_k", top_k))


class _WeightedConfusion(_ConfusionMetric):
    """A count-based metric that also takes sample weights (``weights``, over the leading
    axes of the labels): every sum of counts becomes a sum of weights (sklearn's
    ``sample_weight``)."""

    weights: Key | None = None

    @property
    def sample_weights_key(self):
        return self.weights

    def get_state(
        self,
        preds: Shaped[Array, "..."],
        labels: Shaped[Array, "..."],
        mask: Shaped[Array, "..."] | None = None,
        weights: Shaped[Array, "..."] | None = None,
    ) -> ConfusionState:
        return self.State.from_inputs(self, preds, labels, mask, weights)


class _AveragedScore(_WeightedConfusion):
    """A count ratio with ``average``, ``zero_division`` and (multiclass) ``top_k``.

    ``top_k > 1`` needs multiclass scores: an example counts as predicting its label when the
    label is among its ``top_k`` largest scores, else its arg-max (torchmetrics' top-k rule;
    see :func:`confusion_counts` and :func:`score_from_confusion`). ``weights``: sample
    weights (see :class:`_WeightedConfusion`).
    """

    average: str = "macro"
    zero_division: float = 0.0
    top_k: int = 1

    _kind = "precision"

    def __post_init__(self):
        super().__post_init__()
        _check_top_k(self.top_k, self.task, self.num_classes)

    class State(ConfusionState):
        def compute(self):
            m = self.parent
            value = score_from_confusion(
                self.counts(),
                m._kind,
                task=m.task,
                average=m.average,
                zero_division=m.zero_division,
                beta=getattr(m, "beta", 1.0),
                top_k=m.top_k,
            )
            return self.checked(value)


class Precision(_AveragedScore):
    """Precision ``tp / (tp + fp)`` from exact global counts (see ``score_from_confusion``).

    sklearn ``precision_score`` with ``zero_division`` (default 0, no warning); binary: the
    positive class; ``average`` micro / macro / weighted / none. jit-able compute.
    ``top_k`` (multiclass scores): torchmetrics' top-k precision, see :class:`_AveragedScore`.
    """

    _kind = "precision"


class Recall(_AveragedScore):
    """Recall (sensitivity) ``tp / (tp + fn)`` from exact global counts; sklearn ``recall_score``.

    ``top_k`` (multiclass scores): torchmetrics' top-k recall (the label among the k largest
    scores counts as a hit), see :class:`_AveragedScore`.
    """

    _kind = "recall"


class FBetaScore(_AveragedScore):
    """F-beta ``(1+b^2) tp / ((1+b^2) tp + b^2 fn + fp)``; sklearn ``fbeta_score``."""

    beta: float = 1.0
    _kind = "fbeta"


class F1Score(_AveragedScore):
    """F1 ``2 tp / (2 tp + fp + fn)`` (F-beta with beta = 1); sklearn ``f1_score``.

    ``top_k`` (multiclass scores): torchmetrics' top-k F1, see :class:`_AveragedScore`.
    """

    _kind = "fbeta"


class Specificity(_AveragedScore):
    """Specificity (true-negative rate) ``tn / (tn + fp)``; torchmetrics ``specificity``.

    Macro averaging follows the same rule as precision (multiclass: classes that occur).
    """

    _kind = "specificity"


class BalancedAccuracy(_WeightedConfusion):
    """Balanced accuracy: mean recall over classes present in the labels (sklearn).

    See :func:`balanced_accuracy_from_confusion`; ``average`` only matters for multilabel.
    NaN when no example was seen.
    """

    average: str = "macro"

    class State(ConfusionState):
        def compute(self):
            m = self.parent
            return self.checked(
                balanced_accuracy_from_confusion(self.counts(), task=m.task, average=m.average)
            )


class MatthewsCorrCoef(_WeightedConfusion):
    """Matthews correlation coefficient; see :func:`matthews_corrcoef_from_confusion`."""

    class State(ConfusionState):
        def compute(self):
            return self.checked(
                matthews_corrcoef_from_confusion(self.counts(), task=self.parent.task)
            )


class CohenKappa(_ConfusionMetric):
    """Cohen's kappa (``weights`` None / linear / quadratic); see :func:`cohen_kappa_from_confusion`."""

    weights: str | None = None

    class State(ConfusionState):
        def compute(self):
            m = self.parent
            return self.checked(
                cohen_kappa_from_confusion(self.counts(), task=m.task, weights=m.weights)
            )


class ConfusionMatrix(_ConfusionMetric):
    """The confusion matrix (rows true, columns predicted), optionally normalised as sklearn.

    ``normalize=None``: int32 counts (exact below 2^31; ``state.counts_host()`` gives exact
    int64 beyond); ``"true"`` (rows sum to 1), ``"pred"`` (columns) or ``"all"``: float32,
    0/0 gives 0 (sklearn). Shapes ``(2, 2)``, ``(C, C)`` or ``(L, 2, 2)``. jit-able.
    """

    normalize: str | None = None

    class State(ConfusionState):
        def compute(self):
            norm = self.parent.normalize
            if norm is None:
                hi, lo = self.matrix[..., 0], self.matrix[..., 1]
                return self.checked(hi.astype(jnp.int32) + lo.astype(jnp.int32))
            m = self.counts()
            if norm == "true":
                den = m.sum(axis=-1, keepdims=True)
            elif norm == "pred":
                den = m.sum(axis=-2, keepdims=True)
            elif norm == "all":
                den = m.sum(axis=(-2, -1), keepdims=True)
            else:
                raise ValueError(
                    f"ConfusionMatrix: normalize must be None, 'true', 'pred' or 'all', got {norm!r}"
                )
            return self.checked(_ratio(m, den, 0.0))


__all__ = [
    "ConfusionState",
    "confusion_counts",
    "stat_scores",
    "score_from_confusion",
    "balanced_accuracy_from_confusion",
    "matthews_corrcoef_from_confusion",
    "cohen_kappa_from_confusion",
    "Precision",
    "Recall",
    "F1Score",
    "FBetaScore",
    "Specificity",
    "BalancedAccuracy",
    "MatthewsCorrCoef",
    "CohenKappa",
    "ConfusionMatrix",
]
