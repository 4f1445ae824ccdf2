"""The maths of ROC and precision-recall curves: exact (numpy / jnp) and binned (jnp).

Pure functions on one binary problem (scores, 0/1 labels) or on binned per-threshold counts;
the metric classes and their states are in :mod:`metrix.classification.curves`.

Sample weights (sklearn's ``sample_weight``): the exact functions take optional ``weights``;
a row then counts ``w`` positives or negatives instead of one, so every cumulative count
below is a cumulative weight (sklearn's ``_binary_clf_curve``). ``None`` keeps exact integers.
"""

from __future__ import annotations

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from metrix.core.refuse import is_concrete

# ---------------------------------------------------------------------------------------
# Ranking: ROC / precision-recall curves and their areas
# ---------------------------------------------------------------------------------------


class UndefinedMetricWarning(UserWarning):
    """A value is undefined for the data seen (e.g. ROC AUC with one class only)."""


def threshold_grid(num_thresholds: int):
    """The binned thresholds: ``linspace(0, 1, num_thresholds)`` in float32 (as torchmetrics)."""
    return jnp.linspace(0.0, 1.0, num_thresholds, dtype=jnp.float32)


# -- exact, eager (numpy): sort once, cumulative sums, one point per distinct score ----------


def binary_distinct_points(scores, labels, weights=None):
    """``(tps, fps, thresholds)`` at each distinct score, highest first (numpy, eager).

    ``tps[i]`` / ``fps[i]`` count positives / negatives with ``score >= thresholds[i]``
    (with ``weights``: their summed weights, in float64); tied scores form one point
    (sklearn's ``_binary_clf_curve``, which also drops zero-weight rows: their scores are
    no points of the curve). One O(n log n) sort.
    """
    scores = np.asarray(scores).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if weights is not None:
        weights = np.asarray(weights, np.float64).reshape(-1)
        scores, labels, weights = (a[weights != 0] for a in (scores, labels, weights))
    if scores.size == 0:
        empty = np.zeros((0,), np.int64 if weights is None else np.float64)
        return empty, empty, scores[:0]
    order = np.argsort(-scores)  # ties need no stable order: each tie group is one point
    sorted_scores = scores[order]
    last = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    last = np.append(last, scores.size - 1)
    if weights is None:
        tps = np.cumsum(labels[order] == 1, dtype=np.int64)[last]
        fps = last + 1 - tps
        return tps, fps, sorted_scores[last]
    w = weights[order]
    tps = np.cumsum(w * (labels[order] == 1))[last]
    fps = np.cumsum(w * (labels[order] == 0))[last]
    return tps, fps, sorted_scores[last]


def binary_roc_curve(scores, labels, weights=None):
    """Exact ROC curve ``(fpr, tpr, thresholds)`` as sklearn ``roc_curve(drop_intermediate=False)``.

    Host numpy arrays of variable length (one point per distinct score, plus ``(0, 0)`` at
    threshold ``+inf``); eager only. One class only: the undefined rate is NaN (warning).
    ``weights``: sklearn's ``sample_weight``.
    """
    tps, fps, thresholds = binary_distinct_points(scores, labels, weights)
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


def binary_precision_recall_curve(scores, labels, weights=None):
    """Exact PR curve ``(precision, recall, thresholds)`` as sklearn ``precision_recall_curve``.

    Thresholds ascend (distinct scores); precision/recall have one more entry, the final
    ``(1, 0)``. With no positives recall is 1 everywhere (sklearn, with a warning). Eager.
    ``weights``: sklearn's ``sample_weight`` (a point of zero predicted weight has
    precision 0, as sklearn).
    """
    tps, fps, thresholds = binary_distinct_points(scores, labels, weights)
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros(tps.shape), where=predicted > 0)
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


def _roc_auc_np(scores, labels, weights=None) -> float:
    tps, fps, _ = binary_distinct_points(scores, labels, weights)
    if tps.size == 0 or tps[-1] <= 0 or fps[-1] <= 0:
        warnings.warn(
            "ROC AUC is undefined with only one class in the labels: NaN.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return math.nan
    tpr = np.r_[0, tps] / tps[-1]
    fpr = np.r_[0, fps] / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)


NO_POSITIVES = "Average precision with no positive samples is 0."


def _average_precision_np(scores, labels, weights=None) -> float:
    tps, fps, _ = binary_distinct_points(scores, labels, weights)
    if tps.size == 0 or tps[-1] <= 0:
        warnings.warn(NO_POSITIVES, UndefinedMetricWarning, stacklevel=3)
        return 0.0
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros(tps.shape), where=predicted > 0)
    recall_steps = np.diff(np.r_[0, tps]) / tps[-1]
    return float(np.sum(recall_steps * precision))


# -- exact, jit-able (jnp): fixed-size buffers, invalid rows sorted last --------------------


def _group_points_jax(scores, labels, valid, weights=None):
    """Per sorted position: cumulative (tp, fp), those before its tie group, and group ends.

    Counts are int32, or float32 cumulative weights given ``weights``."""
    key = jnp.where(valid, -scores, jnp.inf)
    if weights is None:
        pos = (valid & (labels == 1)).astype(jnp.int32)
        neg = (valid & (labels == 0)).astype(jnp.int32)
    else:
        w = jnp.asarray(weights, jnp.float32)
        pos = jnp.where(valid & (labels == 1), w, 0.0)
        neg = jnp.where(valid & (labels == 0), w, 0.0)
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


def _host_rows(scores, labels, valid, weights=None):
    """Concrete scores, labels and weights (or None) as numpy arrays, only the ``valid`` rows."""
    s, y = np.asarray(scores), np.asarray(labels)
    w = None if weights is None else np.asarray(weights)
    if valid is None:
        return s, y, w
    keep = np.asarray(valid, bool)
    return s[keep], y[keep], (None if w is None else w[keep])


