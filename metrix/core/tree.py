"""Tree-wise helpers: any pytree (dict, list, ...) of metrics or states at once."""

from __future__ import annotations

import functools
from typing import Any

import jax

from metrix.core.metric import Metric
from metrix.core.sharing import sharing_scope
from metrix.core.state import State


def _is_metric(x) -> bool:
    return isinstance(x, Metric)


def _is_state(x) -> bool:
    return isinstance(x, State)


def get_states(metrics: Any, context: Any) -> Any:
    """The same pytree with each metric replaced by its state read from ``context``.

    Inputs several metrics derive the same way (one backbone pass over the same images) are
    computed once (:mod:`metrix.core.sharing`).
    """
    _require(metrics, _is_metric, "get_states", "metrix Metrics (e.g. mx.Accuracy(...))")
    with sharing_scope():
        return jax.tree.map(
            lambda m: m.get_state_from_context(context), metrics, is_leaf=_is_metric
        )


def _require(tree: Any, accept, what: str, expected: str) -> None:
    """A ``TypeError`` naming the path of the first leaf of ``tree`` that is not ``expected``."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=accept)
    for path, leaf in paths:
        if not accept(leaf):
            where = jax.tree_util.keystr(path) or "the tree itself"
            raise TypeError(
                f"mx.{what}() takes a pytree of {expected}; {where} is of type "
                f"{type(leaf).__name__} ({leaf!r:.60}): leave it out of the tree"
            )


def empty_states(metrics: Any) -> Any:
    """Each metric replaced by its ``empty()`` state (the identity of merge)."""
    return jax.tree.map(lambda m: m.empty(), metrics, is_leaf=_is_metric)


def merge(*states: Any) -> Any:
    """Merge pytrees of states leaf-wise: ``merge(a, b, c)`` = a.merge(b).merge(c) per metric."""
    if not states:
        raise TypeError("merge() needs at least one pytree of states")
    if len(states) == 1:
        return states[0]
    return jax.tree.map(
        lambda *s: functools.reduce(lambda a, b: a.merge(b), s), *states, is_leaf=_is_state
    )


def compute(states: Any) -> Any:
    """The same pytree with each state replaced by its computed values."""
    _require(states, _is_state, "compute", "metrix States (from get_state / mx.get_states)")
    return jax.tree.map(lambda s: s.compute(), states, is_leaf=_is_state)
