"""Probabilistic-prediction metrics: log loss, Brier score, calibration error.

Re-exported by :mod:`metrix.classification` (so ``mx.LogLoss`` etc. work). Each is a pure
per-example function plus a short metric class whose state holds exact (double-float) sums,
so any split into batches, devices or hosts gives the same value; every ``compute`` is
jit-able.

Tasks and inputs (``preds`` probabilities, or logits with ``from_logits=True``):

* ``"binary"``: ``preds (*b,)`` the probability of the positive class, ``labels (*b,)`` in {0, 1};
* ``"multiclass"``: ``preds (*b, C)`` class probabilities (rows must sum to 1), ``labels (*b,)``;
* ``"multilabel"``: ``preds (*b, L)``, ``labels (*b, L)``: every element is a binary problem.

Bad input (labels out of range, NaN, probabilities outside [0, 1], multiclass rows that do
not sum to 1 within ``max(1e-3, C * eps)`` of the input dtype (bf16 rows of
rounded probabilities are accepted), a last axis that is not ``num_classes``) raises a ``ValueError``
eagerly; under ``jit`` the element is left out, counted in the state's ``invalid`` field, and
``compute`` raises eagerly / returns NaN under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Shaped

from metrix.classification._common import _check_elementwise_shapes
from metrix.core import numerics
from metrix.core.fields import exact_sum_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import metric_name, refuse
from metrix.core.state import State

_TASKS = ("binary", "multiclass", "multilabel")
_NORMS = ("l1", "l2", "max")
PROBABILITY_SUM_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------------------
# Inputs: probabilities, labels, validity
# ---------------------------------------------------------------------------------------


def _prepare(task, num_classes, preds, labels, mask, from_logits):
    """Probabilities, labels, the mask of usable examples and the count of rejected ones.

    Returns per *example* arrays: binary/multilabel examples are elements ``(*b)`` /
    ``(*b, L)``; multiclass examples are rows ``(*b)`` with ``(*b, C)`` probabilities.
    """
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
    preds, labels = jnp.asarray(preds), jnp.asarray(labels)
    if not jnp.issubdtype(preds.dtype, jnp.floating):
        raise TypeError(
            f"preds must be floating probabilities or logits, got {preds.dtype}"
        )
    labels = labels.astype(jnp.int32) if labels.dtype == jnp.bool_ else labels
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers or booleans, got {labels.dtype}")
    # Rows of half-precision probabilities miss 1 by up to C roundings of the input dtype.
    sum_tolerance = max(
        PROBABILITY_SUM_TOLERANCE, preds.shape[-1] * float(jnp.finfo(preds.dtype).eps)
    ) if preds.ndim else PROBABILITY_SUM_TOLERANCE
    preds = preds.astype(jnp.float32)
    if task == "multiclass":
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"multiclass needs num_classes >= 2 (static), got {num_classes!r}"
            )
        if preds.ndim < 1 or preds.shape[-1] != num_classes:
            raise ValueError(
                f"preds must have shape (*b, num_classes={num_classes}), got {preds.shape}"
            )
        if labels.shape != preds.shape[:-1]:
            raise ValueError(
                f"multiclass labels must have shape {preds.shape[:-1]}, got {labels.shape}"
            )
        if from_logits:
            probs = jax.nn.softmax(preds, axis=-1)
            bad_preds = jnp.any(jnp.isnan(preds), axis=-1)
        else:
            probs = preds
            in_range = jnp.all((preds >= 0) & (preds <= 1), axis=-1)
            sums_to_one = jnp.abs(preds.sum(-1) - 1) <= sum_tolerance
            bad_preds = ~(in_range & sums_to_one)  # NaN fails both comparisons
        bad_labels = (labels < 0) | (labels >= num_classes)
    else:
        _check_elementwise_shapes(task, num_classes, preds, labels)
        if from_logits:
            probs = jax.nn.sigmoid(preds)
            bad_preds = jnp.isnan(preds)
        else:
            probs = preds
            bad_preds = ~((preds >= 0) & (preds <= 1))
        bad_labels = (labels < 0) | (labels > 1)
    keep = broadcast_mask(mask, labels.shape)
    bad = bad_labels | bad_preds
    n_labels = jnp.sum(keep & bad_labels)
    n_preds = jnp.sum(keep & bad_preds & ~bad_labels)
    invalid = jnp.sum(keep & bad, dtype=jnp.int32)
    return probs, labels, keep & ~bad, invalid, n_labels, n_preds


def _bad_inputs_message(metric, bad) -> str:
    """What was wrong with a batch: ``bad`` holds the counts of bad labels and predictions."""
    if metric.task == "multiclass" and not metric.from_logits:
        what = "rows not summing to 1 or outside [0, 1]"
    else:
        what = "NaN logits" if metric.from_logits else "probabilities outside [0, 1] or NaN"
    limit = metric.num_classes if metric.task == "multiclass" else 2
    return (
        f"{int(bad[0])} label(s) outside [0, {limit}) and {int(bad[1])} bad prediction(s) "
        f"({what})."
    )


def _refuse_invalid(state, value):
    """``value``, refused when the state saw invalid examples: an error eagerly, NaN under jit."""
    return refuse(
        numerics.df_value(state.invalid),
        value,
        lambda _: f"{metric_name(state)}: {numerics.df_to_python(state.invalid)} input "
        "example(s) were invalid (labels out of range, NaN or improper probabilities; left out "
        "under jit); the value is refused.",
    )


class _MeanState(State):
    """Masked mean of per-example values (exact sums) plus a count of rejected examples."""

    total: jax.Array = exact_sum_field()
    count: jax.Array = exact_sum_field()
    invalid: jax.Array = exact_sum_field()

    def compute(self):
        return _refuse_invalid(self, numerics.df_divide(self.total, self.count))


class _ProbabilisticMetric(Metric):
    preds: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    task: str = "binary"
    num_classes: int | None = None
    from_logits: bool = False

    eager_compile = True

    def __post_init__(self):
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {self.task!r}")
        if self.task != "binary" and (
            not isinstance(self.num_classes, int) or self.num_classes < 1
        ):
            raise ValueError(f"task={self.task!r} needs num_classes= (static int)")

    def _sums(self, preds, probs, labels, keep):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_state(
        self,
        preds: Float[Array, "..."],
        labels: Shaped[Array, "..."],
        mask: Shaped[Array, "..."] | None = None,
    ) -> State:
        probs, targets, keep, invalid, n_labels, n_preds = _prepare(
            self.task, self.num_classes, preds, labels, mask, self.from_logits
        )
        refuse(jnp.stack([n_labels, n_preds]), None, lambda bad: _bad_inputs_message(self, bad))
        sums = self._sums(
            jnp.asarray(preds, jnp.float32), probs, jnp.where(keep, targets, 0), keep
        )
        exact = {name: _exact(value) for name, value in sums.items()}
        return self.State(parent=self, invalid=numerics.df_from_int(invalid), **exact)


def _exact(value):
    """A batch sum as a double-float: integer counts exactly (int32 reductions in the batch,
    as a float32 one stops counting at 2^24), float sums as they are."""
    if jnp.issubdtype(value.dtype, jnp.integer):
        return numerics.df_from_int(value)
    return numerics.df_from(value)


def _mean_sums(values, keep):
    # jnp.where, not a product: a masked-out NaN must change nothing.
    return {"total": jnp.sum(jnp.where(keep, values, 0)), "count": jnp.sum(keep, dtype=jnp.int32)}


# ---------------------------------------------------------------------------------------
# Log loss and Brier score
# ---------------------------------------------------------------------------------------


def log_loss_values(preds, labels, *, task: str = "binary", from_logits: bool = False):
    """Per-example cross-entropy ``-log p(label)`` (jit-safe).

    Probabilities are clipped to ``[eps, 1 - eps]`` with ``eps`` float32's machine epsilon
    (sklearn clips with the dtype's epsilon); logits use ``log_softmax`` / ``log_sigmoid``
    (no clipping needed). Binary / multilabel:
    ``-(y log p + (1 - y) log(1 - p))`` per element.
    """
    return _log_loss(jnp.asarray(preds, jnp.float32), jnp.asarray(labels), task, from_logits)


def _log_loss(preds, labels, task, from_logits):
    eps = jnp.finfo(jnp.float32).eps
    if task == "multiclass":
        if from_logits:
            log_probs = jax.nn.log_softmax(preds, axis=-1)
        else:
            log_probs = jnp.log(jnp.clip(preds, eps, 1 - eps))
        safe = jnp.clip(labels, 0, preds.shape[-1] - 1)
        return -jnp.take_along_axis(log_probs, safe[..., None].astype(jnp.int32), axis=-1)[..., 0]
    y = labels.astype(jnp.float32)
    if from_logits:
        log_p, log_not_p = jax.nn.log_sigmoid(preds), jax.nn.log_sigmoid(-preds)
    else:
        p = jnp.clip(preds, eps, 1 - eps)
        log_p, log_not_p = jnp.log(p), jnp.log1p(-p)
    return -(y * log_p + (1 - y) * log_not_p)


def brier_values(preds, labels, *, task: str = "binary", from_logits: bool = False):
    """Per-example squared error of the probabilities (jit-safe).

    Binary / multilabel: ``(p - y)^2`` per element (sklearn ``brier_score_loss``);
    multiclass: ``sum_k (p_k - [y = k])^2`` (sklearn's multiclass Brier score, in [0, 2]).
    """
    preds = jnp.asarray(preds, jnp.float32)
    labels = jnp.asarray(labels)
    if task == "multiclass":
        probs = jax.nn.softmax(preds, axis=-1) if from_logits else preds
        onehot = labels[..., None] == jnp.arange(preds.shape[-1])
        return jnp.sum(jnp.square(probs - onehot), axis=-1)
    probs = jax.nn.sigmoid(preds) if from_logits else preds
    return jnp.square(probs - labels.astype(jnp.float32))


class LogLoss(_ProbabilisticMetric):
    """Mean cross-entropy of the true labels: ``mean_i -log p_i(y_i)`` (sklearn ``log_loss``).

    Multilabel: the mean over all (unmasked) elements of the binary log loss. NaN for no
    examples. Masks cover the leading axes (multilabel: ``(*b)`` or ``(*b, L)``). jit-able.
    """

    State = _MeanState

    def _sums(self, preds, probs, labels, keep):
        return _mean_sums(_log_loss(preds, labels, self.task, self.from_logits), keep)


class BrierScore(_ProbabilisticMetric):
    """Mean squared error of predicted probabilities (sklearn ``brier_score_loss``); jit-able.

    See :func:`brier_values`; NaN for no examples.
    """

    State = _MeanState

    def _sums(self, preds, probs, labels, keep):
        return _mean_sums(
            brier_values(preds, labels, task=self.task, from_logits=self.from_logits), keep
        )


# ---------------------------------------------------------------------------------------
# Calibration error and reliability diagrams
# ---------------------------------------------------------------------------------------


def confidence_and_correct(probs, labels, *, task: str):
    """What calibration compares: ``(confidence, correct)`` per example (torchmetrics' choice).

    Binary / multilabel: ``(p, y)`` (the positive-class probability against the label);
    multiclass: ``(max_k p_k, argmax_k p_k == y)`` (top-label calibration).
    """
    if task == "multiclass":
        return jnp.max(probs, axis=-1), (jnp.argmax(probs, axis=-1) == labels).astype(jnp.float32)
    return probs, labels.astype(jnp.float32)


def calibration_bins(confidence, num_bins: int):
    """Equal-width bin of each confidence: ``[i/n, (i+1)/n)``, the last bin closed at 1.

    Edges are ``linspace(0, 1, n + 1)`` in float32 as torchmetrics; unlike torchmetrics
    (which gives confidence exactly 1.0 a bin of its own), 1.0 falls in the last bin.
    """
    edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=jnp.float32)
    index = jnp.searchsorted(edges, confidence, side="right") - 1
    return jnp.clip(index, 0, num_bins - 1)


def calibration_error_from_bins(count, confidence_sum, correct_sum, norm: str = "l1"):
    """Calibration error from per-bin sums (jit-able); NaN with no examples.

    With ``w_b = n_b / n``, ``acc_b = correct_b / n_b`` and ``conf_b = confidence_b / n_b``
    (0 for empty bins): ``l1``: ``sum_b w_b |acc_b - conf_b|`` (ECE);
    ``l2``: ``sqrt(sum_b w_b (acc_b - conf_b)^2)`` (RMSCE); ``max``: ``max_b |acc_b - conf_b|`` (MCE).
    """
    total = count.sum()
    safe = jnp.where(count > 0, count, 1)
    gap = jnp.where(count > 0, jnp.abs(correct_sum / safe - confidence_sum / safe), 0.0)
    weight = count / jnp.where(total > 0, total, 1)
    if norm == "l1":
        value = jnp.sum(weight * gap)
    elif norm == "l2":
        value = jnp.sqrt(jnp.sum(weight * gap * gap))
    elif norm == "max":
        value = jnp.max(gap)
    else:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    return jnp.where(total > 0, value, jnp.nan)


class CalibrationState(State):
    """Per-bin example counts, confidence sums and correct counts (exact double-floats)."""

    count: jax.Array = exact_sum_field(shape=lambda m: (m.num_bins,))
    confidence: jax.Array = exact_sum_field(shape=lambda m: (m.num_bins,))
    correct: jax.Array = exact_sum_field(shape=lambda m: (m.num_bins,))
    invalid: jax.Array = exact_sum_field()

    def reliability_diagram(self):
        """Per-bin ``confidence`` (mean), ``accuracy`` (mean correct), ``count``, bin ``edges``.

        Empty bins have NaN confidence and accuracy (nothing to plot). jit-able.
        """
        count = numerics.df_value(self.count)
        safe = jnp.where(count > 0, count, jnp.nan)
        value = {
            "confidence": numerics.df_value(self.confidence) / safe,
            "accuracy": numerics.df_value(self.correct) / safe,
            "count": count,
            "edges": jnp.linspace(0.0, 1.0, count.shape[0] + 1, dtype=jnp.float32),
        }
        return self._checked(value)

    def _checked(self, value):
        return _refuse_invalid(self, value)

    def calibration_error(self, norm: str = "l1"):
        value = calibration_error_from_bins(
            numerics.df_value(self.count),
            numerics.df_value(self.confidence),
            numerics.df_value(self.correct),
            norm,
        )
        return self._checked(value)

    def compute(self):
        return self.calibration_error(self.parent.norm)


class ExpectedCalibrationError(_ProbabilisticMetric):
    """Calibration error over ``num_bins`` equal-width confidence bins (torchmetrics'
    ``binary_calibration_error`` / ``multiclass_calibration_error``); jit-able.

    ``norm="l1"`` (ECE), ``"l2"`` (RMS calibration error) or ``"max"`` (MCE); see
    :func:`calibration_error_from_bins` and :func:`confidence_and_correct`. The state's
    ``reliability_diagram()`` gives the plotting data (or use :class:`ReliabilityDiagram`).
    Multilabel: every element as a binary example. NaN for no examples.
    """

    num_bins: int = 15
    norm: str = "l1"

    def __post_init__(self):
        super().__post_init__()
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {self.norm!r}")
        if not isinstance(self.num_bins, int) or self.num_bins < 1:
            raise ValueError(f"num_bins must be a positive int, got {self.num_bins!r}")

    State = CalibrationState

    def _sums(self, preds, probs, labels, keep):
        conf, correct = confidence_and_correct(probs, labels, task=self.task)
        where = jnp.where(keep, calibration_bins(conf, self.num_bins), self.num_bins).reshape(-1)

        def per_bin(values):
            values = jnp.where(keep, values, 0).reshape(-1)
            return jnp.zeros((self.num_bins,), jnp.float32).at[where].add(values, mode="drop")

        bins = calibration_bins(conf, self.num_bins)
        return {
            "count": numerics.bincount(bins, self.num_bins, where=keep),
            "confidence": per_bin(conf),
            "correct": numerics.bincount(bins, self.num_bins, where=keep & (correct > 0)),
        }


class ReliabilityDiagram(ExpectedCalibrationError):
    """Reliability-diagram data: ``{"confidence", "accuracy", "count", "edges"}`` per bin.

    Same state as :class:`ExpectedCalibrationError` (``norm`` is unused); jit-able.
    """

    class State(CalibrationState):
        def compute(self):
            return self.reliability_diagram()


__all__ = [
    "BrierScore",
    "CalibrationState",
    "ExpectedCalibrationError",
    "LogLoss",
    "ReliabilityDiagram",
    "brier_values",
    "calibration_bins",
    "calibration_error_from_bins",
    "confidence_and_correct",
    "log_loss_values",
]
