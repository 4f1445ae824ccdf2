"""flax-nnx-compatible metrics backed by metrix states: ``from metrix import nnx as mnnx``.

Drop-in replacements for ``flax.nnx.metrics`` (``Metric``, ``Average``, ``Accuracy``,
``Welford``, ``MultiMetric``, ``Statistics``). Each class subclasses ``flax.nnx.Metric``, so it
works inside ``nnx.jit`` and with ``nnx.split`` / ``nnx.merge``; its state is the metrix
state of the metric it delegates to, one ``nnx.metrics.MetricState`` variable per state
field (``total``/``count`` for averages, ``count``/``mean``/``m2`` for Welford)::

    metrics = MultiMetric(accuracy=Accuracy(), loss=Average())
    metrics.update(logits=logits, labels=labels, values=batch_loss)
    metrics.compute()          # {'accuracy': Array(...), 'loss': Array(...)}

``update(**inputs)`` merges ``metric.get_state(**inputs)`` into the stored state (the metrix
algebra: exact double-float counts, Chan-merged moments), ``compute()`` is
``state.compute()``, ``reset()`` restores ``metric.empty()``. ``metric.state`` gives the
metrix state (checkpoint it, ``mx.allreduce`` it; ``set_state`` puts one back, :meth:`Metric.merge`
merges another).

Differences from flax's classes, on purpose:

* **Masks count what they select.** flax's ``Average.update(values, mask=m)`` adds
  ``sum(values * m)`` to the total but ``m.sum()`` to the count, so a mask that broadcasts
  (``m`` of shape ``(B, 1)`` for values ``(B, T)``) counts each kept row once instead of ``T``
  times and the mean comes out ``T`` times too large (and ``NaN * 0`` leaks NaN). Here a mask
  is broadcast to the values first (numpy broadcasting, as flax documents; a mask over the
  leading axes, metrix's convention, also works) and selects elements: boolean indexing.
* ``MultiMetric.update`` rejects a keyword argument that no metric reads, with the closest
  accepted names (``difflib``), instead of silently ignoring a misspelled ``lables=``.
* Counts are exact past 2^24 / 2^31 (flax's float32 total and int32 count are not).

Doc values of ``flax.nnx.metrics`` are reproduced (``Average``: nan, 2.5, 2.0; ``Welford``:
mean 2.5, sem 0.559017, std 1.118034; empty Welford: mean 0, sem and std nan).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import jax
import jax.numpy as jnp
from flax.nnx import metrics as _flax_metrics

from metrix import classification, statistics
from metrix.core.state import State

MetricState = _flax_metrics.MetricState
# flax's own result type, so code that checks ``isinstance(x, nnx.metrics.Statistics)`` works.
Statistics = _flax_metrics.Statistics

__all__ = [
    "Accuracy",
    "Average",
    "LPIPSMetric",
    "Metric",
    "MetricState",
    "MultiMetric",
    "Statistics",
    "Welford",
]


def _suggest(name: str, accepted) -> str:
    close = difflib.get_close_matches(name, sorted(accepted), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _array(x):
    """``jnp.asarray(x)``, skipped for a jax array (an eager call costs tens of us)."""
    return x if isinstance(x, jax.Array) else jnp.asarray(x)


def flax_mask(mask, shape):
    """A mask for values of ``shape``: numpy-broadcast (flax's rule) when it can, else as is.

    A mask that does not broadcast from the trailing axes is returned unchanged, so metrix's
    leading-axes rule (``mask[b]`` covers ``values[b, ...]``) applies, and it raises a clear
    error when it covers neither way. Non-boolean masks select their non-zero entries.
    """
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        mask = mask != 0
    try:
        broadcast = jnp.broadcast_shapes(mask.shape, tuple(shape))
    except ValueError:
        return mask
    return jnp.broadcast_to(mask, shape) if broadcast == tuple(shape) else mask


def _merged_batch(metric, state: State, args, inputs) -> State:
    """``state.merge(metric.get_state(*args, **inputs))``: the compiled step of an update."""
    return state.merge(metric.get_state(*args, **inputs))


class Metric(_flax_metrics.Metric):
    """Base class: a ``flax.nnx.Metric`` whose state is a metrix state.

    Subclasses call ``super().__init__(metrix_metric)`` and implement ``update`` with
    :meth:`accumulate`. A subclass that keeps its own ``MetricState`` variables (as a flax
    metric does) may call ``super().__init__()`` without a metric and override
    ``update``/``compute``/``reset``.
    """

    def __init__(self, metric: Any = None):
        self._metric = metric  # a frozen, hashable metrix metric: static in nnx's graph
        self._state_fields: tuple[str, ...] = ()
        if metric is not None:
            self._store(metric.empty())

    # -- the metrix state as nnx variables -------------------------------------------------
    def _store(self, state: State) -> None:
        static = tuple((n, getattr(state, n)) for n in state._static_fields)
        # nnx attribute assignment is costly (graph bookkeeping): set what changed only.
        if getattr(self, "_state_cls", None) is not type(state):
            self._state_cls = type(state)
            self._state_fields = tuple(state._data_fields)
        if getattr(self, "_state_static", None) != static:
            self._state_static = static
        for name in self._state_fields:
            value = getattr(state, name)
            variable = getattr(self, name, None)
            if isinstance(variable, MetricState):
                variable.set_value(value)
            else:
                setattr(self, name, MetricState(value))

    @property
    def metric(self):
        """The metrix metric this one delegates to."""
        return self._metric

    @property
    def state(self) -> State:
        """The accumulated metrix state (merge it, checkpoint it, ``mx.allreduce`` it;
        put one back with :meth:`set_state`)."""
        if self._metric is None:
            raise NotImplementedError(f"{type(self).__name__} keeps no metrix state")
        values = {n: getattr(self, n).get_value() for n in self._state_fields}
        return self._state_cls(**dict(self._state_static), **values)

    def set_state(self, state: State) -> None:
        """Replace the accumulated state (a restored checkpoint, an all-reduced state)."""
        if not isinstance(state, self._state_cls):
            raise TypeError(
                f"{type(self).__name__}.state must be a {self._state_cls.__qualname__}, got {type(state).__qualname__}"
            )
        self._store(state)

    def accumulate(self, batch_state: State) -> None:
        """Merge the state of one batch into the stored state (in place)."""
        self._store(self.state.merge(batch_state))

    def accumulate_inputs(self, *args, **inputs) -> None:
        """Merge ``metric.get_state(*args, **inputs)`` into the stored state (in place).

        Eagerly (concrete inputs) this is one cached compiled program per metric and input
        shapes (``Metric.run_compiled``: eager input errors still raise); inside ``nnx.jit``
        it runs inline.
        """
        self._store(self._metric.run_compiled(_merged_batch, self.state, args, inputs))

    def merge(self, other: Metric | State) -> None:
        """Merge another metric's accumulated state (or a state) into this one, in place."""
        self.accumulate(other.state if isinstance(other, Metric) else other)

    def reset(self) -> None:
        """Restore the empty state (the identity of merge)."""
        if self._metric is None:
            raise NotImplementedError(f"{type(self).__name__}.reset")
        self._store(self._metric.empty())

    def compute(self):
        """The value of the accumulated state."""
        if self._metric is None:
            raise NotImplementedError(f"{type(self).__name__}.compute")
        return self.state.compute()

    def update(self, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.update")

    def input_names(self) -> frozenset[str] | None:
        """Keyword arguments ``update`` reads (None: unknown); used by MultiMetric."""
        return None

    def _argument(self, kwargs: dict, name: str):
        if name not in kwargs:
            raise TypeError(f"Expected keyword argument '{name}'{_suggest_from(name, kwargs)}")
        return kwargs[name]


def _suggest_from(expected: str, kwargs: dict) -> str:
    close = difflib.get_close_matches(expected, list(kwargs), n=1, cutoff=0.6)
    return f" (got {close[0]!r}: misspelled?)" if close else ""


class Average(Metric):
    """Average of all (unmasked) values passed as ``update(**{argname: values})``.

    Delegates to :class:`metrix.Average`; the mean of nothing is NaN (as flax). ``mask``
    broadcasts to the values and selects elements (boolean indexing), see the module doc.
    """

    def __init__(self, argname: str = "values"):
        self.argname = argname
        super().__init__(statistics.Average())

    def update(self, mask=None, **kwargs) -> None:
        values = _array(self._argument(kwargs, self.argname))
        self.accumulate_inputs(values, mask=flax_mask(mask, values.shape))

    def input_names(self):
        return frozenset({self.argname, "mask"})


class Accuracy(Metric):
    """Accuracy: ``mean(argmax(logits, -1) == labels)``, or binary with ``threshold``.

    ``threshold=None``: multi-class, ``logits`` have one more axis than ``labels`` (delegates
    to :class:`metrix.Accuracy`). ``threshold=t`` (a float): binary, correct when
    ``(logits >= t) == (labels > 0)`` (flax's rule; delegates to :class:`metrix.Average`).
    Labels must be integers, as in flax.
    """

    def __init__(self, threshold: float | None = None, *args, **kwargs):
        if threshold is not None and not isinstance(threshold, float):
            raise TypeError(f"Expected threshold to be a float, got {type(threshold)}")
        self.threshold = threshold
        self.argname = kwargs.pop("argname", args[0] if args else "values")  # flax keeps one
        super().__init__(classification.Accuracy() if threshold is None else statistics.Average())

    def update(self, *, logits, labels, mask=None, **_) -> None:
        logits, labels = _array(logits), _array(labels)
        if self.threshold is not None:
            if logits.ndim != labels.ndim:
                raise ValueError(
                    "For binary classification, expected logits.ndim==labels.ndim, got "
                    f"{logits.ndim} and {labels.ndim}"
                )
        elif logits.ndim != labels.ndim + 1:
            raise ValueError(
                "For multi-class classification, expected logits.ndim==labels.ndim+1, got "
                f"{logits.ndim} and {labels.ndim}"
            )
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"Expected integer labels (jnp.int32), got {labels.dtype}")
        if labels.dtype != jnp.int32:  # (an eager astype is a dispatch even when a no-op)
            labels = labels.astype(jnp.int32)
        mask = flax_mask(mask, labels.shape)
        if self.threshold is not None:
            correct = ((logits >= self.threshold) == (labels > 0)).astype(jnp.float32)
            self.accumulate_inputs(correct, mask=mask)
            return
        if not jnp.issubdtype(logits.dtype, jnp.floating):
            logits = logits.astype(jnp.float32)
        self.accumulate_inputs(logits=logits, labels=labels, mask=mask)

    def input_names(self):
        return frozenset({"logits", "labels", "mask"})


class Welford(Metric):
    """Mean, standard error of the mean and standard deviation of a stream (ddof = 0).

    Delegates to :class:`metrix.Std` (a :class:`~metrix.WelfordState`: count, mean and
    ``M2 = sum (x - mean)^2``, merged with Chan's formula). ``compute()`` returns
    :class:`Statistics` ``(mean, standard_error_of_mean = std / sqrt(n),
    standard_deviation = sqrt(M2 / n))``; with no data: mean 0, the others NaN (as flax).
    """

    def __init__(self, argname: str = "values"):
        self.argname = argname
        super().__init__(statistics.Std())

    def update(self, mask=None, **kwargs) -> None:
        values = _array(self._argument(kwargs, self.argname))
        if not jnp.issubdtype(values.dtype, jnp.floating):
            values = values.astype(jnp.float32)
        self.accumulate_inputs(values, mask=flax_mask(mask, values.shape))

    def compute(self) -> Statistics:
        state = self.state
        return Statistics(
            mean=state.mean, standard_error_of_mean=state.sem(), standard_deviation=state.std()
        )

    def input_names(self):
        return frozenset({self.argname, "mask"})


def _accepted_inputs(metric) -> frozenset[str] | None:
    """What ``metric.update`` reads: its own answer, or its signature (None: anything)."""
    names = getattr(metric, "input_names", None)
    if callable(names):
        return names()
    params = inspect.signature(metric.update).parameters.values()
    named = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    argname = getattr(metric, "argname", None)
    if argname is not None:  # flax's Average / Welford read kwargs[argname]
        return frozenset(named | {argname})
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(named)


class MultiMetric(_flax_metrics.Metric):
    """Several metrics updated together: ``MultiMetric(accuracy=Accuracy(), loss=Average())``.

    ``update(**updates)`` passes every update to every metric (each reads its own inputs);
    a keyword no metric reads raises ``TypeError`` naming the closest accepted ones.
    ``compute()`` returns ``{name: value}``; ``reset()`` resets all.
    """

    def __init__(self, **metrics):
        self._metric_names = list(metrics)
        for name, metric in metrics.items():
            setattr(self, name, metric)

    def _metrics(self):
        return [(name, getattr(self, name)) for name in self._metric_names]

    def reset(self) -> None:
        for _, metric in self._metrics():
            metric.reset()

    def update(self, **updates) -> None:
        accepted: set[str] = set()
        for _, metric in self._metrics():
            names = _accepted_inputs(metric)
            if names is None:  # some metric takes anything: nothing can be called unknown
                accepted = None
                break
            accepted |= names
        if accepted is not None:
            unknown = [k for k in updates if k not in accepted]
            if unknown:
                hints = "".join(f"\n  {k!r}{_suggest(k, accepted)}" for k in unknown)
                raise TypeError(
                    f"MultiMetric.update() got keyword argument(s) that no metric reads "
                    f"(they read {sorted(accepted)}):{hints}"
                )
        for _, metric in self._metrics():
            metric.update(**updates)

    def compute(self) -> dict[str, Any]:
        return {name: metric.compute() for name, metric in self._metrics()}


# LPIPSMetric lives in metrix.stateful: an nnx.Module holding the trainable calibration weights.
from metrix.stateful import LPIPSMetric
