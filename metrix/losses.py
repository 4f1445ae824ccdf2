"""Losses: metrics whose state is a weighted average, differentiable inside the train step.

A loss is a :class:`~metrix.core.metric.Metric` like any other (Kauldron's model): its keys say
where its inputs live, ``get_state`` returns a mergeable :class:`LossState`, and
``compute()`` gives the scalar loss. The same state is what ``jax.grad`` differentiates in
the train step and what accumulates over a logging window::

    loss = mx.SoftmaxCrossEntropy(logits="preds.logits", labels="batch.label")
    loss(logits=l, labels=y)                          # the scalar loss
    jax.grad(lambda l: loss(logits=l, labels=y))(l)   # exact gradients
    total, states = mx.total_loss({"ce": loss, "l2": mx.L2(...)}, context)

Subclasses implement ``get_values(...)``: the per-element loss with the batch axes kept.
The base adds, for every loss,

* ``mask`` (a key): boolean-indexing mask over the leading axes of the values; a masked-out
  element changes neither the value nor the gradient of the other elements (its own
  gradient is 0, or NaN if ``get_values`` is not differentiable there: ``0 * NaN``);
* ``weight``: a number, or a schedule ``step -> weight`` (a jax-traceable callable such as
  an optax schedule; functions are hashable, so the loss stays a valid config) read at the
  ``step`` key (``"step"`` by default, only read when ``weight`` is a schedule);
* ``normalize_by``: ``"mask"`` divides by the number of unmasked elements, ``"values"`` by
  the number of all elements (masked ones count as zero loss).

With per-element values ``v``, mask ``m`` and weight ``w`` the loss is::

    loss = w * sum(m v) / sum(m)          (normalize_by="mask")
    loss = w * sum(m v) / size(v)         (normalize_by="values")

and the state keeps ``total = w sum(m v)`` and ``count`` as exact double-floats, so merged
states give the weighted average over all batches of a window. A loss of no elements is 0
(not NaN, so an all-masked batch does not poison a training step).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Num

from metrix.core import numerics
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import refuse
from metrix.core.state import State
from metrix.core.states import AverageState
from metrix.core.tree import get_states

Schedule = Callable[[Any], Any]
"""A loss-weight schedule: ``step -> weight`` (jax-traceable, e.g. an optax schedule)."""


# ---------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------


class LossState(AverageState):
    """``total = w sum(m v)`` and ``count`` (double-floats); ``compute() = total / count``.

    Unlike :class:`~metrix.core.states.AverageState.from_values`, the loss weight scales only the
    total, so ``compute()`` is ``w`` times the masked mean. The value returned by
    ``compute()`` is the float32 quotient ``hi(total) / hi(count)`` plus a
    ``stop_gradient``-ed double-float correction: its gradient is the plain ``1 / count``
    of a hand-written ``jnp.mean``, its value the exact double-float quotient.
    """

    @classmethod
    def from_loss_values(
        cls,
        values,
        *,
        mask=None,
        weight=1.0,
        normalize_by: str = "mask",
        parent: Any = None,
    ) -> LossState:
        # Sums in float32 whatever the compute dtype (bfloat16 sums lose the loss).
        values = jnp.asarray(values).astype(jnp.float32)
        keep = broadcast_mask(mask, values.shape)
        # jnp.where, not values * mask: a masked-out NaN must change nothing.
        total = jnp.sum(jnp.where(keep, values, 0)) * jnp.asarray(weight, jnp.float32)
        if normalize_by == "mask":
            count = jnp.sum(keep, dtype=jnp.float32)
        elif normalize_by == "values":
            count = jnp.asarray(values.size, jnp.float32)
        else:
            raise ValueError(f"normalize_by must be 'mask' or 'values', got {normalize_by!r}")
        return cls(
            parent=parent,
            total=numerics.df_from(total),
            count=numerics.df_from(count),
        )

    def compute(self):
        has = numerics.df_value(self.count) > 0
        count = _safe_count(self.count)
        plain = self.total[..., 0] / count[..., 0]  # the path jax.grad sees
        exact = numerics.df_divide(self.total, count)
        value = plain + jax.lax.stop_gradient(exact - plain)
        return jnp.where(has, value, 0.0)


def _safe_count(count):
    """The double-float count with 0 replaced by 1 (so empty states divide safely)."""
    has = numerics.df_value(count) > 0
    return jnp.where(has[..., None], count, numerics.df_from(jnp.ones_like(count[..., 0])))


# ---------------------------------------------------------------------------------------
# The base
# ---------------------------------------------------------------------------------------


class Loss(Metric):
    """Base of every loss: per-element ``get_values`` plus mask, weight and normalisation.

    ``loss = weight * sum(mask * values) / sum(mask)`` (``normalize_by="mask"``) or
    ``/ size(values)`` (``normalize_by="values"``); ``weight`` is a number or a schedule
    ``step -> weight`` evaluated at the ``step`` input. Subclasses define key fields named
    like the parameters of their ``get_values``.
    """

    mask: Key | None = None
    step: Key | None = "step"
    weight: float | Schedule = 1.0
    normalize_by: Literal["mask", "values"] = "mask"

    State = LossState

    def __post_init__(self):
        if self.normalize_by not in ("mask", "values"):
            raise ValueError(
                f"{type(self).__name__}: normalize_by must be 'mask' or 'values', "
                f"got {self.normalize_by!r}"
            )
        if not (callable(self.weight) or isinstance(self.weight, (int, float))):
            raise TypeError(
                f"{type(self).__name__}: weight must be a number or a schedule step -> weight, "
                f"got {type(self.weight).__name__}"
            )

    # -- what subclasses write -----------------------------------------------------------
    def get_values(self, **inputs) -> Array:  # pragma: no cover - abstract
        """The per-element loss (batch axes kept), before masking, averaging and weighting."""
        raise NotImplementedError(f"{type(self).__name__}.get_values")

    def invalid_elements(self, **inputs) -> Array | None:
        """Flags, shaped like the values, of elements whose inputs are invalid (a label out of
        range, say), or ``None``. An unmasked one raises eagerly; under ``jit`` its value is
        NaN (docs/inputs.md). Masked-out elements (padding labels) are never refused."""
        return None

    invalid_what: ClassVar[str] = "an invalid label"  # what the refusal message names

    # -- keys and inputs -----------------------------------------------------------------
    @classmethod
    def input_parameters(cls) -> dict[str, inspect.Parameter]:
        """``get_values``' parameters, plus the optional ``mask`` and ``step``."""
        sig = inspect.signature(inspect.unwrap(cls.get_values))
        params = {n: p for n, p in sig.parameters.items() if n != "self"}
        for name in ("mask", "step"):
            params.setdefault(
                name, inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
            )
        return params

    @property
    def has_schedule(self) -> bool:
        """Whether ``weight`` is a schedule (then the ``step`` input is needed)."""
        return callable(self.weight)

    def resolve_inputs(self, context: Any) -> dict[str, Any]:
        # The step is only read when the weight is a schedule: contexts without a step
        # (evaluation, notebooks) work for constant weights.
        if not self.has_schedule and self.step is not None:
            return Metric.resolve_inputs(dataclasses.replace(self, step=None), context)
        return super().resolve_inputs(context)

    def get_weight(self, step=None):
        """The weight at ``step`` (a float32 scalar); a schedule needs the step."""
        if not self.has_schedule:
            return jnp.asarray(self.weight, jnp.float32)
        if step is None:
            raise ValueError(
                f"{type(self).__name__}: weight is a schedule, so a step is needed: pass "
                f"step=... or set the key {type(self).__name__}(step='step')."
            )
        return jnp.asarray(self.weight(step), jnp.float32)

    # -- the functional core -------------------------------------------------------------
    def get_state(self, *args, mask=None, step=None, **inputs) -> LossState:
        """Per-element values from ``get_values``; masked, weighted and summed into a state.

        Positional arguments bind to ``get_values``' parameters in order.
        """
        values = self.get_values(*args, **inputs)
        if mask is not None:
            mask = jnp.asarray(mask)
        values = self._refuse_invalid(values, mask, args, inputs)
        weight = self.get_weight(step)
        return self.State.from_loss_values(
            values, mask=mask, weight=weight, normalize_by=self.normalize_by, parent=self
        )

    get_state._metrix_wrapped = True  # binds through get_values (which the base wraps)

    def _refuse_invalid(self, values, mask, args, inputs):
        """``values`` with invalid unmasked elements refused: raised eagerly, NaN under jit."""
        if type(self).invalid_elements is Loss.invalid_elements:
            return values
        signature = inspect.signature(inspect.unwrap(type(self).get_values))
        named = signature.bind(self, *args, **inputs).arguments
        named.pop("self", None)
        bad = self.invalid_elements(**named)
        if bad is None:
            return values
        bad = jnp.broadcast_to(bad, jnp.shape(values))
        count = jnp.sum(broadcast_mask(mask, bad.shape) & bad, dtype=jnp.int32)
        what, name = self.invalid_what, type(self).__name__  # get_state has no error boundary
        refuse(
            count,
            None,
            lambda n: f"{name}: {n} unmasked element(s) with {what}; mask them out or fix the "
            "inputs.",
        )
        return jnp.where(bad, jnp.nan, values)


