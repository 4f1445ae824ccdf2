"""The stateful lifecycle (``update`` / ``compute`` / ``reset`` / ``plot``) over the functional core.

Three layers, all thin: the state is always a metrix :class:`~metrix.State`, updated by
merging ``metric.get_state(**inputs)``, so a stateful object never re-implements a metric.

* :class:`Stateful` wraps any metric: ``s = Stateful(mx.Accuracy()); s.update(logits=l,
  labels=y); s.compute()``. ``update`` runs one cached, jitted ``state.merge(get_state(...))``.
  ``s.state`` is the metrix state, for checkpoints and ``mx.allreduce``/``merge`` across hosts.
* Tier 1, :class:`FrozenBackboneMetric`: the seed library's abstract lifecycle
  (``_extract_features`` -> ``_accumulate`` -> ``_compute_from_accumulated``, ``reset``). User
  subclasses written for it (Python lists and all) work unchanged; metrix's own tier-1
  classes (:class:`FIDMetric`, :class:`InceptionScoreMetric`, :class:`BERTScoreMetric`)
  accumulate a metrix state instead, so two of them merge (``a.merge(b)``), and the state
  can be saved or all-reduced.
* Tier 2, :class:`LearnedMetric`: an ``flax.nnx.Module`` whose calibration weights are
  ``nnx.Param`` (trainable with ``nnx.grad``/``jax.grad`` and nnx optimizers);
  :class:`LPIPSMetric` holds the five VGG calibration vectors.

``compute()`` of the tier classes returns ``{name: value}`` with 0-d jax arrays (format them,
``float()`` them); nothing inside calls ``float()``, so the states stay jit-friendly. With
nothing accumulated (before any update, after ``reset()``) they return the seed library's
values: FID ``inf``, Inception Score, BERTScore and LPIPS ``0.0``.
"""

from __future__ import annotations

import abc
import functools
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from metrix.backbones.lpips_nets import _check_calibration
from metrix.core import numerics
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import AverageState
from metrix.generative import FID, InceptionScore
from metrix.perceptual import lpips_math as lpips_core

__all__ = [
    "BERTScoreMetric",
    "FIDMetric",
    "FrozenBackboneMetric",
    "InceptionScoreMetric",
    "LPIPSMetric",
    "LearnedMetric",
    "Stateful",
    "plot_values",
]


# ---------------------------------------------------------------------------------------
# Plotting
# ---------------------------------------------------------------------------------------


def _scalars(values: Any, prefix: str = "") -> dict[str, float]:
    """The scalar leaves of a (nested) dict of values, named ``a/b``; arrays are skipped."""
    if isinstance(values, Mapping):
        out = {}
        for key, value in values.items():
            out.update(_scalars(value, f"{prefix}{key}/"))
        return out
    try:
        array = jnp.asarray(values)
    except TypeError:
        return {}
    if array.ndim == 0 and jnp.issubdtype(array.dtype, jnp.number):
        return {prefix.rstrip("/") or "value": float(array)}
    return {}


def plot_values(values: Any, output_dir: str | os.PathLike = "figures", name: str = "metric"):
    """A bar chart of the scalar values, saved as ``{output_dir}/{name}.png``.

    Returns the path as a :class:`pathlib.Path` (the seed library's type), or ``None`` when
    matplotlib is not installed (or nothing is scalar).
    """
    scalars = _scalars(values)
    if not scalars:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    os.makedirs(output_dir, exist_ok=True)
    path = pathlib.Path(output_dir) / f"{name}.png"
    figure = Figure(figsize=(6, 0.5 * len(scalars) + 1.2))
    FigureCanvasAgg(figure)  # draw without pyplot: no global backend, no display
    axes = figure.subplots()
    names = list(scalars)
    numbers = [scalars[n] for n in names]
    axes.barh(names, [v if math.isfinite(v) else 0.0 for v in numbers])
    for i, v in enumerate(numbers):
        axes.text(0, i, f" {v:.4g}", va="center")
    axes.set_title(name)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------------------------------
