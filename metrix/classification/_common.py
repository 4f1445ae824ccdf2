"""What the classification metrics share: task names, task checks, eager compilation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_TASKS = ("binary", "multiclass", "multilabel")
_AVERAGES = ("micro", "macro", "weighted", "none")


def _is_concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays if a is not None)


def _check_task(owner: str, task: str, num_classes: int | None) -> None:
    if task not in _TASKS:
        raise ValueError(f"{owner}: task must be one of {_TASKS}, got {task!r}")
    if task != "binary" and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(
            f"{owner}: task={task!r} needs num_classes= (a positive int, static), got {num_classes!r}"
        )
    if task == "multiclass" and num_classes < 2:
        raise ValueError(f"{owner}: multiclass needs num_classes >= 2, got {num_classes}")


def _jit_when_eager(fn, static):
    """Run ``fn`` as one compiled call on concrete inputs, inline when traced.

    Eager ``get_state`` calls then cost one dispatch instead of dozens of op-by-op ones.
    The compiled version is keyed by the configuration only (not by the calling metric), so
    every metric of one configuration shares it; ``owner`` (for error messages) is checked
    by an abstract trace first, which raises the same shape errors naming the metric.
    """
    compiled = jax.jit(fn, static_argnames=static)

    @functools.wraps(fn)
    def call(*args, owner, **kwargs):
        arrays = [a for a in args if a is not None] + [
            v for k, v in kwargs.items() if k not in static and v is not None
        ]
        if not _is_concrete(*arrays):
            return fn(*args, owner=owner, **kwargs)
        jax.eval_shape(functools.partial(fn, owner=owner, **kwargs), *args)
        return compiled(*args, owner="", **kwargs)

    return call


def _nan_where(flag, value):
    """``value`` with its floating leaves replaced by NaN where ``flag`` (jit-safe)."""
    return jax.tree.map(
        lambda v: (
            jnp.where(flag, jnp.nan, v) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating) else v
        ),
        value,
    )