def total_loss(losses: Any, context: Any) -> tuple[jax.Array, Any]:
    """Sum of every loss in a pytree, read from ``context``; and their states.

    Returns ``(total, states)``: the float32 scalar to differentiate (``jax.grad(...,
    has_aux=True)``) and the same pytree of :class:`LossState` for logging and merging.
    """
    states = get_states(losses, context)
    leaves = jax.tree.leaves(
        jax.tree.map(lambda s: s.compute(), states, is_leaf=lambda x: isinstance(x, State))
    )
    if any(jnp.shape(v) != () for v in leaves):
        raise ValueError("total_loss: every loss must compute to a scalar")
    total = sum(leaves, jnp.zeros((), jnp.float32))
    return total, states


# ---------------------------------------------------------------------------------------
# Pure per-element functions (users can call them too)
# ---------------------------------------------------------------------------------------


def l1_values(preds, targets):
    """``|p - t|`` elementwise."""
    return jnp.abs(preds - targets)


def l2_values(preds, targets):
    """``(p - t)^2`` elementwise: squared error *without* optax ``l2_loss``'s 0.5 factor
    (Kauldron's convention; equals ``optax.squared_error`` and ``2 * optax.l2_loss``)."""
    return jnp.square(preds - targets)


def huber_values(preds, targets, delta: float = 1.0):
    """``0.5 x^2`` where ``|x| <= delta``, else ``0.5 delta^2 + delta (|x| - delta)``; x = p - t.

    Written as ``0.5 q^2 + delta (|x| - q)`` with ``q = min(|x|, delta)`` (as optax), which
    keeps the gradient finite everywhere.
    """
    abs_x = jnp.abs(preds - targets)
    quadratic = jnp.minimum(abs_x, delta)
    return 0.5 * jnp.square(quadratic) + delta * (abs_x - quadratic)


