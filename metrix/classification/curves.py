"""ROC and precision-recall curves and their areas: the metrics and their states.

Exact buffers of every (score, label, weight) row, or binned counts (``thresholds=N``); the
maths of one binary problem is in :mod:`metrix.classification.curve_math` (re-exported here).

Sample weights (``weights=``, sklearn's ``sample_weight``, one per example over the leading
axes; :mod:`metrix.core.weights`): a row counts ``w`` positives or negatives. The exact
buffer always stores a weight per row (1 when none is given, so unweighted values keep
exact integer counts eagerly); binned counts become summed weights.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Shaped

from metrix.classification._common import _AVERAGES, _check_task, infer_task, integral_labels
from metrix.classification.curve_math import (
    NO_POSITIVES,
    UndefinedMetricWarning,
    binary_average_precision,
    binary_distinct_points,
    binary_precision_recall_curve,
    binary_roc_auc,
    binary_roc_curve,
    binned_average_precision,
    binned_precision_recall_curve,
    binned_roc_auc,
    binned_roc_curve,
    multiclass_ovo_roc_auc,
    threshold_grid,
)
from metrix.core import numerics
from metrix.core import refuse as refuse_lib
from metrix.core.buffers import BufferState
from metrix.core.fields import concat_field, exact_sum_field, static_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import is_concrete, metric_name, refuse
from metrix.core.state import State
from metrix.core.weights import broadcast_weights, refuse_bad_weights

# -- inputs and states -----------------------------------------------------------------------


def _score_rows(task, num_classes, preds, labels, mask):
    """Flatten ``(*b, ...)`` inputs to rows; returns scores, labels, row mask, bad-row flags."""
    preds = jnp.asarray(preds)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(preds.dtype, jnp.floating):
        raise TypeError(f"preds must be floating scores, got {preds.dtype}")
    # Float labels of whole numbers (sklearn's [0., 1.]) are class ids; 0.7 is invalid (-1).
    labels, _ = integral_labels(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, booleans or whole floats, got {labels.dtype}")
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
            if labels.shape == row_shape + (1,):  # Kauldron's ``(*b, 1)`` class indices
                labels = labels[..., 0]
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
    if mask is not None and jnp.ndim(mask) == len(row_shape) + 1 and jnp.shape(mask)[-1] == 1:
        mask = jnp.asarray(mask)[..., 0]  # a ``(*b, 1)`` mask beside ``(*b, 1)`` labels
    keep = broadcast_mask(mask, row_shape).reshape(-1)
    return scores, y, keep, bad


def _row_weights(weights, row_shape, keep):
    """One float32 weight per row (ones for ``None``); an unmasked negative / NaN / infinite
    weight raises eagerly and is stored as NaN under jit (the value is then NaN)."""
    if weights is None:
        return jnp.ones(keep.shape, jnp.float32)
    w = broadcast_weights(weights, row_shape).reshape(-1).astype(jnp.float32)
    return refuse_bad_weights(w, keep)


def _row_shape(task, preds):
    return jnp.shape(preds) if task == "binary" else jnp.shape(preds)[:-1]


def _refuse_bad_rows(task, num_classes, n_bad):
    """Refuse masked-in rows with NaN scores or bad labels (eagerly; counted under jit)."""
    limit = num_classes if task == "multiclass" else 2
    refuse(n_bad, None, lambda n: f"{n} example(s) with a NaN score or a label outside [0, {limit}).")


# A metric without ``task`` has no row shapes before its first batch: its ``empty()`` holds
# zero-width rows (see _InferredTask).
def _score_item_shape(m):
    if m.task is None:
        return (0,)
    return () if m.task == "binary" else (m.num_classes,)


def _label_item_shape(m):
    if m.task is None:
        return (0,)
    return (m.num_classes,) if m.task == "multilabel" else ()


def _num_columns(m):
    if m.task is None:
        return 0
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
    weights: jax.Array = concat_field(dtype=jnp.float32)

    @classmethod
    def from_inputs(
        cls, metric, preds, labels, mask=None, task=None, num_classes=None, weights=None
    ):
        """One batch's rows in a new buffer; bad rows raise eagerly (under jit: kept, refused
        at compute). ``task`` / ``num_classes`` default to the metric's."""
        task, num_classes = task or metric.task, num_classes or metric.num_classes
        scores, y, keep, bad = _score_rows(task, num_classes, preds, labels, mask)
        _refuse_bad_rows(task, num_classes, jnp.sum(keep & bad))
        w = _row_weights(weights, _row_shape(task, preds), keep)
        return cls.from_rows(
            capacity=metric.capacity, mask=keep, parent=metric, scores=scores, labels=y, weights=w
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
        """``(scores, labels01, valid, weights)`` per binary problem, shapes ``(K, capacity)``.

        Binary: one problem; multiclass: one-vs-rest per class; multilabel: per label;
        ``micro=True``: all decisions pooled into one problem of ``capacity * K`` rows.
        """
        m, valid = self.parent, self.valid_mask()
        if m.task == "binary":
            return self.scores[None], self.labels[None], valid[None], self.weights[None]
        if m.task == "multiclass":
            labels = (self.labels[:, None] == jnp.arange(m.num_classes)).astype(jnp.int32)
        else:
            labels = self.labels
        valid = jnp.broadcast_to(valid[:, None], labels.shape)
        weights = jnp.broadcast_to(self.weights[:, None], labels.shape)
        if micro:
            flat = (self.scores, labels, valid, weights)
            return tuple(a.reshape(1, -1) for a in flat)
        return self.scores.T, labels.T, valid.T, weights.T

    def host_columns(self, micro: bool = False):
        """As :meth:`columns`, trimmed to the stored rows, as lists of host numpy arrays
        (weights: ``None`` per column when every stored weight is 1, for exact counts).

        Eager only; refuses an overflowed buffer and rows with NaN scores or bad labels
        (checked in numpy on the host copy, no device round trips).
        """
        scores, labels, weights = self.host_rows()
        m = self.parent
        if m.task == "binary":
            return [scores], [labels], [weights]
        if m.task == "multiclass":
            labels = (labels[:, None] == np.arange(m.num_classes)).astype(np.int32)
        if weights is not None:
            weights = np.broadcast_to(weights[:, None], labels.shape)
        if micro:
            flat = None if weights is None else weights.reshape(-1)
            return [scores.reshape(-1)], [labels.reshape(-1)], [flat]
        columns = [None] * labels.shape[1] if weights is None else list(weights.T)
        return list(scores.T), list(labels.T), columns

    def host_rows(self):
        """The stored ``(scores, labels, weights)`` rows as host numpy arrays (eager only;
        weights ``None`` when all are 1); refuses an overflowed buffer and rows with NaN
        scores or bad labels."""
        self.check_capacity(None)
        rows = self.rows()
        scores, labels, m = rows["scores"], rows["labels"], self.parent
        limit = m.num_classes if m.task == "multiclass" else 2
        bad = np.isnan(scores).any() or (labels < 0).any() or (labels >= limit).any()
        refuse(bad, None, _STORED_BAD_ROWS.format(metric_name(self)))
        weights = rows["weights"]
        return scores, labels, (None if np.all(weights == 1) else weights)

    def support(self):
        """Positives per class, weighted (weights of ``average="weighted"``, as sklearn)."""
        _, labels, valid, weights = self.columns()
        return jnp.sum(jnp.where(valid & (labels == 1), weights, 0), axis=-1).astype(jnp.float32)

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
        preds, labels, mask, None, task=task, num_classes=num_classes, thresholds=thresholds
    )
    _refuse_bad_rows(task, num_classes, invalid)
    return pos.astype(jnp.float32), neg.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("task", "num_classes", "thresholds"))