# Stateful: any metric with an update/compute/reset lifecycle
# ---------------------------------------------------------------------------------------


def _same_metric(a: Any, b: Metric) -> bool:
    """``a`` is ``b`` or an equal configuration (False where equality is not a bool)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # e.g. array-valued configuration fields
        return False


@functools.lru_cache(maxsize=256)
def _jitted_steps(metric: Metric):
    """(first, step): jitted ``get_state`` and ``state.merge(get_state)`` for one metric.

    Cached per metric (metrics are frozen and hashable), so equal metrics share compiles.
    """

    def first(args, inputs):
        return metric.get_state(*args, **inputs)

    def step(state, args, inputs):
        return state.merge(metric.get_state(*args, **inputs))

    return jax.jit(first), jax.jit(step)


def _eager_steps(metric: Metric):
    return (lambda args, inputs: metric.get_state(*args, **inputs)), (
        lambda state, args, inputs: state.merge(metric.get_state(*args, **inputs))
    )


class Stateful:
    """An ``update`` / ``compute`` / ``reset`` / ``plot`` lifecycle around one metric.

    ``update(*args, **inputs)`` merges ``metric.get_state(*args, **inputs)`` into the held
    state with one jitted function (cached per metric; ``jit=False`` runs eagerly, for
    metrics whose inputs are not arrays). ``compute()`` is ``state.compute()``; before any
    update it is the value of ``metric.empty()``. ``state`` is the metrix state: assign a
    restored one, or merge another's with :meth:`merge` (e.g. after ``mx.allreduce``).
    """

    def __init__(self, metric: Metric, *, jit: bool = True, name: str | None = None):
        self.metric = metric
        self._name = name or type(metric).__name__
        self._jit = jit
        self._state: State | None = None
        self._computed: tuple[Any, Any] = (None, None)
        if jit:
            try:
                self._first, self._step = _jitted_steps(metric)
            except TypeError:  # an unhashable configuration: compile per instance
                first, step = _eager_steps(metric)
                self._first, self._step = jax.jit(first), jax.jit(step)
        else:
            self._first, self._step = _eager_steps(metric)

    # -- protocol attributes -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def higher_is_better(self) -> bool | None:
        return getattr(self.metric, "higher_is_better", None)

    # -- lifecycle -------------------------------------------------------------------------
    def update(self, *args, **inputs) -> None:
        """Accumulate one batch: ``state = state.merge(metric.get_state(*args, **inputs))``."""
        if self._state is None:
            self._state = self._first(args, inputs)
        else:
            self._state = self._step(self._state, args, inputs)

    def update_from_context(self, context: Any) -> None:
        """``update`` with the inputs read from ``context`` through the metric's keys."""
        self.update(**self.metric.resolve_inputs(context))

    def compute(self) -> Any:
        """The value of everything accumulated since the last reset.

        States are immutable, so the value of the current state is kept until the next
        ``update``/``reset``/``merge`` (``plot`` after ``compute`` costs nothing more: FID's
        eigendecompositions are not run twice).
        """
        state = self.state
        cached_state, values = self._computed
        if cached_state is not state:
            values = state.compute()
            self._computed = (state, values)
        return values

    def reset(self) -> None:
        """Forget the accumulated state."""
        self._state = None

    def plot(self, output_dir: str | os.PathLike = "figures", filename: str | None = None):
        """Bar chart of ``compute()``'s scalars; the PNG path, or None without matplotlib."""
        return plot_values(self.compute(), output_dir, filename or self.name)

    # -- the state -------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The accumulated metrix state (``metric.empty()`` before any update)."""
        if self._state is None:
            self._state = self.metric.empty()
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        expected = type(self.metric).State
        # Metrics whose empty() picks the state class by configuration (BERTScore with or
        # without capacity=) are recognised by the state's parent.
        own = isinstance(state, State) and _same_metric(getattr(state, "parent", None), self.metric)
        if not (own or isinstance(state, expected)):
            raise TypeError(
                f"{self.name}: state must be a {expected.__qualname__}, got {type(state).__qualname__}"
            )
        self._state = state

    def set_state(self, state: State) -> None:
        """Same as ``self.state = state`` (the spelling the nnx classes use)."""
        self.state = state

    def merge(self, other: Stateful | State) -> None:
        """Merge another accumulator's state (or a state) into this one, in place."""
        other_state = other._state if isinstance(other, Stateful) else other
        if other_state is None:
            return
        self._state = other_state if self._state is None else self._state.merge(other_state)

    def __repr__(self) -> str:
        return f"Stateful({self.metric!r})"