def softmax_cross_entropy_values(logits, labels, label_smoothing: float = 0.0):
    """``-sum_c q_c log softmax(z)_c`` over the last axis.

    ``labels`` are integer class ids (``*b``) or a distribution ``q`` (``*b n``, e.g.
    one-hot). Label smoothing ``a`` replaces ``q`` by ``(1 - a) q + a / n``.
    """
    num_classes = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if label_smoothing == 0.0:
            return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), -1)[..., 0]
        labels = jax.nn.one_hot(labels, num_classes, dtype=log_probs.dtype)
    labels = labels.astype(log_probs.dtype)
    if label_smoothing:
        labels = (1.0 - label_smoothing) * labels + label_smoothing / num_classes
    return -jnp.sum(labels * log_probs, axis=-1)


def sigmoid_binary_cross_entropy_values(logits, labels):
    """``-y log sigmoid(z) - (1 - y) log sigmoid(-z)`` elementwise (labels in [0, 1])."""
    labels = labels.astype(logits.dtype)
    return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * jax.nn.log_sigmoid(-logits)


def sigmoid_focal_values(logits, labels, alpha: float | None = None, gamma: float = 2.0):
    """Focal loss (Lin et al. 2017): ``a_t (1 - p_t)^gamma BCE(z, y)``.

    ``p = sigmoid(z)``, ``1 - p_t = y (1 - p) + (1 - y) p``, and with ``alpha`` set
    ``a_t = alpha y + (1 - alpha)(1 - y)`` (no alpha weighting when ``alpha`` is None).
    """
    labels = labels.astype(logits.dtype)
    ce = sigmoid_binary_cross_entropy_values(logits, labels)
    # sigmoid(-z) rather than 1 - sigmoid(z): keeps small (1 - p) accurate.
    one_minus_p_t = labels * jax.nn.sigmoid(-logits) + (1.0 - labels) * jax.nn.sigmoid(logits)
    loss = ce * one_minus_p_t**gamma
    if alpha is None:
        return loss
    return (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss


def negative_cosine_similarity_values(preds, targets, epsilon: float = 1e-12):
    """``-<a, b> / (|a| |b|)`` over the last axis; squared norms clipped below at ``epsilon``."""
    a_norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(preds), -1, keepdims=True), epsilon))
    b_norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(targets), -1, keepdims=True), epsilon))
    return -jnp.sum((preds / a_norm) * (targets / b_norm), axis=-1)


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


class L1(Loss):
    """Mean absolute error ``|preds - targets|`` (elementwise, then averaged)."""

    preds: Key = REQUIRED
    targets: Key = REQUIRED

    def get_values(self, preds: Float[Array, "*b"], targets: Float[Array, "*b"]) -> Array:
        return l1_values(numerics.widen(preds), numerics.widen(targets))


