"""A collection of metrics that builds, carries and merges each distinct state once.

Precision, recall, F1, MCC, Cohen's kappa and the confusion matrix all accumulate the same
confusion counts. In a plain dict of metrics each carries its own copy: six states to build,
pass in and out of every jitted step and merge. :class:`Collection` groups metrics whose
states are provably identical — equal :meth:`Metric.state_sharing_key` and the same input
keys — and keeps one state per group (TorchMetrics calls these compute groups). Values are
unchanged: each member computes from the shared state as if it were its own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from metrix.core import keys as keys_lib
from metrix.core.fields import nested_field
from metrix.core.metric import Metric
from metrix.core.sharing import sharing_scope
from metrix.core.state import State


def _input_paths(metric: Metric) -> tuple:
    """The key paths a metric reads, as a hashable tuple (unset optional keys left out)."""
    paths = []
    for name in metric.key_fields():
        path = getattr(metric, name)
        if path is None or path is keys_lib.REQUIRED:
            continue
        paths.append((metric.key_aliases.get(name, name), path))
    return tuple(sorted(paths))


class Collection(Metric):
    """Several named metrics evaluated as one metric, sharing identical states.

    ``mx.Collection(metrics={"precision": mx.Precision(...), "recall": mx.Recall(...)})``.
    ``get_state_from_context(context)`` (or ``get_state(**context)``: keyword arguments are
    the context's top-level entries) returns one state holding a state per *group*;
    ``compute()`` gives ``{name: value}``. It merges, jits, allreduces and checkpoints like
    any state. Two metrics share a group when their :meth:`~metrix.Metric.state_sharing_key`
    is equal (not ``None``) and they read the same key paths.
    """

    metrics: Any = None

    def __post_init__(self):
        metrics = self.metrics
        if isinstance(metrics, Mapping):
            metrics = tuple(metrics.items())
        if not metrics or not isinstance(metrics, tuple):
            raise TypeError(
                "Collection(metrics=...) needs a non-empty dict of name -> metric, got "
                f"{self.metrics!r}"
            )
        names = [pair[0] for pair in metrics]
        for name, metric in metrics:
            if not isinstance(name, str):
                raise TypeError(f"Collection: metric names must be strings, got {name!r}")
            if not isinstance(metric, Metric):
                raise TypeError(f"Collection: {name!r} is a {type(metric).__name__}, not a metrix Metric")
        if len(set(names)) != len(names):
            raise ValueError(f"Collection: duplicate metric names in {names}")
        object.__setattr__(self, "metrics", metrics)

    class State(State):
        groups: tuple = nested_field()

        def compute(self) -> dict[str, Any]:
            collection = self.parent
            return {
                name: metric.adopt_state(self.groups[index]).compute() if shared else self.groups[index].compute()
                for (name, metric), (index, shared) in zip(collection.metrics, collection._placement)
            }

    # -- grouping ---------------------------------------------------------------------------
    @functools.cached_property
    def _grouping(self) -> tuple[tuple[Metric, ...], tuple[tuple[int, bool], ...]]:
        """(the metric that builds each group's state, (group, adopted?) per member)."""
        leaders: list[Metric] = []
        group_of: dict[Any, int] = {}
        placement = []
        for _, metric in self.metrics:
            key = metric.state_sharing_key()
            if key is not None:
                key = (key, _input_paths(metric))
                if key in group_of:
                    placement.append((group_of[key], True))
                    continue
                group_of[key] = len(leaders)
            placement.append((len(leaders), False))
            leaders.append(metric)
        return tuple(leaders), tuple(placement)

    @property
    def _leaders(self) -> tuple[Metric, ...]:
        return self._grouping[0]

    @property
    def _placement(self) -> tuple[tuple[int, bool], ...]:
        return self._grouping[1]

    @property
    def num_states(self) -> int:
        """How many distinct states the collection carries (at most ``len(metrics)``)."""
        return len(self._leaders)

    # -- the functional core ----------------------------------------------------------------
    def get_state_from_context(self, context: Any) -> State:
        with sharing_scope():  # one backbone pass for every member that reads the same images
            groups = tuple(m.get_state_from_context(context) for m in self._leaders)
        return self.State(parent=self, groups=groups)

    def get_state(self, **context) -> State:
        """The collection's state from a context given as keyword arguments (its top level)."""
        return self.get_state_from_context(context)

    def empty(self) -> State:
        return self.State(parent=self, groups=tuple(m.empty() for m in self._leaders))


__all__ = ["Collection"]