def _binned_counts(preds, labels, mask, weights, *, task, num_classes, thresholds):
    """int32 histograms, or float32 summed weights when ``weights`` (per row) is given."""
    scores, y, keep, bad = _score_rows(task, num_classes, preds, labels, mask)
    invalid = jnp.sum(keep & bad, dtype=jnp.int32)
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

    def histogram(selected):  # int32 counts: a float32 scatter-add stops at 2^24
        where = keep[:, None] & selected
        if weights is None:
            return numerics.bincount(index, size, where=where).reshape(k, thresholds + 1)
        w = jnp.where(where, weights[:, None], 0.0).reshape(-1)
        return jnp.zeros((size,), jnp.float32).at[index.reshape(-1)].add(w).reshape(k, -1)

    return histogram(y == 1), histogram(y == 0), invalid


class BinnedScoresState(State):
    """Per-threshold positive / negative counts (exact), O(K N) memory; merges as sums."""

    positives: jax.Array = exact_sum_field(shape=lambda m: (_num_columns(m), m.thresholds + 1))
    negatives: jax.Array = exact_sum_field(shape=lambda m: (_num_columns(m), m.thresholds + 1))
    invalid: jax.Array = exact_sum_field()

    @classmethod
    def from_inputs(
        cls, metric, preds, labels, mask=None, task=None, num_classes=None, weights=None
    ):
        """One batch's counts (summed weights with ``weights``); bad rows raise eagerly (left
        out and counted under jit)."""
        task, num_classes = task or metric.task, num_classes or metric.num_classes
        if weights is not None:
            _, _, keep, _ = _score_rows(task, num_classes, preds, labels, mask)
            weights = _row_weights(weights, _row_shape(task, preds), keep)
        pos, neg, invalid = _binned_counts(
            preds,
            labels,
            mask,
            weights,
            task=task,
            num_classes=num_classes,
            thresholds=metric.thresholds,
        )
        _refuse_bad_rows(task, num_classes, invalid)
        as_df = numerics.df_from_int if weights is None else numerics.df_from
        return cls(
            parent=metric,
            positives=as_df(pos),
            negatives=as_df(neg),
            invalid=numerics.df_from_int(invalid),
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


class _InferredTask:
    """The state of a metric built without ``task``: the task comes from the first batch.

    ``inferred`` is ``(task, num_classes)`` read from that batch's shapes
    (:func:`metrix.classification._common.infer_task`); states of different tasks do not
    merge. The metric's ``empty()`` has ``inferred=None`` and zero-width rows (its shapes are
    unknown): a placeholder that merges as the identity with any state of the metric.
    ``compute`` runs the metric with the task filled in (a binary problem with no rows when
    nothing was seen).
    """

    def merge(self, other):
        if self.inferred is not None and other.inferred is not None:
            return super().merge(other)
        # Type, parent and capacity must still agree; only the placeholder's shapes differ.
        self._check_mergeable(other.replace(inferred=self.inferred))
        real, placeholder = (self, other) if other.inferred is None else (other, self)
        return real._with_parent(placeholder)

    def _merges_by_fields(self):
        # Stacked or allreduced states share one treedef (all placeholders or none), where the
        # field-wise fold and collective equal this merge.
        return True

    def resolved(self):
        """This state as one of its metric with the task set."""
        m = self.parent
        if self.inferred is None:
            base = m.with_task("binary", None)
            return self._base_state.empty(parent=base)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self._base_state)}
        return self._base_state(**{**fields, "parent": m.with_task(*self.inferred)})

    def compute(self):
        return self.resolved().compute()


