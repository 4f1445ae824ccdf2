"""Compute an expensive shared input once while one context's states are built.

FID, KID, Inception Score, precision/recall and density/coverage of the same images all
need one InceptionV3 pass. :func:`get_states` and :class:`~metrix.Collection` open a
:func:`sharing_scope` while they build the states of one context; inside it,
:func:`compute_once` returns the first result for the same inputs and the same static key.

Inputs are the same when they are the same object (a tracer under ``jit``: every metric
reading one key path gets the same tracer) or, for concrete arrays, equal in shape, dtype
and bytes (each metric converts numpy inputs to a fresh jax array, so identity would never
match eagerly; a SHA-1 of the bytes costs far less than the pass it saves). Outside a scope
it simply calls ``fn``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

_MEMO: contextvars.ContextVar[dict | None] = contextvars.ContextVar("metrix_sharing", default=None)

__all__ = ["compute_once", "sharing_scope"]


@contextlib.contextmanager
def sharing_scope() -> Iterator[None]:
    """A scope in which :func:`compute_once` shares results (nested scopes join the outer)."""
    if _MEMO.get() is not None:
        yield
        return
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def _identity(value: Any) -> Any:
    """How an input is recognised: concrete arrays by content, anything else by identity."""
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        data = np.asarray(value)
        return ("array", data.shape, str(data.dtype), hashlib.sha1(data.tobytes()).hexdigest())
    return ("object", id(value))


def compute_once(inputs: tuple, static_key: Any, fn: Callable[[], Any]) -> Any:
    """``fn()``, or the result of the first call with the same ``inputs`` and ``static_key``
    in the current :func:`sharing_scope`."""
    memo = _MEMO.get()
    if memo is None:
        return fn()
    key = (tuple(_identity(v) for v in inputs), static_key)
    if key not in memo:
        # The inputs are kept with the result so that their ids cannot be reused meanwhile.
        memo[key] = (inputs, fn())
    return memo[key][1]