# ---------------------------------------------------------------------------------------
# Tier 1: frozen-backbone metrics
# ---------------------------------------------------------------------------------------


class FrozenBackboneMetric(abc.ABC):
    """Tier 1: features from a frozen backbone, accumulated over ``update`` calls.

    Lifecycle: ``update(**kwargs)`` runs ``_accumulate(_extract_features(**kwargs))``;
    ``compute()`` returns ``_compute_from_accumulated()`` (a ``{name: value}`` dict);
    ``reset()`` clears the accumulation. Subclasses implement those four methods.
    """

    higher_is_better: bool | None = None

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def update(self, **kwargs: Any) -> None:
        """Feed one batch."""
        self._accumulate(self._extract_features(**kwargs))

    def compute(self) -> dict[str, Any]:
        """The final values from everything accumulated since the last reset."""
        return self._compute_from_accumulated()

    def plot(self, output_dir: str | os.PathLike = "figures", filename: str | None = None):
        """Bar chart of ``compute()``'s scalars; the PNG path, or None without matplotlib."""
        return plot_values(self.compute(), output_dir, filename or self.name)

    @abc.abstractmethod
    def reset(self) -> None: ...

    @abc.abstractmethod
    def _extract_features(self, **kwargs: Any) -> Any: ...

    @abc.abstractmethod
    def _accumulate(self, features: Any) -> None: ...

    @abc.abstractmethod
    def _compute_from_accumulated(self) -> dict[str, Any]: ...


def _is_zero(count) -> bool | jax.Array:
    """``count == 0`` for a plain or double-float count: a Python bool when the count is
    concrete (the usual, eager case), a traced boolean under ``jit``."""
    count = jnp.asarray(count)
    if count.ndim and count.shape[-1] == 2:  # an exact (hi, lo) double-float count
        count = numerics.df_value(count)
    zero = jnp.reshape(count, (-1,))[0] == 0
    return zero if isinstance(zero, jax.core.Tracer) else bool(zero)


