"""ROC and precision-recall curves and their areas (exact buffers or binned counts)."""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Shaped

from metrix.classification._common import _AVERAGES, _check_task
from metrix.core import numerics
from metrix.core.buffers import BufferState
from metrix.core.fields import concat_field, exact_sum_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import is_concrete, metric_name, refuse
from metrix.core.state import State

# ---------------------------------------------------------------------------------------
# Ranking: ROC / precision-recall curves and their areas
# ---------------------------------------------------------------------------------------


class UndefinedMetricWarning(UserWarning):
    """A value is undefined for the data seen (e.g. ROC AUC with one class only)."""


def threshold_grid(num_thresholds: int):
    """The binned thresholds: ``linspace(0, 1, num_thresholds)`` in float32 (as torchmetrics)."""
    return jnp.linspace(0.0, 1.0, num_thresholds, dtype=jnp.float32)


# -- exact, eager (numpy): sort once, cumulative sums, one point per distinct score ----------


def binary_distinct_points(scores, labels):
    """``(tps, fps, thresholds)`` at each distinct score, highest first (numpy, eager).

    ``tps[i]`` / ``fps[i]`` count positives / negatives with ``score >= thresholds[i]``;
    tied scores form one point (sklearn's ``_binary_clf_curve``). One O(n log n) sort.
    """
    scores = np.asarray(scores).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.size == 0:
        empty = np.zeros((0,), np.int64)
        return empty, empty, scores[:0]
    order = np.argsort(-scores)  # ties need no stable order: each tie group is one point
    sorted_scores = scores[order]
    last = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    last = np.append(last, scores.size - 1)
    tps = np.cumsum(labels[order] == 1, dtype=np.int64)[last]
    fps = last + 1 - tps
    return tps, fps, sorted_scores[last]


