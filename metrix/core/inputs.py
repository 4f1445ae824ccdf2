"""Host inputs JAX would change silently: refused before they become jax arrays.

JAX runs without 64-bit types by default (x64 disabled), so ``jnp.asarray`` turns an int64
numpy array into int32 and a float64 one into float32. Values that fit are converted exactly
(or rounded, for floats); values that do not fit are *wrapped* (``2**31`` becomes
``-2**31``) or become ``inf``. A metric would then return a plausible wrong number, so
:func:`check_representable` refuses them eagerly, naming the argument and what to do (the
metric's name is added by the ``Metric`` error boundary). Under x64 nothing is refused.

The check is meant for the one place host inputs become jax arrays (``_as_jax`` in
:mod:`metrix.core.metric`): ``_as_jax(check_representable(value, name))``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

# What each 64-bit numpy dtype becomes with x64 disabled.
_NARROWED = {np.dtype(np.int64): np.dtype(np.int32), np.dtype(np.uint64): np.dtype(np.uint32)}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Every host dtype check_representable looks at (the others pass through unchecked): callers
# that cache per dtype (the one-shot path) skip the call for the rest.
CHECKED_DTYPES = frozenset({*_NARROWED, np.dtype(np.float64)})

_HOW = (
    "cast the input yourself first (e.g. values.astype(np.float32) or np.float64 -> a scaled "
    "float32), or enable 64-bit types with jax.config.update('jax_enable_x64', True)"
)


def x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)


def check_representable(value: Any, argument: str = "input") -> Any:
    """``value`` unchanged, or a ``ValueError`` when JAX would wrap or overflow it.

    Refused (x64 disabled, numpy arrays and scalars only; jax arrays are already converted):
    int64 / uint64 values outside the int32 / uint32 range, and finite float64 values beyond
    float32's range (they would become ``inf``). In range, nothing is copied or changed.
    """
    if not isinstance(value, (np.ndarray, np.generic)) or x64_enabled():
        return value
    array = np.asarray(value)
    if array.size == 0:
        return value
    narrowed = _NARROWED.get(array.dtype)
    if narrowed is not None:
        info = np.iinfo(narrowed)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            worst = low if low < info.min else high
            raise ValueError(
                f"argument {argument!r} holds {array.dtype} values outside the {narrowed} range "
                f"[{info.min}, {info.max}] (e.g. {int(worst)}); JAX without x64 would wrap "
                f"them to other numbers: {_HOW}."
            )
    elif array.dtype == np.float64:
        finite = np.abs(array[np.isfinite(array)])
        if finite.size and finite.max() > _FLOAT32_MAX:
            raise ValueError(
                f"argument {argument!r} holds float64 values beyond float32's range "
                f"(|x| up to {finite.max():.3g} > {_FLOAT32_MAX:.3g}); JAX without x64 would "
                f"turn them into inf: {_HOW}."
            )
    return value


__all__ = ["CHECKED_DTYPES", "check_representable", "x64_enabled"]