class _StateBackedMetric(FrozenBackboneMetric):
    """A tier-1 metric whose accumulation is a :class:`Stateful` over a metrix metric.

    ``_extract_features`` returns the ``get_state`` inputs of one batch; the state merges
    (``a.merge(b)``, ``mx.allreduce(a.state, ...)``) and can be checkpointed (``a.state``).

    With nothing accumulated (before any ``update``, after ``reset()``), ``compute()``
    returns ``_EMPTY_VALUES``: the seed library's documented values for an empty run, so
    the two cases agree and never raise. A subclass names them, tells how many examples
    its state holds (``_seen``) and turns the state's values into its result
    (``_values``).
    """

    #: ``compute()`` of an empty accumulation (the seed library's values).
    _EMPTY_VALUES: ClassVar[Mapping[str, float]] = {}
    #: The functional metric underneath (states of other metrics are refused).
    _metric_type: type[Metric] = Metric

    def __init__(self, name: str, metric: Metric | None) -> None:
        super().__init__(name)
        # A metric built from the first batch (its width was not given) is forgotten on
        # reset(), so a reset object is the object as built.
        self._inferred = metric is None
        self._stateful = None if metric is None else Stateful(metric, name=name)

    @property
    def metric(self) -> Metric | None:
        """The functional metrix metric underneath (use it directly inside jit)."""
        return None if self._stateful is None else self._stateful.metric

    @property
    def state(self) -> State:
        return self._require().state

    @state.setter
    def state(self, state: State) -> None:
        self._adopt(state)
        self._require().state = state

    def set_state(self, state: State) -> None:
        """Same as ``self.state = state`` (the spelling the nnx classes use)."""
        self.state = state

    def merge(self, other: _StateBackedMetric | State) -> None:
        """Merge another instance's accumulated state (or a state) into this one."""
        other = other._stateful if isinstance(other, _StateBackedMetric) else other
        if other is None:
            return
        self._adopt(other)
        self._require().merge(other)

    def _adopt(self, other: Stateful | State) -> None:
        """Before a first batch (the width is not known yet), take the metric of ``other``."""
        if self._stateful is not None:
            return
        metric = other.metric if isinstance(other, Stateful) else getattr(other, "parent", None)
        if not isinstance(metric, self._metric_type):
            raise TypeError(
                f"{self.name}: can only take the state of a {self._metric_type.__name__}, "
                f"got one of {type(metric).__name__}"
            )
        self._stateful = Stateful(metric, name=self.name)

    def reset(self) -> None:
        if self._inferred:
            self._stateful = None
        elif self._stateful is not None:
            self._stateful.reset()

    def _accumulate(self, inputs: dict[str, Any]) -> None:
        self._require().update(**inputs)

    def _require(self) -> Stateful:
        if self._stateful is None:
            raise ValueError(f"{self.name}: nothing accumulated yet (call update first)")
        return self._stateful

    def _empty_values(self) -> dict[str, jax.Array]:
        return {k: jnp.asarray(v, jnp.float32) for k, v in self._EMPTY_VALUES.items()}

    def _compute_from_accumulated(self) -> dict[str, Any]:
        if self._stateful is None:
            return self._empty_values()
        empty = _is_zero(self._seen(self._stateful.state))
        if empty is True:  # skip the computation (an empty FID would still run its eighs)
            return self._empty_values()
        values = self._values(self._stateful.compute())
        if empty is False:
            return values
        # Traced: the same choice, as data.
        return {k: jnp.where(empty, self._EMPTY_VALUES[k], v) if k in self._EMPTY_VALUES else v
                for k, v in values.items()}

    def _seen(self, state: State) -> jax.Array:
        """How many examples ``state`` holds (0: the empty values are returned)."""
        raise NotImplementedError

    def _values(self, computed: Any) -> dict[str, Any]:
        """``compute()``'s dict from the state's ``compute()``."""
        raise NotImplementedError


def _check_width(owner: str, x, expected: int, what: str, side: str, inferred: bool = False):
    x = jnp.asarray(x)
    if x.ndim == 2 and x.shape[-1] != expected:
        source = " (inferred from the first batch)" if inferred else ""
        raise ValueError(
            f"{owner}: {side} features have {x.shape[-1]} dimensions but {what}={expected}"
            f"{source}; pass ({x.shape[0]}, {expected}) features or build "
            f"{owner}({what}={x.shape[-1]})"
        )
    return x