def binary_roc_curve(scores, labels):
    """Exact ROC curve ``(fpr, tpr, thresholds)`` as sklearn ``roc_curve(drop_intermediate=False)``.

    Host numpy arrays of variable length (one point per distinct score, plus ``(0, 0)`` at
    threshold ``+inf``); eager only. One class only: the undefined rate is NaN (warning).
    """
    tps, fps, thresholds = binary_distinct_points(scores, labels)
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    pos, neg = tps[-1], fps[-1]
    if neg == 0:
        warnings.warn(
            "No negative samples: the false-positive rate is NaN.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    if pos == 0:
        warnings.warn(
            "No positive samples: the true-positive rate is NaN.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / neg if neg else np.full(fps.shape, np.nan)
        tpr = tps / pos if pos else np.full(tps.shape, np.nan)
    return fpr, tpr, np.r_[np.inf, thresholds]


def binary_precision_recall_curve(scores, labels):
    """Exact PR curve ``(precision, recall, thresholds)`` as sklearn ``precision_recall_curve``.

    Thresholds ascend (distinct scores); precision/recall have one more entry, the final
    ``(1, 0)``. With no positives recall is 1 everywhere (sklearn, with a warning). Eager.
    """
    tps, fps, thresholds = binary_distinct_points(scores, labels)
    precision = tps / np.maximum(tps + fps, 1)
    if tps.size == 0 or tps[-1] == 0:
        warnings.warn(
            "No positive samples: recall is set to 1 for all thresholds.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        recall = np.ones(tps.shape)
    else:
        recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def _roc_auc_np(scores, labels) -> float:
    tps, fps, _ = binary_distinct_points(scores, labels)
    if tps.size == 0 or tps[-1] == 0 or fps[-1] == 0:
        warnings.warn(
            "ROC AUC is undefined with only one class in the labels: NaN.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return math.nan
    tpr = np.r_[0, tps] / tps[-1]
    fpr = np.r_[0, fps] / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)


def _average_precision_np(scores, labels) -> float:
    tps, fps, _ = binary_distinct_points(scores, labels)
    if tps.size == 0 or tps[-1] == 0:
        warnings.warn(
            "Average precision with no positive samples is 0.", UndefinedMetricWarning, stacklevel=3
        )
        return 0.0
    precision = tps / (tps + fps)
    recall_steps = np.diff(np.r_[0, tps]) / tps[-1]
    return float(np.sum(recall_steps * precision))


# -- exact, jit-able (jnp): fixed-size buffers, invalid rows sorted last --------------------


def _group_points_jax(scores, labels, valid):
    """Per sorted position: cumulative (tp, fp), those before its tie group, and group ends."""
    key = jnp.where(valid, -scores, jnp.inf)
    pos = (valid & (labels == 1)).astype(jnp.int32)
    neg = (valid & (labels == 0)).astype(jnp.int32)
    key, pos, neg = jax.lax.sort((key, pos, neg), num_keys=1)
    tps, fps = jnp.cumsum(pos), jnp.cumsum(neg)
    n = key.shape[0]
    new_group = key[1:] != key[:-1]
    first = jnp.concatenate([jnp.ones((1,), bool), new_group])
    last = jnp.concatenate([new_group, jnp.ones((1,), bool)])
    start = jax.lax.cummax(jnp.where(first, jnp.arange(n), 0))
    before = jnp.maximum(start - 1, 0)
    prev_tps = jnp.where(start > 0, tps[before], 0)
    prev_fps = jnp.where(start > 0, fps[before], 0)
    return tps, fps, prev_tps, prev_fps, last


def _host_rows(scores, labels, valid):
    """Concrete scores and labels as numpy arrays, only the ``valid`` rows."""
    s, y = np.asarray(scores), np.asarray(labels)
    if valid is None:
        return s, y
    keep = np.asarray(valid, bool)
    return s[keep], y[keep]


def binary_roc_auc(scores, labels, valid=None):
    """Exact ROC AUC with sklearn's tie handling (trapezoid between distinct-score points).

    ``AUC = sum_g (F_g - F_{g-1}) (T_g + T_{g-1}) / (2 P N)`` over tie groups ``g`` in
    descending score order (``T``, ``F``: cumulative positives / negatives). Concrete inputs
    run in numpy (one sort, fast); traced inputs run the jit-able jnp version (``valid``
    marks the rows to use). One class only: NaN (with a warning when eager).
    """
    if is_concrete(scores, labels, valid):
        return _roc_auc_np(*_host_rows(scores, labels, valid))
    valid = jnp.ones(jnp.shape(scores), bool) if valid is None else valid
    tps, fps, prev_tps, prev_fps, last = _group_points_jax(scores, labels, valid)
    pos, neg = tps[-1].astype(jnp.float32), fps[-1].astype(jnp.float32)
    dfpr = (fps - prev_fps).astype(jnp.float32) / jnp.maximum(neg, 1)
    tpr_sum = (tps + prev_tps).astype(jnp.float32) / jnp.maximum(pos, 1)
    area = jnp.sum(jnp.where(last, dfpr * tpr_sum, 0)) / 2
    return jnp.where((pos > 0) & (neg > 0), area, jnp.nan)


def binary_average_precision(scores, labels, valid=None):
    """Exact average precision ``AP = sum_g (R_g - R_{g-1}) P_g`` over distinct scores (sklearn).

    No interpolation; 0 when there are no positives (sklearn, with a warning when eager).
    numpy for concrete inputs, jit-able jnp otherwise (as :func:`binary_roc_auc`).
    """
    if is_concrete(scores, labels, valid):
        return _average_precision_np(*_host_rows(scores, labels, valid))
    valid = jnp.ones(jnp.shape(scores), bool) if valid is None else valid
    tps, fps, prev_tps, _, last = _group_points_jax(scores, labels, valid)
    pos = tps[-1].astype(jnp.float32)
    precision = tps.astype(jnp.float32) / jnp.maximum(tps + fps, 1).astype(jnp.float32)
    steps = (tps - prev_tps).astype(jnp.float32) / jnp.maximum(pos, 1)
    return jnp.where(pos > 0, jnp.sum(jnp.where(last, steps * precision, 0)), 0.0)


# -- binned: per-threshold counts ----------------------------------------------------------


def _binned_tp_fp(positives, negatives):
    """Counts with ``score >= t_j`` per threshold ``j`` (ascending) from bin histograms."""

    def at_or_above(h):
        return jnp.flip(jnp.cumsum(jnp.flip(h, -1), axis=-1), -1)[..., 1:]

    return at_or_above(positives), at_or_above(negatives)


@jax.jit
def binned_roc_curve(positives, negatives):
    """ROC points ``(fpr, tpr, thresholds)`` from binned counts, thresholds descending (jit-able).

    Length ``N + 1``: ``(0, 0)`` at ``+inf`` then one point per grid threshold. ``positives``
    / ``negatives`` are ``(..., N + 1)`` histograms of bin ``searchsorted(grid, s, 'right')``.
    """
    tp, fp = _binned_tp_fp(positives, negatives)
    pos, neg = positives.sum(-1, keepdims=True), negatives.sum(-1, keepdims=True)
    zero = jnp.zeros(tp.shape[:-1] + (1,), tp.dtype)
    tpr = jnp.concatenate([zero, jnp.flip(tp, -1)], -1) / jnp.where(pos > 0, pos, jnp.nan)
    fpr = jnp.concatenate([zero, jnp.flip(fp, -1)], -1) / jnp.where(neg > 0, neg, jnp.nan)
    grid = threshold_grid(tp.shape[-1])
    thresholds = jnp.concatenate([jnp.array([jnp.inf], jnp.float32), jnp.flip(grid)])
    return fpr, tpr, thresholds


@jax.jit
def binned_roc_auc(positives, negatives):
    """Trapezoidal area under the binned ROC curve (jit-able); NaN with one class only."""
    fpr, tpr, _ = binned_roc_curve(positives, negatives)
    return jnp.sum(jnp.diff(fpr, axis=-1) * (tpr[..., 1:] + tpr[..., :-1]), axis=-1) / 2


@jax.jit
def binned_precision_recall_curve(positives, negatives):
    """PR points from binned counts, thresholds ascending (jit-able).

    ``precision``/``recall`` have ``N + 1`` entries (the last is ``(1, 0)``), thresholds ``N``.
    A threshold above every score has precision 1 (torchmetrics); no positives: recall 1.
    """
    tp, fp = _binned_tp_fp(positives, negatives)
    pos = positives.sum(-1, keepdims=True)
    predicted = tp + fp
    precision = jnp.where(predicted > 0, tp / jnp.where(predicted > 0, predicted, 1), 1.0)
    recall = jnp.where(pos > 0, tp / jnp.where(pos > 0, pos, 1), 1.0)
    one = jnp.ones(tp.shape[:-1] + (1,), tp.dtype)
    return (
        jnp.concatenate([precision, one], -1),
        jnp.concatenate([recall, 0 * one], -1),
        threshold_grid(tp.shape[-1]),
    )


@jax.jit
def binned_average_precision(positives, negatives):
    """``AP = sum_j (R_j - R_{j+1}) P_j`` over the grid (jit-able); 0 with no positives."""
    precision, recall, _ = binned_precision_recall_curve(positives, negatives)
    ap = jnp.sum((recall[..., :-1] - recall[..., 1:]) * precision[..., :-1], axis=-1)
    return jnp.where(positives.sum(-1) > 0, ap, 0.0)


# -- inputs and states -----------------------------------------------------------------------


def _score_rows(task, num_classes, preds, labels, mask):
    """Flatten ``(*b, ...)`` inputs to rows; returns scores, labels, row mask, bad-row flags."""
    preds = jnp.asarray(preds)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(preds.dtype, jnp.floating):
        raise TypeError(f"preds must be floating scores, got {preds.dtype}")
    labels = labels.astype(jnp.int32) if labels.dtype == jnp.bool_ else labels
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers or booleans, got {labels.dtype}")
    preds, labels = preds.astype(jnp.float32), labels.astype(jnp.int32)
    if task == "binary":
        if preds.shape != labels.shape:
            raise ValueError(
                f"binary preds {preds.shape} and labels {labels.shape} must have one shape"
            )
        row_shape = labels.shape
        scores, y = preds.reshape(-1), labels.reshape(-1)
        bad = jnp.isnan(scores) | (y < 0) | (y > 1)
    else:
        if preds.ndim < 1 or preds.shape[-1] != num_classes:
            raise ValueError(
                f"preds must have shape (*b, num_classes={num_classes}), got {preds.shape}"
            )
        row_shape = preds.shape[:-1]
        scores = preds.reshape(-1, num_classes)
        if task == "multiclass":
            if labels.shape != row_shape:
                raise ValueError(
                    f"multiclass labels must have shape {row_shape} (class indices), got {labels.shape}"
                )
            y = labels.reshape(-1)
            bad = (y < 0) | (y >= num_classes)
        else:
            if labels.shape != preds.shape:
                raise ValueError(
                    f"multilabel labels must have shape {preds.shape}, got {labels.shape}"
                )
            y = labels.reshape(-1, num_classes)
            bad = jnp.any((y < 0) | (y > 1), axis=-1)
        bad = bad | jnp.any(jnp.isnan(scores), axis=-1)
    keep = broadcast_mask(mask, row_shape).reshape(-1)
    return scores, y, keep, bad


def _refuse_bad_rows(task, num_classes, n_bad):
    """Refuse masked-in rows with NaN scores or bad labels (eagerly; counted under jit)."""
    limit = num_classes if task == "multiclass" else 2
    refuse(n_bad, None, lambda n: f"{n} example(s) with a NaN score or a label outside [0, {limit}).")


def _score_item_shape(m):
    return () if m.task == "binary" else (m.num_classes,)


def _label_item_shape(m):
    return (m.num_classes,) if m.task == "multilabel" else ()


def _num_columns(m):
    return 1 if m.task == "binary" else m.num_classes


_STORED_BAD_ROWS = (
    "{}: stored rows hold NaN scores or labels out of range (accepted under jit); the value is "
    "refused."
)


class ScoresState(BufferState):
    """Every (score, label) row in a fixed-capacity buffer: exact curves and areas.

    Rows: binary ``()`` scores and labels; multiclass ``(C,)`` scores and a class index;
    multilabel ``(L,)`` scores and ``(L,)`` labels. Merging is jit-safe (O(capacity)).
    ``compute`` is eager numpy for concrete states (fast) and jnp under ``jit`` for areas;
    exact curves (variable length) are eager only.
    """

    scores: jax.Array = concat_field(item_shape=_score_item_shape, dtype=jnp.float32)
    labels: jax.Array = concat_field(item_shape=_label_item_shape, dtype=jnp.int32)

    @classmethod
    def from_inputs(cls, metric, preds, labels, mask=None):
        """One batch's rows in a new buffer; bad rows raise eagerly (under jit: kept, refused
        at compute)."""
        scores, y, keep, bad = _score_rows(metric.task, metric.num_classes, preds, labels, mask)
        _refuse_bad_rows(metric.task, metric.num_classes, jnp.sum(keep & bad))
        return cls.from_rows(
            capacity=metric.capacity, mask=keep, parent=metric, scores=scores, labels=y
        )

    def bad_rows(self):
        """Jit-safe flag: a stored row has a NaN score or an out-of-range label."""
        m, valid = self.parent, self.valid_mask()
        scores = self.scores if self.scores.ndim == 2 else self.scores[:, None]
        labels = self.labels if self.labels.ndim == 2 else self.labels[:, None]
        limit = m.num_classes if m.task == "multiclass" else 2
        bad = jnp.any(jnp.isnan(scores), -1) | jnp.any((labels < 0) | (labels >= limit), -1)
        return jnp.any(valid & bad)

    def columns(self, micro: bool = False):
        """``(scores, labels01, valid)`` per binary problem, shapes ``(K, capacity)``.

        Binary: one problem; multiclass: one-vs-rest per class; multilabel: per label;
        ``micro=True``: all decisions pooled into one problem of ``capacity * K`` rows.
        """
        m, valid = self.parent, self.valid_mask()
        if m.task == "binary":
            return self.scores[None], self.labels[None], valid[None]
        if m.task == "multiclass":
            labels = (self.labels[:, None] == jnp.arange(m.num_classes)).astype(jnp.int32)
        else:
            labels = self.labels
        valid = jnp.broadcast_to(valid[:, None], labels.shape)
        if micro:
            return self.scores.reshape(1, -1), labels.reshape(1, -1), valid.reshape(1, -1)
        return self.scores.T, labels.T, valid.T

    def host_columns(self, micro: bool = False):
        """As :meth:`columns`, trimmed to the stored rows, as lists of host numpy arrays.

        Eager only; refuses an overflowed buffer and rows with NaN scores or bad labels
        (checked in numpy on the host copy, no device round trips).
        """
        self.check_capacity(None)
        rows = self.rows()
        scores, labels, m = rows["scores"], rows["labels"], self.parent
        limit = m.num_classes if m.task == "multiclass" else 2
        bad = np.isnan(scores).any() or (labels < 0).any() or (labels >= limit).any()
        refuse(bad, None, _STORED_BAD_ROWS.format(metric_name(self)))
        if m.task == "binary":
            return [scores], [labels]
        if m.task == "multiclass":
            labels = (labels[:, None] == np.arange(m.num_classes)).astype(np.int32)
        if micro:
            return [scores.reshape(-1)], [labels.reshape(-1)]
        return list(scores.T), list(labels.T)

    def support(self):
        """Positives per class (weights of ``average="weighted"``)."""
        _, labels, valid = self.columns()
        return jnp.sum(jnp.where(valid, labels, 0), axis=-1).astype(jnp.float32)

    def checked(self, value):
        """Refuse overflowed buffers and bad rows: raise eagerly, NaN under jit."""
        value = self.check_capacity(value)
        return refuse(self.bad_rows(), value, _STORED_BAD_ROWS.format(metric_name(self)))

    def compute(self):
        return self.parent._compute_exact(self)


def binned_counts(
    preds, labels, *, task: str, num_classes: int | None = None, thresholds: int = 200, mask=None
):
    """Per-bin positive / negative counts of one batch: ``(K, N + 1)`` each (jit-safe).

    Bin ``searchsorted(grid, score, side="right")``: bin ``j`` holds scores in
    ``[t_{j-1}, t_j)`` (bin 0 below 0, bin N at or above 1). ``K`` is 1 (binary) or the
    number of classes / labels (one-vs-rest). Bad rows are left out.
    """
    pos, neg, invalid = _binned_counts(
        preds, labels, mask, task=task, num_classes=num_classes, thresholds=thresholds
    )
    _refuse_bad_rows(task, num_classes, invalid)
    return pos, neg


@functools.partial(jax.jit, static_argnames=("task", "num_classes", "thresholds"))
def _binned_counts(preds, labels, mask, *, task, num_classes, thresholds):
    scores, y, keep, bad = _score_rows(task, num_classes, preds, labels, mask)
    invalid = jnp.sum(keep & bad, dtype=jnp.float32)
    keep = keep & ~bad
    if task == "binary":
        scores, y = scores[:, None], y[:, None]
    elif task == "multiclass":
        y = (y[:, None] == jnp.arange(num_classes)).astype(jnp.int32)
    k = scores.shape[1]
    bins = jnp.searchsorted(threshold_grid(thresholds), scores.reshape(-1), side="right").reshape(
        scores.shape
    )
    index = jnp.arange(k, dtype=jnp.int32) * (thresholds + 1) + bins
    size = k * (thresholds + 1)

    def histogram(selected):
        where = jnp.where(keep[:, None] & selected, index, size).reshape(-1)
        return (
            jnp.zeros((size,), jnp.float32)
            .at[where]
            .add(1.0, mode="drop")
            .reshape(k, thresholds + 1)
        )

    return histogram(y == 1), histogram(y == 0), invalid


class BinnedScoresState(State):
    """Per-threshold positive / negative counts (exact), O(K N) memory; merges as sums."""

    positives: jax.Array = exact_sum_field(shape=lambda m: (_num_columns(m), m.thresholds + 1))
    negatives: jax.Array = exact_sum_field(shape=lambda m: (_num_columns(m), m.thresholds + 1))
    invalid: jax.Array = exact_sum_field()

    @classmethod
    def from_inputs(cls, metric, preds, labels, mask=None):
        """One batch's counts; bad rows raise eagerly (left out and counted under jit)."""
        pos, neg, invalid = _binned_counts(
            preds,
            labels,
            mask,
            task=metric.task,
            num_classes=metric.num_classes,
            thresholds=metric.thresholds,
        )
        _refuse_bad_rows(metric.task, metric.num_classes, invalid)
        return cls(
            parent=metric,
            positives=numerics.df_from(pos),
            negatives=numerics.df_from(neg),
            invalid=numerics.df_from(invalid),
        )

    def histograms(self, micro: bool = False):
        pos, neg = numerics.df_value(self.positives), numerics.df_value(self.negatives)
        if micro:
            return pos.sum(0, keepdims=True), neg.sum(0, keepdims=True)
        return pos, neg

    def support(self):
        return numerics.df_value(self.positives).sum(-1)

    def checked(self, value):
        """``value``, refused when bad rows were seen: an error eagerly, NaN under jit."""
        return refuse(
            numerics.df_value(self.invalid),
            value,
            lambda _: f"{metric_name(self)}: {numerics.df_to_python(self.invalid)} input "
            "example(s) had a NaN score or a label out of range (they were left out of the "
            "counts under jit); the value is refused.",
        )

    def compute(self):
        return self.parent._compute_binned(self)


def _warn_undefined(values, what):
    if is_concrete(values) and bool(jnp.any(jnp.isnan(values))):
        warnings.warn(
            f"{what} is undefined (NaN) for a class with only one label value.",
            UndefinedMetricWarning,
            stacklevel=4,
        )


def _average_classes(values, support, average):
    """sklearn's reduction of per-class areas: macro mean (NaN propagates), support-weighted."""
    if average == "none":
        return values
    if average == "macro":
        return jnp.mean(values)
    if average == "weighted":
        used = support > 0
        total = jnp.sum(jnp.where(used, support, 0))
        return jnp.sum(jnp.where(used, values * support, 0)) / total
    raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")


class _RankingMetric(Metric):
    """Shared configuration of the ROC / PR metrics (see the module docstring).

    ``thresholds=None``: exact, every row kept in a buffer of ``capacity`` rows (overflow
    is an error at compute). ``thresholds=N``: binned on ``linspace(0, 1, N)``; scores are
    expected in [0, 1] (probabilities): scores below 0 / above 1 fall in the end bins.

    Keys: ``preds`` (also accepted as ``logits``), ``labels`` (also ``targets``), ``mask``.
    """

    preds: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    # Kauldron's names: its RocAuc reads ``logits``/``labels``, its docs ``preds``/``targets``.
    logits: Key | None = None
    targets: Key | None = None
    task: str = "binary"
    num_classes: int | None = None
    thresholds: int | None = None
    capacity: int = 65536

    key_aliases = {"logits": "preds", "targets": "labels"}
    eager_compile = True

    def __post_init__(self):
        _check_task(self.task, self.num_classes)
        if self.thresholds is not None and (
            not isinstance(self.thresholds, int) or self.thresholds < 2
        ):
            raise ValueError(
                f"thresholds must be None (exact) or an int >= 2, got {self.thresholds!r}"
            )
        if self.thresholds is None and (not isinstance(self.capacity, int) or self.capacity < 1):
            raise ValueError(f"capacity must be a positive int, got {self.capacity!r}")
        average = getattr(self, "average", "macro")
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")

    State = ScoresState

    class BinnedState(BinnedScoresState):
        pass

    def get_state(
        self,
        preds: Float[Array, "..."],
        labels: Shaped[Array, "..."],
        mask: Shaped[Array, "..."] | None = None,
    ) -> State | BinnedState:
        if self.thresholds is None:
            return self.State.from_inputs(self, preds, labels, mask)
        return self.BinnedState.from_inputs(self, preds, labels, mask)

    def empty(self):
        """The identity of merge: an empty buffer (exact) or zero counts (binned)."""
        cls = self.State if self.thresholds is None else self.BinnedState
        return cls.empty(parent=self)


class _AreaMetric(_RankingMetric):
    average: str = "macro"

    def _area_exact(self, scores, labels, valid):
        raise NotImplementedError

    def _compute_exact(self, state: ScoresState):
        micro = self.average == "micro" and self.task != "binary"
        if is_concrete(state.scores, state.count):
            # Eager: everything on the host copy in numpy (one sort per column).
            scores, labels = state.host_columns(micro)
            values = np.array(
                [self._area_exact(s, y, None) for s, y in zip(scores, labels)], np.float32
            )
            support = np.array([np.sum(y) for y in labels], np.float32)
            return jnp.asarray(self._reduce(values, support, micro), jnp.float32)
        scores, labels, valid = state.columns(micro)
        values = jax.vmap(self._area_exact)(scores, labels, valid)
        return state.checked(self._reduce(values, state.support(), micro))

    def _compute_binned(self, state: BinnedScoresState):
        micro = self.average == "micro" and self.task != "binary"
        values = self._area_binned(*state.histograms(micro))
        return state.checked(self._reduce(values, state.support(), micro))

    def _reduce(self, values, support, micro):
        if self.task == "binary" or micro:
            return values[0]
        return _average_classes(values, support, self.average)


class RocAuc(_AreaMetric):
    """Area under the ROC curve; binary, multiclass one-vs-rest, multilabel.

    ``thresholds=None`` (exact): sklearn ``roc_auc_score`` (ties as sklearn; multiclass
    ``multi_class="ovr"``), ``average`` micro / macro / weighted (by positives) / none. A
    class with one label value only has NaN AUC (sklearn warns; so does metrix eagerly);
    ``"macro"`` then is NaN (as sklearn), ``"weighted"`` skips classes without positives.
    Eager compute runs numpy (one sort); under ``jit`` an O(capacity log capacity) jnp sort.

    ``thresholds=N`` (binned, jit-able, O(N) memory): equals the exact AUC when every score
    lies on the grid ``linspace(0, 1, N)``; otherwise scores are rounded down to the grid
    (scores in one bin count as tied). Measured |binned - exact| with N=200 on 10^5 scores
    spread over [0, 1]: ~2e-5 for AUC, ~3e-3 for AP (1e-6 / 5e-4 with N=1000); scores packed
    inside one grid step lose their order (AUC error 0.09 measured): use exact mode or a
    finer grid there (tests/reference/test_classification.py::test_binned_error_is_small).
    """

    def _area_exact(self, scores, labels, valid):
        return binary_roc_auc(scores, labels, valid)

    def _area_binned(self, positives, negatives):
        return binned_roc_auc(positives, negatives)

    def _reduce(self, values, support, micro):
        _warn_undefined(values, "ROC AUC")
        return super()._reduce(values, support, micro)


class AveragePrecision(_AreaMetric):
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` (sklearn ``average_precision_score``).

    Same tasks, averages and exact / binned modes as :class:`RocAuc`. A class without
    positives has AP 0 (sklearn, with a warning when eager). Binned AP equals exact AP when
    scores lie on the grid.
    """

    def _area_exact(self, scores, labels, valid):
        return binary_average_precision(scores, labels, valid)

    def _area_binned(self, positives, negatives):
        return binned_average_precision(positives, negatives)


class _CurveMetric(_RankingMetric):
    def _curve_exact(self, scores, labels):
        raise NotImplementedError

    def _compute_exact(self, state: ScoresState):
        if not is_concrete(state.scores, state.count):
            raise TypeError(
                f"{type(self).__name__}: the exact curve has a data-dependent length, so compute "
                "it eagerly (outside jit), or use thresholds=N for fixed-length binned curves."
            )
        columns = state.host_columns()
        curves = [self._curve_exact(s, y) for s, y in zip(*columns)]
        names = self._names
        if self.task == "binary":
            return dict(zip(names, curves[0]))
        return {name: [c[i] for c in curves] for i, name in enumerate(names)}

    def _compute_binned(self, state: BinnedScoresState):
        arrays = self._curve_binned(*state.histograms())
        if self.task == "binary":
            arrays = [a[0] if a.ndim == 2 else a for a in arrays]
        return state.checked(dict(zip(self._names, arrays)))


class RocCurve(_CurveMetric):
    """ROC curve points ready to plot: ``{"fpr", "tpr", "thresholds"}``, thresholds descending.

    Exact (``thresholds=None``, eager only): host numpy arrays of variable length, as
    sklearn ``roc_curve(drop_intermediate=False)`` (first point ``(0, 0)`` at ``+inf``);
    multiclass / multilabel: lists with one array per class (one-vs-rest). Binned
    (``thresholds=N``, jit-able): fixed length ``N + 1`` (``(K, N + 1)`` for K classes).
    """

    _names = ("fpr", "tpr", "thresholds")

    def _curve_exact(self, scores, labels):
        return binary_roc_curve(scores, labels)

    def _curve_binned(self, positives, negatives):
        return binned_roc_curve(positives, negatives)


class PrecisionRecallCurve(_CurveMetric):
    """PR curve points: ``{"precision", "recall", "thresholds"}``, thresholds ascending.

    Exact (eager only): sklearn ``precision_recall_curve`` (host numpy, variable length,
    last point ``(1, 0)``); per-class lists for multiclass / multilabel. Binned (jit-able):
    precision/recall of length ``N + 1``, thresholds ``N`` (leading K axis when K > 1).
    """

    _names = ("precision", "recall", "thresholds")

    def _curve_exact(self, scores, labels):
        return binary_precision_recall_curve(scores, labels)

    def _curve_binned(self, positives, negatives):
        return binned_precision_recall_curve(positives, negatives)


__all__ = [
    "UndefinedMetricWarning",
    "threshold_grid",
    "binary_distinct_points",
    "binary_roc_curve",
    "binary_precision_recall_curve",
    "binary_roc_auc",
    "binary_average_precision",
    "binned_counts",
    "binned_roc_curve",
    "binned_roc_auc",
    "binned_precision_recall_curve",
    "binned_average_precision",
    "ScoresState",
    "BinnedScoresState",
    "RocAuc",
    "AveragePrecision",
    "RocCurve",
    "PrecisionRecallCurve",
]
