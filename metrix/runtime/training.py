"""Train metrics that accumulate over a logging window inside the jitted step.

Kauldron logs a single-step snapshot of its train metrics. metrix states merge inside
``jit``, so the train step can instead carry the merged states of every step since the last
log, and the logged values cover the whole window (as one big batch would)::

    window = mx.TrainMetrics(metrics)               # any pytree of metrics / losses
    states = window.empty()                          # carried through the train loop

    @jax.jit
    def train_step(params, opt_state, states, batch):
        ...
        new = mx.get_states(metrics, context)        # this step's states
        return params, opt_state, mx.window_step(states, new)   # = mx.merge(states, new)

    if step % log_every == 0:
        values, states = mx.log_and_reset(states)    # outside jit: values, then empty states

The empty states have the dtypes and shapes of real ones (``state.empty_like()``), so the
jitted step traces once whatever the window position.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.tree import compute, empty_states, get_states, merge
from metrix.runtime.writers import write


def _is_state(x) -> bool:
    return isinstance(x, State)


def window_step(states: Any, new_states: Any) -> Any:
    """Add one step's states to the window (jit-safe): ``mx.merge(states, new_states)``."""
    return merge(states, new_states)


def empty_like_states(states: Any) -> Any:
    """The identity of merge with the same shapes and dtypes as ``states`` (jit-safe)."""
    return jax.tree.map(lambda s: s.empty_like(), states, is_leaf=_is_state)


def log_and_reset(
    states: Any, *, writer: Any = None, step: int | None = None, metrics: Any = None
) -> tuple[Any, Any]:
    """Values of the window and a fresh (empty) window: ``(mx.compute(states), empty_like_states(states))``.

    Call it outside the jitted step, at logging time (``compute`` may trim buffers eagerly).
    With ``writer`` (a CLU-style writer, ``mx.TensorBoardWriter``, ``mx.WandbWriter``) the
    values are also written at ``step`` with :func:`metrix.write` (``metrics``: the metric tree,
    to tell images and histograms apart; optional).
    """
    values = compute(states)
    if writer is not None:
        if step is None:
            raise ValueError("log_and_reset: writer= needs step= (the training step to log at)")
        write(writer, step, jax.device_get(values), metrics=metrics)
    return values, empty_like_states(states)


@dataclasses.dataclass(frozen=True)
class TrainMetrics:
    """A pytree of metrics (losses included) accumulated over a logging window.

    A thin convenience over :func:`window_step` and :func:`log_and_reset`; it holds no
    state itself (the states are carried by the train loop, so they can live in ``jit``).
    """

    metrics: Any

    def empty(self) -> Any:
        """Empty states for every metric (needs the metrics' static sizes; see ``empty()``)."""
        return empty_states(self.metrics)

    def get_states(self, context: Any) -> Any:
        """This step's states, read from ``context`` through the keys."""
        return get_states(self.metrics, context)

    def update(self, states: Any, context: Any) -> Any:
        """``window_step(states, get_states(context))``: jit-safe accumulation of one step."""
        return window_step(states, self.get_states(context))

    def log_and_reset(
        self, states: Any, *, writer: Any = None, step: int | None = None
    ) -> tuple[Any, Any]:
        """Values of the window and empty states of the same shapes; written to ``writer`` at
        ``step`` when given (see :func:`log_and_reset`)."""
        return log_and_reset(states, writer=writer, step=step, metrics=self.metrics)

    def __hash__(self):  # the metrics pytree may hold dicts; hash its leaves and structure
        leaves, treedef = jax.tree.flatten(self.metrics, is_leaf=lambda x: isinstance(x, Metric))
        return hash((tuple(leaves), treedef))


__all__ = ["TrainMetrics", "empty_like_states", "log_and_reset", "window_step"]