class FIDMetric(_StateBackedMetric):
    """FID over batches of real and generated features (or images with ``params``).

    ``update(real=(N, feature_dim), generated=(M, feature_dim))``; either side may be left
    out of a batch. ``compute() -> {"fid": value}`` (lower is better)::

        FID = ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr sqrt(S_r S_g)

    Backed by :class:`metrix.FID`: Chan-merged means and covariances, O(d^2) memory.
    ``feature_dim=None`` (default) takes the width of the first batch's features (2048 for
    images); a given or inferred ``feature_dim`` is checked on every batch, and a batch of
    another width is an error naming both. NHWC images are run through the FID InceptionV3
    when ``params`` (from :func:`metrix.backbones.inception.load_params`) are given
    (``feature_dim`` must then be 2048).

    With no rows on a side (before any update, after ``reset()``) the value is ``inf``, as
    in the seed library; one row on a side has no covariance, and gives NaN.
    """

    higher_is_better = False
    _EMPTY_VALUES: ClassVar[Mapping[str, float]] = {"fid": float("inf")}
    _metric_type = FID

    def __init__(
        self, feature_dim: int | None = None, *, precision: str = "float64", name: str = "fid"
    ) -> None:
        self.precision = precision
        self._given_dim = feature_dim
        self.feature_dim = feature_dim
        super().__init__(name, None if feature_dim is None else self._metric(feature_dim))

    def _metric(self, feature_dim: int) -> FID:
        return FID(num_features=feature_dim, precision=self.precision)

    def reset(self) -> None:
        super().reset()
        self.feature_dim = self._given_dim

    def _adopt(self, other: Stateful | State) -> None:
        super()._adopt(other)
        if self._stateful is not None:
            self.feature_dim = self._stateful.metric.num_features

    def _extract_features(self, real=None, generated=None, params=None, **masks) -> dict[str, Any]:
        width = self.feature_dim
        if width is None:
            first = real if real is not None else generated
            # Images go through the Inception's 2048-d pool features.
            width = jnp.shape(first)[-1] if first is not None and jnp.ndim(first) == 2 else 2048
        inputs = dict(masks)
        for side, x in (("real", real), ("generated", generated)):
            if x is not None:
                inputs[side] = _check_width(
                    "FIDMetric", x, width, "feature_dim", side, self._given_dim is None
                )
        if self._stateful is None:  # the first batch passed the checks: keep its width
            self.feature_dim = int(width)
            self._stateful = Stateful(self._metric(self.feature_dim), name=self.name)
        if params is not None:
            inputs["params"] = params
        return inputs

    def _seen(self, state: State) -> jax.Array:
        # The seed library's FID is inf when either side is empty.
        return jnp.minimum(
            numerics.df_value(state.real.count), numerics.df_value(state.generated.count)
        )

    def _values(self, computed: Any) -> dict[str, Any]:
        return {"fid": computed}


class InceptionScoreMetric(_StateBackedMetric):
    """Inception Score from batches of class probabilities (or logits).

    ``update(probabilities=(N, C))`` or ``update(logits=(N, C))``. ``compute() ->
    {"inception_score": mean, "inception_score_std": std}`` over ``splits`` in-order splits
    (higher is better). ``splits=1`` by default, as the seed library: ``exp(E_x KL(p(y|x) ||
    p(y)))`` over all images, std 0 (``mx.InceptionScore`` keeps the customary 10). Backed
    by :class:`metrix.InceptionScore` (a buffer of ``capacity`` log-probability rows).
    ``num_classes`` defaults to the width of the first batch (forgotten by ``reset()``,
    like an inferred FID width). With no rows (before any
    update, after ``reset()``) both values are 0.0, as in the seed library (a real score
    is at least 1).
    """

    higher_is_better = True
    _EMPTY_VALUES: ClassVar[Mapping[str, float]] = {"inception_score": 0.0, "inception_score_std": 0.0}
    _metric_type = InceptionScore

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        splits: int = 1,
        capacity: int = 50_000,
        name: str = "inception_score",
    ) -> None:
        self.splits, self.capacity = splits, capacity
        metric = None if num_classes is None else self._metric(num_classes)
        super().__init__(name, metric)

    def _metric(self, num_classes: int) -> InceptionScore:
        return InceptionScore(num_classes=num_classes, splits=self.splits, capacity=self.capacity)

    def _extract_features(self, probabilities=None, logits=None, mask=None) -> dict[str, Any]:
        if (probabilities is None) == (logits is None):
            raise TypeError(
                "InceptionScoreMetric.update() needs exactly one of probabilities= or logits="
            )
        values = jnp.asarray(probabilities if probabilities is not None else logits)
        if values.ndim != 2:
            raise ValueError(
                f"InceptionScoreMetric: expected (N, num_classes) rows, got shape {values.shape}"
            )
        if self._stateful is None:
            self._stateful = Stateful(self._metric(values.shape[-1]), name=self.name)
        inputs = {"probs": values} if probabilities is not None else {"logits": values}
        if mask is not None:
            inputs["mask"] = mask
        return inputs

    def _seen(self, state: State) -> jax.Array:
        return state.count

    def _values(self, computed: Any) -> dict[str, Any]:
        return {"inception_score": computed["mean"], "inception_score_std": computed["std"]}