class InferredScoresState(_InferredTask, ScoresState):
    """:class:`ScoresState` of a metric without ``task`` (see ``_InferredTask``)."""

    inferred: tuple | None = static_field(default=None)
    _base_state = ScoresState


class InferredBinnedState(_InferredTask, BinnedScoresState):
    """:class:`BinnedScoresState` of a metric without ``task`` (see ``_InferredTask``)."""

    inferred: tuple | None = static_field(default=None)
    _base_state = BinnedScoresState


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

    Inputs: ``preds`` (scores, ranked as given: probabilities for the binned mode) or
    ``logits`` (made probabilities first, as Kauldron's ``RocAuc`` and torchmetrics do: a
    softmax over the classes for multiclass, a sigmoid otherwise), ``labels`` (also
    ``targets``), ``mask``. ``task=None`` (the default) reads the task and the number of
    classes from the first batch's shapes (:func:`~metrix.classification._common.infer_task`):
    labels shaped like preds are binary (multilabel when preds is ``(*b, L)``, ``L >= 2``,
    ``b`` not empty), labels ``preds.shape[:-1]`` (or with a trailing 1) are class indices.
    """

    preds: Key | None = None
    labels: Key = REQUIRED
    mask: Key | None = None
    weights: Key | None = None
    logits: Key | None = None
    # Kauldron's name for the labels (its docs say ``targets``).
    targets: Key | None = None
    task: str | None = None
    num_classes: int | None = None
    thresholds: int | None = None
    capacity: int = 65536

    key_aliases = {"targets": "labels"}
    required_one_of = (("preds", "logits"),)
    eager_compile = True
    # An area depends on each column's ranking only, and the sigmoid is increasing: binary /
    # multilabel logits are then ranked as they are (float32 sigmoids tie above ~16.6).
    _ranks_only = False

    def __post_init__(self):
        if self.task is not None:
            _check_task(self.task, self.num_classes)
        elif self.num_classes is not None and (
            not isinstance(self.num_classes, int) or self.num_classes < 1
        ):
            raise ValueError(
                f"num_classes must be None or a positive int, got {self.num_classes!r}"
            )
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

    def with_task(self, task, num_classes):
        """This metric with ``task`` set: what a state of a metric without one computes with."""
        return dataclasses.replace(self, task=task, num_classes=num_classes)

    def _probabilities(self, logits, task):
        logits = logits.astype(jnp.float32)
        if task == "multiclass":
            return jax.nn.softmax(logits, axis=-1)
        if self._ranks_only and self.thresholds is None:
            return logits
        return jax.nn.sigmoid(logits)

    def get_state(
        self,
        preds: Float[Array, "..."] | None = None,
        labels: Shaped[Array, "..."] | None = None,
        mask: Shaped[Array, "..."] | None = None,
        logits: Float[Array, "..."] | None = None,
        weights: Shaped[Array, "..."] | None = None,
    ) -> State | BinnedState:
        if (preds is None) == (logits is None):
            raise TypeError("get_state() needs exactly one of preds= (scores) or logits=")
        if labels is None:
            raise TypeError("get_state() needs labels= (also accepted as targets=)")
        scores = preds if logits is None else logits
        task, num_classes = self.task, self.num_classes
        if task is None:
            task, num_classes = infer_task(scores.shape, labels.shape, num_classes)
        if logits is not None:
            scores = self._probabilities(logits, task)
        if weights is not None:
            self._check_weighted(task)
        exact = self.thresholds is None
        if self.task is not None:
            cls = self.State if exact else self.BinnedState
            return cls.from_inputs(self, scores, labels, mask, weights=weights)
        cls = InferredScoresState if exact else InferredBinnedState
        state = cls.from_inputs(self, scores, labels, mask, task, num_classes, weights)
        return state.replace(inferred=(task, num_classes))

    def _check_weighted(self, task):
        """Configurations without a weighted definition refuse ``weights`` (static check)."""

    def empty(self):
        """The identity of merge: an empty buffer (exact) or zero counts (binned); without
        ``task``, a placeholder that merges as the identity with any state of this metric."""
        exact = self.thresholds is None
        if self.task is None:
            return (InferredScoresState if exact else InferredBinnedState).empty(parent=self)
        return (self.State if exact else self.BinnedState).empty(parent=self)


class _AreaMetric(_RankingMetric):
    average: str = "macro"
    _ranks_only = True

    def _area_exact(self, scores, labels, weights, valid):
        raise NotImplementedError

    def _compute_exact(self, state: ScoresState):
        micro = self.average == "micro" and self.task != "binary"
        if is_concrete(state.scores, state.count):
            # Eager: everything on the host copy in numpy (one sort per column).
            scores, labels, weights = state.host_columns(micro)
            values = np.array(
                [self._area_exact(*column, None) for column in zip(scores, labels, weights)],
                np.float32,
            )
            support = np.array(
                [np.sum(y if w is None else y * w) for y, w in zip(labels, weights)], np.float32
            )
            return jnp.asarray(self._reduce(values, support, micro), jnp.float32)
        scores, labels, valid, weights = state.columns(micro)
        values = jax.vmap(self._area_exact)(scores, labels, weights, valid)
        self._warn_traced(values, labels, valid)
        return state.checked(self._reduce(values, state.support(), micro))

    def _warn_traced(self, values, labels, valid):
        """The eager path's warnings for a defined value that carries no NaN to flag it
        (deferred out of a compiled eager program, see ``refuse.warn``)."""

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

    ``multi_class_mode="ovo"`` (multiclass, exact, ``average`` macro or weighted): Hand &
    Till's one-vs-one mean over class pairs (:func:`multiclass_ovo_roc_auc`), sklearn's
    ``multi_class="ovo"``. It is ignored for binary / multilabel inputs (as sklearn).

    Given ``logits`` the scores are their softmax (multiclass) as in Kauldron: one-vs-rest
    AUCs rank each class column across examples, so unnormalised scores give another value
    (sklearn refuses multiclass scores that do not sum to 1; metrix ranks ``preds`` as
    given). Binary / multilabel logits are ranked directly (the sigmoid keeps the order).
    The value is a float32 scalar in [0, 1] (``average="none"``: one per class); eager
    compute is host-side numpy.
    """

    multi_class_mode: str = "ovr"

    def __post_init__(self):
        super().__post_init__()
        if self.multi_class_mode not in ("ovr", "ovo"):
            raise ValueError(
                f"multi_class_mode must be 'ovr' or 'ovo', got {self.multi_class_mode!r}"
            )
        if self.multi_class_mode == "ovo":
            if self.task not in (None, "multiclass"):
                raise ValueError(
                    f"multi_class_mode='ovo' is for task='multiclass' (got task={self.task!r})"
                )
            if self.average not in ("macro", "weighted"):
                raise ValueError(
                    "multi_class_mode='ovo' averages pairs of classes: average must be 'macro' "
                    f"or 'weighted', got {self.average!r}"
                )
            if self.thresholds is not None:
                raise ValueError(
                    "multi_class_mode='ovo' needs the exact mode (thresholds=None): binned "
                    "counts do not keep which class each row belongs to"
                )

    def with_task(self, task, num_classes):
        # sklearn reads multi_class for multiclass targets only.
        mode = self.multi_class_mode if task == "multiclass" else "ovr"
        return dataclasses.replace(
            self, task=task, num_classes=num_classes, multi_class_mode=mode
        )

    def _compute_exact(self, state: ScoresState):
        if self.multi_class_mode != "ovo":
            return super()._compute_exact(state)
        weighted = self.average == "weighted"
        if is_concrete(state.scores, state.count):
            scores, labels, _ = state.host_rows()  # weights refused in get_state
            value = multiclass_ovo_roc_auc(scores, labels, self.num_classes, weighted=weighted)
            return jnp.asarray(value, jnp.float32)
        value = multiclass_ovo_roc_auc(
            state.scores, state.labels, self.num_classes, state.valid_mask(), weighted
        )
        return state.checked(value)

    def _check_weighted(self, task):
        if task == "multiclass" and self.multi_class_mode == "ovo":
            raise ValueError(
                "weights= is not defined for multi_class_mode='ovo' (sklearn refuses "
                "sample_weight there too): use the one-vs-rest mode or leave weights out"
            )

    def _area_exact(self, scores, labels, weights, valid):
        return binary_roc_auc(scores, labels, valid, weights)

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

    def _area_exact(self, scores, labels, weights, valid):
        return binary_average_precision(scores, labels, valid, weights)

    def _warn_traced(self, values, labels, valid):
        # AP is 0 for a column without positives: no NaN flags it, so warn explicitly.
        positives = jnp.sum((labels > 0) & valid, axis=-1)
        refuse_lib.warn(jnp.any(positives == 0), NO_POSITIVES, UndefinedMetricWarning)

    def _area_binned(self, positives, negatives):
        return binned_average_precision(positives, negatives)