def binary_roc_auc(scores, labels, valid=None, weights=None):
    """Exact ROC AUC with sklearn's tie handling (trapezoid between distinct-score points).

    ``AUC = sum_g (F_g - F_{g-1}) (T_g + T_{g-1}) / (2 P N)`` over tie groups ``g`` in
    descending score order (``T``, ``F``: cumulative positives / negatives). Concrete inputs
    run in numpy (one sort, fast); traced inputs run the jit-able jnp version (``valid``
    marks the rows to use). One class only: NaN (with a warning when eager). ``weights``:
    sklearn's ``sample_weight`` (``T``, ``F``, ``P``, ``N`` become summed weights).
    """
    if is_concrete(scores, labels, valid, weights):
        return _roc_auc_np(*_host_rows(scores, labels, valid, weights))
    valid = jnp.ones(jnp.shape(scores), bool) if valid is None else valid
    tps, fps, prev_tps, prev_fps, last = _group_points_jax(scores, labels, valid, weights)
    pos, neg = tps[-1].astype(jnp.float32), fps[-1].astype(jnp.float32)
    dfpr = (fps - prev_fps).astype(jnp.float32) / jnp.where(neg > 0, neg, 1)
    tpr_sum = (tps + prev_tps).astype(jnp.float32) / jnp.where(pos > 0, pos, 1)
    area = jnp.sum(jnp.where(last, dfpr * tpr_sum, 0)) / 2
    # (not pos > 0 but ~(pos <= 0): a NaN weight keeps the area NaN instead of undefined)
    return jnp.where((pos <= 0) | (neg <= 0), jnp.nan, area)


def binary_average_precision(scores, labels, valid=None, weights=None):
    """Exact average precision ``AP = sum_g (R_g - R_{g-1}) P_g`` over distinct scores (sklearn).

    No interpolation; 0 when there are no positives (sklearn, with a warning when eager).
    numpy for concrete inputs, jit-able jnp otherwise (as :func:`binary_roc_auc`);
    ``weights`` as there.
    """
    if is_concrete(scores, labels, valid, weights):
        return _average_precision_np(*_host_rows(scores, labels, valid, weights))
    valid = jnp.ones(jnp.shape(scores), bool) if valid is None else valid
    tps, fps, prev_tps, _, last = _group_points_jax(scores, labels, valid, weights)
    pos = tps[-1].astype(jnp.float32)
    predicted = (tps + fps).astype(jnp.float32)
    precision = jnp.where(predicted > 0, tps.astype(jnp.float32), 0) / jnp.where(
        predicted > 0, predicted, 1
    )
    steps = (tps - prev_tps).astype(jnp.float32) / jnp.where(pos > 0, pos, 1)
    return jnp.where(pos <= 0, 0.0, jnp.sum(jnp.where(last, steps * precision, 0)))


def multiclass_ovo_roc_auc(scores, labels, num_classes: int, valid=None, weighted=False):
    """Hand & Till's one-vs-one AUC (sklearn ``roc_auc_score(multi_class="ovo")``).

    ``M = mean_{a < b} (A(a|b) + A(b|a)) / 2``, with ``A(a|b)`` the AUC of score column
    ``a`` separating the rows labelled ``a`` (positives) from those labelled ``b``. Only pairs
    of classes present in the labels count (sklearn pairs the classes it sees);
    ``weighted=True`` weights a pair by its rows ``n_a + n_b`` (sklearn's
    ``average="weighted"``). ``scores`` ``(n, C)``, ``labels`` ``(n,)`` class indices,
    ``valid`` ``(n,)`` rows to use. NaN with fewer than 2 classes present. numpy for concrete
    inputs (eager), jit-able jnp otherwise.
    """
    pairs = np.array(list(itertools.combinations(range(num_classes), 2)), np.int32)
    if is_concrete(scores, labels, valid):
        s, y = np.asarray(scores), np.asarray(labels)
        if valid is not None:
            s, y = s[np.asarray(valid, bool)], y[np.asarray(valid, bool)]
        counts = np.bincount(y, minlength=num_classes)
        values, weights = [], []
        for a, b in pairs:
            if counts[a] and counts[b]:
                rows = (y == a) | (y == b)
                auc_a = _roc_auc_np(s[rows, a], y[rows] == a)
                auc_b = _roc_auc_np(s[rows, b], y[rows] == b)
                values.append((auc_a + auc_b) / 2)
                weights.append(counts[a] + counts[b])
        if not values:
            warnings.warn(
                "One-vs-one ROC AUC is undefined with fewer than 2 classes in the labels: NaN.",
                UndefinedMetricWarning,
                stacklevel=3,
            )
            return float("nan")
        return float(np.average(values, weights=weights if weighted else None))
    valid = jnp.ones(labels.shape, bool) if valid is None else valid
    counts = jnp.sum(valid[:, None] & (labels[:, None] == jnp.arange(num_classes)), axis=0)

    def pair_auc(a, b):
        rows = valid & ((labels == a) | (labels == b))
        auc_a = binary_roc_auc(scores[:, a], (labels == a).astype(jnp.int32), rows)
        auc_b = binary_roc_auc(scores[:, b], (labels == b).astype(jnp.int32), rows)
        return (auc_a + auc_b) / 2

    a, b = pairs[:, 0], pairs[:, 1]
    values = jax.vmap(pair_auc)(a, b)
    present = (counts[a] > 0) & (counts[b] > 0)
    weights = jnp.where(present, counts[a] + counts[b] if weighted else 1, 0).astype(jnp.float32)
    return jnp.sum(jnp.where(present, values * weights, 0)) / jnp.sum(weights)  # 0/0: NaN


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