_PAIR_INPUTS = (
    "candidate_embeddings",
    "reference_embeddings",
    "candidate_mask",
    "reference_mask",
    "candidate_weights",
    "reference_weights",
    "candidate_ids",
    "reference_ids",
    "mask",
)


class BERTScoreMetric(_StateBackedMetric):
    """BERTScore from frozen BERT token embeddings, accumulated over candidate/reference pairs.

    ``update(candidate_embeddings=..., reference_embeddings=...)`` with ``(L, D)`` embeddings
    of one pair or ``(B, L, D)`` batches, plus any other input of :class:`metrix.BERTScore`
    (token masks, weights, ids with an ``idf`` table, ``mask`` over pairs). Per pair, with
    cosine similarities ``s_ij`` of the L2-normalised tokens (weights 1 by default)::

        P = sum_i w_i max_j s_ij / sum_i w_i,   R = sum_j w_j max_i s_ij / sum_j w_j,
        F = 2 P R / (P + R)

    ``compute() -> {"bertscore_f1", "bertscore_precision", "bertscore_recall"}``: means over
    all pairs (higher is better); 0.0 each with no pairs (before any update, after
    ``reset()``), as in the seed library. Backed by :class:`metrix.text.bertscore.BERTScore`
    (exact sums of P, R, F and the pair count); its configuration (``baseline=``,
    ``special_token_ids=``, ...) can be passed as keyword arguments.
    """

    higher_is_better = True
    _EMPTY_VALUES: ClassVar[Mapping[str, float]] = {
        "bertscore_f1": 0.0, "bertscore_precision": 0.0, "bertscore_recall": 0.0
    }

    def __init__(self, *, name: str = "bertscore", **config: Any) -> None:
        from metrix.text.bertscore import BERTScore

        super().__init__(name, BERTScore(**config))

    def _extract_features(self, **inputs) -> dict[str, Any]:
        candidates = inputs.get("candidate_embeddings")
        if candidates is not None and jnp.ndim(candidates) == 2:  # one pair: a batch of one
            inputs = {
                k: (jnp.asarray(v)[None] if k in _PAIR_INPUTS and v is not None else v)
                for k, v in inputs.items()
            }
        return inputs

    def _seen(self, state: State) -> jax.Array:
        return getattr(state, "totals", state).count  # with capacity=: the sums' pair count

    def _values(self, computed: Any) -> dict[str, Any]:
        return {f"bertscore_{k}": computed[k] for k in ("f1", "precision", "recall")}


# ---------------------------------------------------------------------------------------
# Tier 2: learned metrics
# ---------------------------------------------------------------------------------------