class _CurveMetric(_RankingMetric):
    def _curve_exact(self, scores, labels, weights):
        raise NotImplementedError

    def _compute_exact(self, state: ScoresState):
        if not is_concrete(state.scores, state.count):
            raise TypeError(
                f"{type(self).__name__}: the exact curve has a data-dependent length, so compute "
                "it eagerly (outside jit), or use thresholds=N for fixed-length binned curves."
            )
        columns = state.host_columns()
        curves = [self._curve_exact(s, y, w) for s, y, w in zip(*columns)]
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

    def _curve_exact(self, scores, labels, weights):
        return binary_roc_curve(scores, labels, weights)

    def _curve_binned(self, positives, negatives):
        return binned_roc_curve(positives, negatives)


class PrecisionRecallCurve(_CurveMetric):
    """PR curve points: ``{"precision", "recall", "thresholds"}``, thresholds ascending.

    Exact (eager only): sklearn ``precision_recall_curve`` (host numpy, variable length,
    last point ``(1, 0)``); per-class lists for multiclass / multilabel. Binned (jit-able):
    precision/recall of length ``N + 1``, thresholds ``N`` (leading K axis when K > 1).
    """

    _names = ("precision", "recall", "thresholds")

    def _curve_exact(self, scores, labels, weights):
        return binary_precision_recall_curve(scores, labels, weights)

    def _curve_binned(self, positives, negatives):
        return binned_precision_recall_curve(positives, negatives)


__all__ = [
    "AveragePrecision",
    "BinnedScoresState",
    "InferredBinnedState",
    "InferredScoresState",
    "PrecisionRecallCurve",
    "RocAuc",
    "RocCurve",
    "ScoresState",
    "UndefinedMetricWarning",
    "binary_average_precision",
    "binary_distinct_points",
    "binary_precision_recall_curve",
    "binary_roc_auc",
    "binary_roc_curve",
    "binned_average_precision",
    "binned_counts",
    "binned_precision_recall_curve",
    "binned_roc_auc",
    "binned_roc_curve",
    "multiclass_ovo_roc_auc",
    "threshold_grid",
]