class L2(Loss):
    """Mean squared error ``(preds - targets)^2`` — no 0.5 factor (Kauldron's L2;
    ``optax.l2_loss`` is half of it)."""

    preds: Key = REQUIRED
    targets: Key = REQUIRED

    def get_values(self, preds: Float[Array, "*b"], targets: Float[Array, "*b"]) -> Array:
        return l2_values(numerics.widen(preds), numerics.widen(targets))


class Huber(Loss):
    """Huber loss with threshold ``delta`` (quadratic below, linear above; as optax)."""

    preds: Key = REQUIRED
    targets: Key = REQUIRED
    delta: float = 1.0

    def get_values(self, preds: Float[Array, "*b"], targets: Float[Array, "*b"]) -> Array:
        return huber_values(numerics.widen(preds), numerics.widen(targets), self.delta)


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy over the last axis of ``logits``; one value per example.

    ``labels``: integer class ids (``*b``) or probabilities / one-hot (``*b n``);
    ``label_smoothing`` mixes them with the uniform distribution. Computed in float32 for
    half-precision logits. An unmasked class id outside ``[0, n)`` (``-1``, ``-100``) is an
    invalid input: an error eagerly, NaN under ``jit``; mask padding labels out.
    """

    invalid_what = "a class id outside [0, num_classes)"

    logits: Key = REQUIRED
    labels: Key = REQUIRED
    label_smoothing: float = 0.0

    def get_values(
        self,
        logits: Float[Array, "*b n"],
        labels: Integer[Array, "*b"] | Float[Array, "*b n"],
    ) -> Array:
        labels = numerics.widen(labels) if jnp.issubdtype(labels.dtype, jnp.floating) else labels
        return softmax_cross_entropy_values(numerics.widen(logits), labels, self.label_smoothing)

    def invalid_elements(self, logits, labels):
        labels = jnp.asarray(labels)
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            return None  # distributions: NaN or negative mass already gives NaN / a bad value
        return (labels < 0) | (labels >= jnp.shape(logits)[-1])


class SigmoidBinaryCrossEntropy(Loss):
    """Elementwise sigmoid cross-entropy of ``logits`` against ``labels`` in [0, 1].

    A label outside [0, 1] is an invalid input: an error eagerly, NaN under ``jit``.
    """

    logits: Key = REQUIRED
    labels: Key = REQUIRED

    invalid_what = "a label outside [0, 1]"

    def get_values(self, logits: Float[Array, "*b"], labels: Num[Array, "*b"]) -> Array:
        return sigmoid_binary_cross_entropy_values(numerics.widen(logits), labels)

    def invalid_elements(self, logits, labels):
        return _outside_unit_interval(labels)


class SigmoidFocalLoss(Loss):
    """Elementwise sigmoid focal loss ``a_t (1 - p_t)^gamma BCE`` (optax's defaults:
    ``alpha=None``, ``gamma=2``)."""

    logits: Key = REQUIRED
    labels: Key = REQUIRED
    alpha: float | None = None
    gamma: float = 2.0

    invalid_what = "a label outside [0, 1]"

    def get_values(self, logits: Float[Array, "*b"], labels: Num[Array, "*b"]) -> Array:
        return sigmoid_focal_values(numerics.widen(logits), labels, self.alpha, self.gamma)

    def invalid_elements(self, logits, labels):
        return _outside_unit_interval(labels)


class NegativeCosineSimilarity(Loss):
    """``-cos(preds, targets)`` over the last axis; one value per vector."""

    preds: Key = REQUIRED
    targets: Key = REQUIRED
    epsilon: float = 1e-12

    def get_values(self, preds: Float[Array, "*b d"], targets: Float[Array, "*b d"]) -> Array:
        return negative_cosine_similarity_values(
            numerics.widen(preds), numerics.widen(targets), self.epsilon
        )


def _outside_unit_interval(labels):
    labels = jnp.asarray(labels)
    return (labels < 0) | (labels > 1)  # NaN labels give NaN values on their own


__all__ = [
    "L1",
    "L2",
    "Huber",
    "Loss",
    "LossState",
    "NegativeCosineSimilarity",
    "Schedule",
    "SigmoidBinaryCrossEntropy",
    "SigmoidFocalLoss",
    "SoftmaxCrossEntropy",
    "huber_values",
    "l1_values",
    "l2_values",
    "negative_cosine_similarity_values",
    "sigmoid_binary_cross_entropy_values",
    "sigmoid_focal_values",
    "softmax_cross_entropy_values",
    "total_loss",
]