class LearnedMetric(nnx.Module):
    """Tier 2: a metric with trainable parameters, as an ``flax.nnx.Module``.

    Subclasses declare ``nnx.Param`` weights in ``__init__`` (after
    ``super().__init__(name=..., rngs=rngs)``) and implement ``update``, ``compute`` and
    ``reset``; ``nnx.state(metric, nnx.Param)`` and nnx optimizers see the weights.
    """

    higher_is_better: bool | None = None

    def __init__(self, name: str, *, rngs: nnx.Rngs | None = None) -> None:
        self._metric_name = name

    @property
    def name(self) -> str:
        return self._metric_name

    def update(self, **kwargs: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.update")

    def compute(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.compute")

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.reset")

    def plot(self, output_dir: str | os.PathLike = "figures", filename: str | None = None):
        """Bar chart of ``compute()``'s scalars; the PNG path, or None without matplotlib."""
        return plot_values(self.compute(), output_dir, filename or self.name)


@jax.jit
def _lpips_accumulate(state: AverageState, calibration, features_a, features_b, mask):
    """``state`` merged with one batch's LPIPS distances."""
    distances = lpips_core.compiled_lpips_from_features(features_a, features_b, calibration)
    return state.merge(AverageState.from_values(jax.lax.stop_gradient(distances), mask=mask))


class LPIPSMetric(LearnedMetric):
    """LPIPS with its per-layer calibration weights as ``nnx.Param`` (trainable).

    ``d(a, b) = sum_l mean_hw sum_c w_{l,c} (u_{l,hwc} - v_{l,hwc})^2`` with ``u``, ``v`` the
    channel-normalised features of layer ``l`` (:func:`metrix.perceptual.lpips_math.lpips_from_features`).

    Calibration weights ``lin0 .. lin{L-1}`` (shapes ``LPIPS_CHANNELS[net]``, VGG:
    64, 128, 256, 512, 512):

    * ``calibration=None`` (default): lpips' own weights (``weights/v0.1/{net}.pth`` of the
      installed lpips package, read with torch) when they are found; otherwise a
      ``UserWarning`` naming what to install, and the weights are drawn as with
      ``"random"``;
    * ``calibration="random"``: drawn from ``rngs`` (uniform in ``[0, 1/sqrt(C_l)]``), to
      train them from scratch; no warning;
    * ``calibration="lpips"``: lpips' weights, an error when they cannot be read;
    * a path to a converted ``.safetensors``/``.npz`` file
      (:func:`metrix.perceptual.lpips_math.save_calibration`; needs neither lpips nor
      torch), or a ``{"lin{l}": (C_l,)}`` mapping.

    ``metric(features_a, features_b)`` is the differentiable ``(N,)`` distance (use it in a
    loss; call :meth:`project_nonnegative` after each optimizer step, as lpips' trainer
    clamps at 0). ``update(features_a=[...], features_b=[...])`` accumulates the mean
    distance in a mergeable :class:`~metrix.AverageState` (``MetricState`` variables, not
    parameters); ``compute() -> {"lpips": mean}`` (lower is better), 0.0 with nothing
    accumulated (before any update, after ``reset()``), as in the seed library.
    """

    higher_is_better = False

    def __init__(
        self,
        net: str = "vgg",
        calibration: str | os.PathLike | Mapping[str, Any] | None = None,
        *,
        rngs: nnx.Rngs,
        name: str = "lpips",
    ) -> None:
        super().__init__(name=name, rngs=rngs)
        if net not in lpips_core.LPIPS_CHANNELS:
            raise ValueError(
                f"LPIPSMetric: unknown net {net!r}; expected one of {sorted(lpips_core.LPIPS_CHANNELS)}"
            )
        self.net = net
        self.feature_channels = lpips_core.LPIPS_CHANNELS[net]
        weights = self._initial_weights(calibration, rngs)
        self.num_layers = len(self.feature_channels)
        for k, w in enumerate(weights):
            setattr(self, f"lin{k}", nnx.Param(jnp.asarray(w, jnp.float32)))
        empty = AverageState.empty()
        self.total = nnx.metrics.MetricState(empty.total)
        self.count = nnx.metrics.MetricState(empty.count)

    def _initial_weights(self, calibration, rngs) -> list[Any]:
        if calibration is None:  # lpips' own weights, or a warning and random ones
            loaded = lpips_core.shipped_calibration_or_warn(self.net, "LPIPSMetric")
            calibration = "random" if loaded is None else calibration
        elif calibration == "lpips":
            loaded = lpips_core.load_calibration(self.net)
        elif isinstance(calibration, Mapping):
            _check_calibration(self.net, calibration)
            loaded = calibration
        elif calibration != "random":
            loaded = lpips_core.load_calibration(self.net, calibration)
        if calibration == "random":
            # One draw for all layers (one compile, not one per layer), cut per layer and
            # scaled to [0, 1/sqrt(C_l)].
            channels = self.feature_channels
            draw = np.asarray(jax.random.uniform(rngs.params(), (sum(channels),)))
            cuts = np.cumsum(channels)[:-1]
            return [w / c**0.5 for w, c in zip(np.split(draw, cuts), channels)]
        return [loaded[f"lin{k}"] for k in range(len(self.feature_channels))]

    @property
    def _layer_weights(self) -> tuple[nnx.Param, ...]:
        """The calibration weights, one ``nnx.Param`` per layer (the seed library's name)."""
        return tuple(getattr(self, f"lin{k}") for k in range(self.num_layers))

    # -- weights ------------------------------------------------------------------------------
    def calibration(self) -> dict[str, jax.Array]:
        """The weights as ``{"lin{l}": (C_l,)}`` (the pytree :mod:`metrix.perceptual.lpips_math` takes)."""
        return {f"lin{k}": getattr(self, f"lin{k}")[...] for k in range(self.num_layers)}

    def project_nonnegative(self) -> None:
        """Clamp every weight at 0 in place (after an optimizer step)."""
        for k in range(self.num_layers):
            param = getattr(self, f"lin{k}")
            param[...] = jnp.maximum(param[...], 0)

    # -- distances ----------------------------------------------------------------------------
    def __call__(self, features_a: Sequence[Any], features_b: Sequence[Any]) -> jax.Array:
        """Per-example LPIPS ``(N,)`` from per-layer features (differentiable in the weights)."""
        self._check_layers(features_a, features_b)
        return lpips_core.compiled_lpips_from_features(list(features_a), list(features_b), self.calibration())

    def _check_layers(self, features_a, features_b) -> None:
        for side, feats in (("features_a", features_a), ("features_b", features_b)):
            if len(feats) != self.num_layers:
                raise ValueError(
                    f"LPIPSMetric({self.net!r}): {side} has {len(feats)} layers, expected {self.num_layers}"
                )
            widths = tuple(jnp.shape(f)[-1] for f in feats)
            if widths != tuple(self.feature_channels):
                raise ValueError(
                    f"LPIPSMetric({self.net!r}): {side} layers have {widths} channels, expected "
                    f"feature_channels {tuple(self.feature_channels)}"
                )

    # -- the lifecycle ------------------------------------------------------------------------
    @property
    def state(self) -> AverageState:
        """The accumulated mean distance as a mergeable metrix state."""
        return AverageState(total=self.total[...], count=self.count[...])

    def set_state(self, state: AverageState) -> None:
        """Replace the accumulated state (e.g. a restored checkpoint or an all-reduced state)."""
        self.total[...] = state.total
        self.count[...] = state.count

    def merge(self, other: LPIPSMetric | AverageState) -> None:
        """Merge another instance's accumulated distances (or a state) into this one."""
        self.set_state(self.state.merge(other.state if isinstance(other, LPIPSMetric) else other))

    def update(self, features_a: Sequence[Any], features_b: Sequence[Any], mask=None) -> None:
        """Accumulate the distances of one batch (``mask`` ``(N,)`` selects examples)."""
        self._check_layers(features_a, features_b)
        state = _lpips_accumulate(
            self.state, self.calibration(), list(features_a), list(features_b), mask
        )
        self.set_state(state)

    def compute(self) -> dict[str, Any]:
        state = self.state
        # Nothing accumulated: 0.0, the seed library's value (a where, so it jits).
        empty = numerics.df_value(state.count) == 0
        return {"lpips": jnp.where(empty, jnp.float32(0), state.compute())}

    def reset(self) -> None:
        self.set_state(AverageState.empty())
