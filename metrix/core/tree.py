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
    with sharing_scope():
        return jax.tree.map(
            lambda m: m.get_state_from_context(context), metrics, is_leaf=_is_metric
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
    return jax.tree.map(lambda s: s.compute(), states, is_leaf=_is_state)
