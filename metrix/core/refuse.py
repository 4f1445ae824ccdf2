"""Refusing invalid inputs and values: an error when eager, NaN under a trace.

Principle 9 ("never silently wrong") has one rule for every metric, and this module is it::

    value = refuse(numerics.df_value(self.invalid), value, "3 labels were out of range")

* ``bad`` concrete (eager code): ``error(message)`` is raised when ``bad`` counts or flags
  anything (``message`` may be a callable of ``bad``'s host value, called only then);
  otherwise ``value`` comes back unchanged.
* ``bad`` traced (``jit``, ``vmap``, ``grad``, ...): ``value`` comes back with its floating
  leaves replaced by NaN where ``bad`` (a scalar poisons everything; an array broadcasts).
* inside a metric's eager-compiled ``get_state`` (see ``Metric.eager_compile``), where the
  inputs *were* concrete but are traced for one compiled program, the check is deferred:
  the count leaves the program and the refusal is raised right after it, so eager calls
  keep their eager errors. ``refuse(count, None, message)`` is the input check of a
  ``get_state`` (nothing to poison: the state counts invalid elements itself).

A message starts without a metric name when it comes from an input method (``get_state`` /
``get_values`` / construction: ``Metric`` adds the name once); a compute-time refusal starts
with :func:`metric_name` of its state.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*trees) -> bool:
    """True when no leaf of ``trees`` is a tracer (``None`` leaves are ignored)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def nan_where(bad, value):
    """``value`` with its floating leaves replaced by NaN where ``bad`` (jit-safe)."""
    bad = jnp.asarray(bad) > 0

    def poison(v):
        v = jnp.asarray(v)
        return jnp.where(bad, jnp.nan, v) if jnp.issubdtype(v.dtype, jnp.inexact) else v

    return jax.tree.map(poison, value)


def metric_name(state) -> str:
    """The name a compute-time refusal starts with: the class name of the state's metric
    (``state.parent``), or the state's own class name when it has none."""
    parent = getattr(state, "parent", None)
    return type(parent).__name__ if parent is not None else type(state).__qualname__


def _python(x):
    """A host number as an int when it is integral."""
    x = float(x)
    return int(x) if x.is_integer() else x


def _host(bad):
    """``bad`` on the host: a python number (scalar) or a numpy array, and how many it flags."""
    arr = np.asarray(bad)
    if arr.dtype == np.bool_:
        count = int(np.count_nonzero(arr))
    else:
        count = _python(np.sum(arr[arr > 0], dtype=np.float64))
    if arr.ndim == 0:
        return (bool(arr) if arr.dtype == np.bool_ else _python(arr)), count
    return arr, count


def refuse(bad, value: Any = None, message: Any = "invalid input", error: type = ValueError):
    """Raise ``error(message)`` eagerly when ``bad`` flags anything; NaN where bad when traced.

    ``bad``: a count or a flag (python or jax, scalar or array; positive counts / True are
    bad). ``message``: a string, or a callable of ``bad`` on the host (a python number for
    a scalar, an int when integral; a numpy array otherwise), built only when raising; it
    must not close over tracers. ``error``: the exception type (``ValueError``,
    ``CapacityOverflowError``, ...). Returns ``value`` (floating leaves NaN where bad under
    a trace). See the module docstring for the deferred case of eager-compiled programs.
    """
    if is_concrete(bad):
        host, count = _host(bad)
        if count:
            raise error(message(host) if callable(message) else message)
        return value
    pending = _DEFERRED.get()
    if pending is not None:
        pending.append((bad, message, error))
    return value if value is None else nan_where(bad, value)


def warn(bad, message: Any, category: type[Warning] = UserWarning, stacklevel: int = 3) -> None:
    """``warnings.warn(message, category)`` when ``bad`` flags anything, for values that are
    defined but deserve a warning (sklearn's ``UndefinedMetricWarning`` cases whose value is a
    number, e.g. average precision 0 with no positives).

    Eagerly it warns at once. Inside an eager-compiled program (a cached one-shot call, an
    eager ``compute()``) the flag leaves the program like a deferred refusal: the call then
    reruns eagerly and warns as it always does, so a program compiled on inputs that did not
    warn still warns on inputs that do. Under a ``jit`` of your own nothing can warn.
    """
    if is_concrete(bad):
        host, count = _host(bad)
        if count:
            warnings.warn(message(host) if callable(message) else message, category,
                          stacklevel=stacklevel)
        return
    pending = _DEFERRED.get()
    if pending is not None:
        pending.append((bad, message, category))


# -- deferred refusals of eager-compiled programs -------------------------------------------

_DEFERRED: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "metrix_deferred_refusals", default=None
)


class Refusals:
    """Refusals recorded while tracing one compiled program: a pytree whose leaves are the
    counts and whose static part holds the messages, so a cached program keeps them."""

    __slots__ = ("counts", "details")

    def __init__(self, counts=(), details=()):
        self.counts = tuple(counts)
        self.details = tuple(details)

    def raise_any(self) -> None:
        """Warn the deferred warnings and raise the first refusal whose (now concrete) count
        is positive."""
        for count, (message, error) in zip(self.counts, self.details):
            if issubclass(error, Warning):
                warn(count, message, error, stacklevel=4)
            else:
                refuse(count, None, message, error)


jax.tree_util.register_pytree_node(
    Refusals,
    lambda r: (r.counts, r.details),
    lambda details, counts: Refusals(counts, details),
)


@contextlib.contextmanager
def deferred_refusals():
    """Collect the traced refusals of the code inside (see ``Metric.run_compiled``).

    Yields the list of ``(count, message, error)`` it fills; :func:`collected` turns it into
    the :class:`Refusals` a compiled program returns.
    """
    pending: list = []
    token = _DEFERRED.set(pending)
    try:
        yield pending
    finally:
        _DEFERRED.reset(token)


def collected(pending: list) -> Refusals:
    """The :class:`Refusals` of a list filled by :func:`deferred_refusals`."""
    return Refusals(
        (jnp.asarray(count) for count, _, _ in pending),
        ((message, error) for _, message, error in pending),
    )


__all__ = [
    "Refusals",
    "collected",
    "deferred_refusals",
    "is_concrete",
    "metric_name",
    "nan_where",
    "refuse",
    "warn",
]
