"""flax-nnx-compatible metrics backed by metrix states: ``from metrix import nnx as mnnx``.

Drop-in replacements for ``flax.nnx.metrics`` (``Metric``, ``Average``, ``Accuracy``,
``Welford``, ``MultiMetric``, ``Statistics``). Each class subclasses ``flax.nnx.Metric``, so it
works inside ``nnx.jit`` and with ``nnx.split`` / ``nnx.merge`` (a split graphdef hashes, so it
can be a static ``jit`` argument); its state is the metrix state of the metric it delegates
to, one ``nnx.metrics.MetricState`` variable per state field (``total``/``count`` for
averages, ``count``/``mean``/``m2`` for Welford). A double-float field (exact totals and
counts) reads as flax's float32 scalar (``metric.count[...]``, ``metric.total.value``) and
keeps its exact rest in a second variable (``count_lo``, ``total_lo``)::

    metrics = MultiMetric(accuracy=Accuracy(), loss=Average())
    metrics.update(logits=logits, labels=labels, values=batch_loss, mask={"accuracy": m})
    metrics.compute()          # {'accuracy': Array(...), 'loss': Array(...)}

``update(**inputs)`` merges ``metric.get_state(**inputs)`` into the stored state (the metrix
algebra: exact double-float counts, Chan-merged moments), ``compute()`` is
``state.compute()``, ``reset()`` restores ``metric.empty()``. ``metric.state`` gives the
metrix state (checkpoint it, ``mx.allreduce`` it; ``set_state`` puts one back, :meth:`Metric.merge`
merges another). flax's subclassing patterns work: a subclass of ``Metric`` with its own
variables (no ``super().__init__()``), or of ``Average``/``Accuracy`` with its own ``update``
signature (``MultiMetric`` reads what it accepts from that signature).

Differences from flax's classes, on purpose:

* **Masks count what they cover.** flax's ``Average.update(values, mask=m)`` adds
  ``sum(values * m)`` to the total but ``m.sum()`` to the count, so a mask that broadcasts
  (``m`` of shape ``(B, 1)`` for values ``(B, T)``) counts each kept row once instead of ``T``
  times and the mean comes out ``T`` times too large (and ``NaN * 0`` leaks NaN). Here a mask
  is broadcast to the values first (numpy broadcasting, as flax documents; a mask over the
  leading axes, metrix's convention, also works). A boolean mask then selects elements
  (boolean indexing); a non-boolean one weights them in ``Average`` (flax's ``values *
  mask``, counted per element) and must be 0/1 in ``Accuracy``/``Welford`` (checked eagerly).
* ``MultiMetric.update`` rejects a keyword argument that no metric reads, with the closest
  accepted names (``difflib``), instead of silently ignoring a misspelled ``lables=``; a
  ``mask`` dict key that is no metric's name is refused likewise (flax leaves that metric
  unmasked).
* Counts are exact past 2^24 / 2^31 (flax's float32 total and int32 count are not); the
  ``count`` variable reads as float32 where flax's is int32.

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
from metrix.core import numerics
from metrix.core.fields import ExactSumKind
from metrix.core.refuse import is_concrete
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
    return _broadcast(mask, shape)


def _broadcast(mask, shape):
    """``mask`` broadcast to ``shape`` from the trailing axes (numpy), or over the leading
    axes (metrix), or unchanged when it covers neither (the state's check then says so)."""
    shape = tuple(shape)
    try:
        if jnp.broadcast_shapes(mask.shape, shape) == shape:
            return jnp.broadcast_to(mask, shape)
    except ValueError:
        pass
    if mask.ndim <= len(shape) and all(m in (1, n) for m, n in zip(mask.shape, shape)):
        leading = mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
        return jnp.broadcast_to(leading, shape)
    return mask


def flax_weights(mask, shape):
    """``(keep, weights)`` for :class:`Average` from flax's ``mask`` argument.

    flax adds ``sum(values * mask)`` to the total and ``sum(mask)`` to the count, so a
    non-boolean mask weights each element. Here it is a weight too, broadcast to the values
    first (so it is counted once per element it covers); zero-weight elements are left out
    (a NaN there changes nothing). A boolean mask selects: ``(mask, None)``.
    """
    if mask is None:
        return None, None
    mask = _array(mask)
    if mask.dtype == jnp.bool_:
        return flax_mask(mask, shape), None
    weights = _broadcast(mask.astype(numerics.accumulation_dtype(mask.dtype)), shape)
    return weights != 0, weights


def selecting_mask(owner: str, mask, shape):
    """A boolean mask for a metric that counts examples (``Accuracy``, ``Welford``).

    A non-boolean mask must be 0/1: checked eagerly (flax would weight by a fraction, which
    these states cannot); under ``jit`` its non-zero entries are selected.
    """
    if mask is None:
        return None
    mask = _array(mask)
    if (
        mask.dtype != jnp.bool_
        and is_concrete(mask)
        and not bool(jnp.all((mask == 0) | (mask == 1)))
    ):
        raise ValueError(
            f"{owner}.update: mask has values other than 0 and 1; pass a boolean mask "
            "(Average takes fractional masks as weights)"
        )
    return flax_mask(mask, shape)


# -- the stored form: what the nnx variables hold -------------------------------------------
#
# A double-float field (``exact_sum_field``: a ``(..., 2)`` pair ``(hi, lo)``) is kept in two
# variables: ``name`` holds ``hi``, the value rounded to float32 -- the scalar flax's readers
# expect (``metric.count.value``, ``metric.total[...]``) -- and ``name_lo`` the exact rest.
# Every other field is one variable as it is. The "stored form" of a state is the same State
# class with each double-float field replaced by the tuple ``(hi, lo)``: still a pytree, so it
# crosses the compiled update step.


def _is_exact(state_cls, name: str) -> bool:
    return isinstance(state_cls.field_kind(name), ExactSumKind)


def _variable_names(state_cls) -> tuple[tuple[str, str | None], ...]:
    """``(field, lo variable or None)`` for each data field of ``state_cls``."""
    return tuple(
        (n, f"{n}_lo" if _is_exact(state_cls, n) else None) for n in state_cls._data_fields
    )


def _to_stored(state: State) -> State:
    """Split each double-float field into a renormalised ``(hi, lo)``: ``hi = fl(hi + lo)``
    exactly (TwoSum), so ``hi`` is the correctly rounded float32 value."""
    split = {}
    for name in state._data_fields:
        if _is_exact(type(state), name):
            pair = getattr(state, name)
            split[name] = numerics.two_sum(pair[..., 0], pair[..., 1])
    return state.replace(**split)


def _from_stored(stored: State) -> State:
    """The metrix state of a stored form.

    ``lo`` is used only while ``fl(hi + lo) == hi``, which every stored pair satisfies. A
    ``hi`` that flax-style code rewrote (``metric.total[...] = 0`` in a subclass's reset) no
    longer matches its stale ``lo``; that ``lo`` is dropped, so the value read is exactly what
    was written instead of ``0 + old rest``.
    """
    joined = {}
    for name in stored._data_fields:
        if _is_exact(type(stored), name):
            hi, lo = getattr(stored, name)
            hi = jnp.asarray(hi, jnp.float32)
            lo = jnp.broadcast_to(jnp.asarray(lo, jnp.float32), hi.shape)
            matches = jax.lax.optimization_barrier(hi + lo) == hi
            joined[name] = jnp.stack([hi, jnp.where(matches, lo, 0)], axis=-1)
    return stored.replace(**joined)


_EMPTY_STORED_SIZE = 128  # metrics whose stored empty state is kept, oldest out
_empty_stored_cache: dict = {}


def _empty_stored(metric) -> State:
    """``_to_stored(metric.empty())``, built once per configuration.

    Building it eagerly is a dozen small dispatches (2 ms for ``Accuracy``, most of a fresh
    metric's construction); jax arrays are immutable, so every instance can start from the
    same one. Unhashable configurations, and states built under a trace, are not kept.
    """
    key = (metric, bool(jax.config.jax_enable_x64))  # x64 changes the empty state's dtypes
    try:
        stored = _empty_stored_cache.get(key)
    except TypeError:
        return _to_stored(metric.empty())
    if stored is None:
        stored = _to_stored(metric.empty())
        if is_concrete(stored):
            if len(_empty_stored_cache) >= _EMPTY_STORED_SIZE:
                _empty_stored_cache.pop(next(iter(_empty_stored_cache)))
            _empty_stored_cache[key] = stored
    return stored


def _merged_batch(metric, stored: State, args, inputs) -> State:
    """The compiled step of an update: stored state merged with ``metric.get_state(...)``."""
    return _to_stored(_from_stored(stored).merge(metric.get_state(*args, **inputs)))


def _joined(metric, stored: State) -> State:
    """``_from_stored`` as a compiled program (eager reads cost one dispatch)."""
    del metric  # keys the program cache only
    return _from_stored(stored)


def _computed(metric, stored: State):
    """``compute()`` of a stored state: joined and computed in one compiled program."""
    del metric
    return _from_stored(stored).compute()


def _statistics(metric, stored: State) -> Statistics:
    """flax's ``Welford`` result of a stored :class:`~metrix.WelfordState`, in one program."""
    del metric
    state = _from_stored(stored)
    return Statistics(
        mean=state.mean, standard_error_of_mean=state.sem(), standard_deviation=state.std()
    )


def _plain(variable) -> bool:
    """A variable read and written as it is: no value hooks, not a mutable array reference.

    Its raw accessors then read and write exactly what ``get_value`` / ``set_value`` would,
    at a fraction of the cost (0.1 and 1.8 us against 5.4 and 7.3 on CPU: a tree copy and a
    reference check each); an update reads and writes every variable, six for ``Accuracy``.
    ``set_raw_value`` keeps flax's check against writes from another trace level.
    """
    meta = variable.get_metadata()
    return not (meta.get("ref") or "on_get_value" in meta or "on_set_value" in meta)


class Metric(_flax_metrics.Metric):
    """Base class: a ``flax.nnx.Metric`` whose state is a metrix state.

    Subclasses call ``super().__init__(metrix_metric)`` and implement ``update`` with
    :meth:`accumulate_inputs`. A subclass that keeps its own ``MetricState`` variables (as a
    flax metric does) may skip ``super().__init__`` (flax's pattern) or call it without a
    metric, and override ``update``/``compute``/``reset``.

    Variables: one ``MetricState`` per state field; a double-float field (exact totals and
    counts) is two, ``name`` (its float32 value, what flax code reads as
    ``metric.count.value``) and ``name_lo`` (the exact rest, ``value = name + name_lo``).
    """

    # Class defaults, so a flax-style subclass that never calls __init__ still has them.
    _metric: Any = None
    _state_fields: tuple[tuple[str, str | None], ...] = ()

    def __init__(self, metric: Any = None):
        self._metric = metric  # a frozen, hashable metrix metric: static in nnx's graph
        if metric is not None:
            self._store(_empty_stored(metric))

    # -- the metrix state as nnx variables -------------------------------------------------
    def _store(self, stored: State) -> None:
        """Write a stored-form state (see ``_to_stored``) into the variables."""
        static = tuple((n, getattr(stored, n)) for n in stored._static_fields)
        # nnx attribute assignment is costly (graph bookkeeping): set what changed only.
        if getattr(self, "_state_cls", None) is not type(stored):
            self._state_cls = type(stored)
            self._state_fields = _variable_names(type(stored))
        if getattr(self, "_state_static", None) != static:
            self._state_static = static
        for name, lo_name in self._state_fields:
            value = getattr(stored, name)
            if lo_name is None:
                self._set_variable(name, value)
            else:
                self._set_variable(name, value[0])
                self._set_variable(lo_name, value[1])

    def _set_variable(self, name: str, value) -> None:
        variable = getattr(self, name, None)
        if isinstance(variable, MetricState):
            if _plain(variable):
                variable.set_raw_value(value)
            else:
                variable.set_value(value)
        else:
            setattr(self, name, MetricState(value))

    def _stored(self) -> State:
        def read(name):
            variable = getattr(self, name)
            return variable.get_raw_value() if _plain(variable) else variable.get_value()

        values = {n: read(n) if lo is None else (read(n), read(lo)) for n, lo in self._state_fields}
        return self._state_cls(**dict(self._state_static), **values)

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
        return self._metric.run_compiled(_joined, self._stored())

    def set_state(self, state: State) -> None:
        """Replace the accumulated state (a restored checkpoint, an all-reduced state)."""
        if not isinstance(state, self._state_cls):
            raise TypeError(
                f"{type(self).__name__}.state must be a {self._state_cls.__qualname__}, got {type(state).__qualname__}"
            )
        self._store(_to_stored(state))

    def accumulate(self, batch_state: State) -> None:
        """Merge the state of one batch into the stored state (in place)."""
        self._store(_to_stored(self.state.merge(batch_state)))

    def accumulate_inputs(self, *args, **inputs) -> None:
        """Merge ``metric.get_state(*args, **inputs)`` into the stored state (in place).

        Eagerly (concrete inputs) this is one cached compiled program per metric and input
        shapes (``Metric.run_compiled``: eager input errors still raise); inside ``nnx.jit``
        it runs inline.
        """
        self._store(self._metric.run_compiled(_merged_batch, self._stored(), args, inputs))

    def merge(self, other: Metric | State) -> None:
        """Merge another metric's accumulated state (or a state) into this one, in place."""
        self.accumulate(other.state if isinstance(other, Metric) else other)

    def reset(self) -> None:
        """Restore the empty state (the identity of merge)."""
        if self._metric is None:
            raise NotImplementedError(f"{type(self).__name__}.reset")
        self._store(_empty_stored(self._metric))

    def compute(self):
        """The value of the accumulated state."""
        if self._metric is None:
            raise NotImplementedError(f"{type(self).__name__}.compute")
        return self._metric.run_compiled(_computed, self._stored())

    def update(self, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.update")

    def input_names(self) -> frozenset[str] | None:
        """Keyword arguments ``update`` reads (None: unknown); used by MultiMetric.

        Only trusted from the class that defines ``update``: a subclass with its own
        ``update`` is read from that method's signature instead (see ``_accepted_inputs``).
        """
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

    Delegates to :class:`metrix.Average`: ``total / count`` with ``total = sum(w x)`` and
    ``count = sum(w)`` over the kept elements; the mean of nothing is NaN (as flax). A
    boolean ``mask`` broadcasts to the values and selects elements (boolean indexing); a
    non-boolean one is the weight ``w`` of each element it covers (flax's ``values * mask``),
    see :func:`flax_weights` and the module doc. A Python number counts as one value.

    ``metric.total`` / ``metric.count`` read as float32 scalars (flax's ``total``; its
    ``count`` is int32); the exact double-float values are ``metric.state.total`` / ``.count``.
    """

    def __init__(self, argname: str = "values"):
        self.argname = argname
        super().__init__(statistics.Average())

    def update(self, mask=None, **kwargs) -> None:
        values = self._argument(kwargs, self.argname)
        if mask is not None and isinstance(values, (int, float)):
            raise ValueError(
                f"{type(self).__name__}.update: a mask was given with a Python number as "
                f"{self.argname!r}; {self.argname} should be a jax array the mask covers"
            )
        values = _array(values)
        keep, weights = flax_weights(mask, values.shape)
        self.accumulate_inputs(values, mask=keep, weights=weights)

    def input_names(self):
        return frozenset({self.argname, "mask"})


class Accuracy(Metric):
    """Accuracy: ``mean(argmax(logits, -1) == labels)``, or binary with ``threshold``.

    ``threshold=None``: multi-class, ``logits`` have one more axis than ``labels`` (delegates
    to :class:`metrix.Accuracy`). ``threshold=t`` (a float): binary, correct when
    ``(logits >= t) == (labels > 0)`` (flax's rule; delegates to :class:`metrix.Average`).
    Labels must be integers, as in flax. ``mask`` (over the labels' shape) selects examples;
    a non-boolean one must be 0/1 (see :func:`selecting_mask`).
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
        mask = selecting_mask(type(self).__name__, mask, labels.shape)
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
        self.accumulate_inputs(values, mask=selecting_mask(type(self).__name__, mask, values.shape))

    def compute(self) -> Statistics:
        return self._metric.run_compiled(_statistics, self._stored())

    def input_names(self):
        return frozenset({self.argname, "mask"})


def _update_owner(metric) -> type | None:
    """The class in ``metric``'s MRO whose body defines the ``update`` it runs."""
    return next((c for c in type(metric).__mro__ if "update" in vars(c)), None)


def _accepted_inputs(metric) -> frozenset[str] | None:
    """What ``metric.update`` reads (None: anything).

    ``input_names()`` answers for the class that defines both it and ``update``; a subclass
    that overrides ``update`` (flax's ``class MyAccuracy(nnx.metrics.Accuracy)`` pattern) is
    read from its own signature, not from its parent's inputs.
    """
    owner = _update_owner(metric)
    names = getattr(metric, "input_names", None)
    if callable(names) and owner is not None and "input_names" in vars(owner):
        return names()
    params = inspect.signature(metric.update).parameters.values()
    named = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    var_keyword = [p.name for p in params if p.kind is p.VAR_KEYWORD]
    if not var_keyword or var_keyword == ["_"]:  # ``**_``: the rest is ignored (flax's Accuracy)
        return frozenset(named)
    argname = getattr(metric, "argname", None)
    # flax's own Average / Welford: update(**kwargs) reads kwargs[argname] and nothing else.
    if isinstance(argname, str) and owner in _READS_ARGNAME:
        return frozenset(named | {argname})
    return None


_READS_ARGNAME = (_flax_metrics.Average, _flax_metrics.Welford)


class MultiMetric(_flax_metrics.Metric):
    """Several metrics updated together: ``MultiMetric(accuracy=Accuracy(), loss=Average())``.

    ``update(**updates)`` passes every update to every metric (each reads its own inputs); a
    keyword no metric reads raises ``TypeError`` naming the closest accepted ones. ``mask``
    is an array given to every metric, or a dict ``{metric name: mask}`` (a metric left out,
    or given ``None``, is updated without a mask; a name that is not a metric is refused).
    ``compute()`` returns ``{name: value}`` in construction order; ``reset()`` resets all.
    """

    def __init__(self, **metrics):
        # A tuple: nnx keeps non-variable attributes in the graphdef, which must be hashable
        # to be a static argument of jax.jit / nnx.jit after nnx.split.
        self._metric_names = tuple(metrics)
        for name, metric in metrics.items():
            setattr(self, name, metric)

    def _metrics(self):
        return [(name, getattr(self, name)) for name in self._metric_names]

    def reset(self) -> None:
        for _, metric in self._metrics():
            metric.reset()

    def update(self, **updates) -> None:
        mask = updates.pop("mask", None)
        self._check_keywords(updates, mask)
        for name, metric in self._metrics():
            metric_mask = mask.get(name) if isinstance(mask, dict) else mask
            # flax passes ``mask`` only when there is one: metrics without a mask argument work.
            extra = {} if metric_mask is None else {"mask": metric_mask}
            metric.update(**updates, **extra)

    def _check_keywords(self, updates: dict, mask) -> None:
        if isinstance(mask, dict):
            unknown = [k for k in mask if k not in self._metric_names]
            if unknown:
                hints = "".join(f"\n  {k!r}{_suggest(str(k), self._metric_names)}" for k in unknown)
                raise ValueError(
                    f"MultiMetric.update(mask={{...}}): keys must be metric names "
                    f"{list(self._metric_names)}; a misspelled one would leave its metric unmasked:{hints}"
                )
        accepted: set[str] = set()
        for _, metric in self._metrics():
            names = _accepted_inputs(metric)
            if names is None:  # some metric takes anything: nothing can be called unknown
                return
            accepted |= names
        unknown = [k for k in updates if k not in accepted]
        if unknown:
            hints = "".join(f"\n  {k!r}{_suggest(k, accepted)}" for k in unknown)
            raise TypeError(
                f"MultiMetric.update() got keyword argument(s) that no metric reads "
                f"(they read {sorted(accepted)}):{hints}"
            )

    def compute(self) -> dict[str, Any]:
        return {name: metric.compute() for name, metric in self._metrics()}


# LPIPSMetric lives in metrix.stateful: an nnx.Module holding the trainable calibration weights.
from metrix.stateful import LPIPSMetric
