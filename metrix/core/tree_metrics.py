"""Metrics that wrap a metric: over a pytree of inputs, optional, or none at all.

Kauldron's ``TreeMap``, ``TreeReduce``, ``SkipIfMissing`` and ``NoopMetric``, on metrix's
algebra. The wrapped metric's keys say where the inputs live; a key may be a glob path
(``"params.**.kernel"``, see :mod:`metrix.core.keys`) that selects a subtree of the context:

* ``TreeMap(metric=m)``: ``m`` applied to every leaf of its inputs' trees; the state holds
  a tree of ``m``'s states, merged leaf by leaf; ``compute()`` is the tree of values.
* ``TreeReduce(metric=m)``: the same states merged into one (``m``'s own state, so the value
  is ``m``'s over all leaves together, e.g. one average of every leaf's elements).
* ``SkipIfMissing(m)``: ``m``, or an empty state when an input path is not in the context;
  the empty state computes ``{}`` and merges as the identity.
* ``NoopMetric()``: reads nothing, computes ``{}``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax

from metrix.core.fields import EMPTY, nested_field
from metrix.core.keys import ContextKeyError, MissingPathError
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import EmptyState


def _is_state(x) -> bool:
    return isinstance(x, State)


def _finalize_tree(tree):
    if tree is EMPTY:
        return tree
    return jax.tree.map(lambda s: s.finalize(), tree, is_leaf=_is_state)




class NoopMetric(Metric):
    """A metric that does nothing: any inputs, an :class:`~metrix.EmptyState`, value ``{}``
    (switches a metric off in a sweep or a config without removing its entry)."""

    class State(EmptyState):
        pass

    def get_state(self, **inputs) -> State:
        return self.State(parent=self)


class TreeState(State):
    """A pytree of one metric's states (one per leaf of the inputs), merged leaf by leaf:
    ``merge(a, b).tree[path] = a.tree[path].merge(b.tree[path])``; both trees must have the
    same structure. ``compute()`` is the same tree of values; ``empty()`` holds ``EMPTY``
    (the identity whatever the tree) and computes ``{}``."""

    _shapeless_identities = True

    tree: Any = nested_field()

    def compute(self) -> Any:
        if self.tree is EMPTY:
            return {}
        return jax.tree.map(lambda s: s.compute(), self.tree, is_leaf=_is_state)

    def finalize(self) -> TreeState:
        return self.replace(tree=_finalize_tree(self.tree))


class _TreeMetric(Metric):
    """A metric applied to every leaf of its inputs, read through the wrapped metric's keys."""

    metric: Any = None

    def __post_init__(self):
        if not isinstance(self.metric, Metric):
            raise TypeError(
                f"{type(self).__name__}(metric=...) needs a metrix Metric to apply to each leaf, "
                f"got {self.metric!r}"
            )

    def get_state_from_context(self, context: Any) -> State:
        # The wrapped metric's keys and checks; a glob key resolves to a subtree.
        return self.get_state(**self.metric.resolve_inputs(context))

    def _leaf_states(self, inputs: dict[str, Any]) -> Any:
        """The wrapped metric's state of every leaf (the inputs' trees zipped leaf by leaf)."""
        names = [k for k, v in inputs.items() if v is not None]
        if not names:
            raise ContextKeyError(
                f"{type(self).__name__}: no inputs for {type(self.metric).__name__} (every key "
                "unset or None)"
            )

        def leaf_state(*leaves):
            return self.metric.get_state(**dict(zip(names, leaves)))

        try:
            return jax.tree.map(leaf_state, *(inputs[n] for n in names))
        except ValueError as err:
            if len(names) < 2 or "structure" not in str(err):
                raise
            raise ValueError(
                f"{type(self).__name__}: the inputs {names} must be trees of the same structure "
                f"(one leaf of each per state) ({err})"
            ) from None


class TreeMap(_TreeMetric):
    """``metric`` applied to every leaf of its inputs' pytrees; the value is the same tree of
    the metric's values (e.g. ``TreeMap(metric=mx.Norm(values="params"))``: one norm per
    parameter). Inputs given together (``x`` and ``mask``) are zipped leaf by leaf."""

    State = TreeState

    def get_state(self, **inputs) -> TreeState:
        return self.State(parent=self, tree=self._leaf_states(inputs))


class TreeReduce(_TreeMetric):
    """``metric`` applied to every leaf of its inputs' pytrees, the leaves' states merged into
    one: the metric's own state (its ``parent`` is ``metric``), so the value is the metric's
    over all leaves taken together (for an average: the mean of every element of every leaf).
    """

    def get_state(self, **inputs) -> State:
        states = jax.tree.leaves(self._leaf_states(inputs), is_leaf=_is_state)
        return functools.reduce(lambda a, b: a.merge(b), states)

    def empty(self) -> State:
        return self.metric.empty()


class _SkippableState(State):
    """The wrapped metric's state, or ``EMPTY`` when its inputs were missing: the identity of
    merge, computing ``{}``."""

    _shapeless_identities = True

    state: Any = nested_field()

    def compute(self) -> Any:
        return {} if self.state is EMPTY else self.state.compute()

    def finalize(self) -> _SkippableState:
        return self.replace(state=_finalize_tree(self.state))


class SkipIfMissing(Metric):
    """``metric``, skipped when one of its inputs is not in the context.

    ``get_state_from_context`` gives an empty state (value ``{}``, the identity of merge)
    when a key's path is missing (:class:`~metrix.core.keys.MissingPathError`), e.g. a metric
    of gradients during evaluation. A key that is unset or malformed is still an error.
    """

    metric: Any = None

    def __init__(self, metric: Any = None):
        # Positional too, as Kauldron's ``SkipIfMissing(metric)`` (the dataclass machinery
        # keeps an __init__ written in the class body).
        object.__setattr__(self, "metric", metric)
        self.__post_init__()

    def __post_init__(self):
        if not isinstance(self.metric, Metric):
            raise TypeError(f"SkipIfMissing(metric) needs a metrix Metric, got {self.metric!r}")

    class State(_SkippableState):
        pass

    def get_state(self, **inputs) -> State:
        return self.State(parent=self, state=self.metric.get_state(**inputs))

    def get_state_from_context(self, context: Any) -> State:
        try:
            inner = self.metric.get_state_from_context(context)
        except MissingPathError:
            return self.empty()
        return self.State(parent=self, state=inner)


__all__ = ["NoopMetric", "SkipIfMissing", "TreeMap", "TreeReduce", "TreeState"]
