"""Exact accumulation in float32: double-float ("hi + lo") sums.

JAX runs without 64-bit types by default, so a float32 running sum stops counting at 2^24
and an int32 count wraps at 2^31. metrix keeps totals and counts as *double-floats*: a pair
``(hi, lo)`` of float32 whose exact sum is the value, stored in a trailing axis of size 2.
Adding two such pairs with Knuth's error-free TwoSum keeps about 48 bits of mantissa, so
counts are exact up to 2^48 and totals carry ~1e-14 relative error instead of ~1e-7.

    two_sum(a, b) = (s, e)  with  s = fl(a + b),  s + e = a + b  exactly.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax


def two_sum(a, b):
    """Error-free sum: ``s = fl(a + b)`` and ``e`` the rounding error, ``s + e == a + b``."""
    # The barrier keeps XLA from simplifying (a + b) - a to b when a is a compile-time
    # constant (a running state closed over by a jitted function), which loses the error.
    s = lax.optimization_barrier(a + b)
    b_virtual = s - a
    a_virtual = s - b_virtual
    return s, (a - a_virtual) + (b - b_virtual)


def df_from(x, dtype=jnp.float32):
    """A plain array as a double-float (lo = 0), trailing axis of size 2."""
    x = jnp.asarray(x, dtype)
    return jnp.stack([x, jnp.zeros_like(x)], axis=-1)


def df_from_int(x):
    """An int32 array as an exact double-float (``hi`` its float32 rounding, ``lo`` the rest)."""
    x = jnp.asarray(x, jnp.int32)
    hi = x.astype(jnp.float32)
    lo = (x - hi.astype(jnp.int32)).astype(jnp.float32)
    return jnp.stack([hi, lo], axis=-1)


def df_add(a, b):
    """Sum of two double-floats, renormalised so ``|lo| <= ulp(hi) / 2``."""
    s, e = two_sum(a[..., 0], b[..., 0])
    lo = a[..., 1] + b[..., 1] + e
    hi, lo = two_sum(s, lo)
    return jnp.stack([hi, lo], axis=-1)


def df_value(a):
    """The double-float rounded to its working precision (e.g. float32)."""
    return a[..., 0] + a[..., 1]


def df_divide(num, den):
    """``num / den`` for double-floats, correct to ~1 ulp of float32 even when both are huge.

    Uses one Newton correction: q0 = hi_n / hi_d, q = q0 + (n - q0 d) / hi_d with the
    residual evaluated from the hi/lo parts.
    """
    n_hi, n_lo = num[..., 0], num[..., 1]
    d_hi, d_lo = den[..., 0], den[..., 1]
    q0 = n_hi / d_hi
    # residual r = n - q0 * d; q0 * d_hi is formed exactly with a split-free FMA-less trick:
    # its rounding error is second order for our use (we only need float32 accuracy).
    r = (n_hi - q0 * d_hi) + n_lo - q0 * d_lo
    # An infinite or NaN quotient (x/0, inf/x, 0/0) needs no correction: inf - inf would
    # turn it into NaN.
    return jnp.where(jnp.isfinite(q0), q0 + r / d_hi, q0)


def df_to_python(a) -> float | int:
    """Exact host value of a (concrete) scalar double-float; an int when it is integral."""
    arr = np.asarray(a, dtype=np.float64)
    value = float(arr[..., 0]) + float(arr[..., 1])
    return int(value) if value.is_integer() else value


# -- the accumulation dtype -----------------------------------------------------------------


def accumulation_dtype(dtype):
    """The dtype sums of ``dtype`` values are taken in: float32, or float64 for float64.

    Half-precision inputs (bfloat16, float16) are summed, squared and differenced in float32:
    a bfloat16 sum stops counting at 256 and a float16 one overflows at 65504. Integers and
    booleans become float32 too (their exact counts go through :func:`df_from_int`).
    """
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize >= 4:
        return dtype
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.promote_types(dtype, jnp.complex64)
    return jnp.dtype(jnp.float32)


def widen(x):
    """``x`` in its :func:`accumulation_dtype` (float32 or wider; exact for half floats)."""
    x = jnp.asarray(x)
    dtype = accumulation_dtype(x.dtype)
    return x if x.dtype == dtype else x.astype(dtype)


def count_true(flags, axis=None):
    """Exact number of true ``flags`` (over ``axis``) as a double-float: an int32 reduction,
    exact up to 2^31 elements in one call (a float32 one stops at 2^24)."""
    return df_from_int(jnp.sum(jnp.asarray(flags, bool), axis=axis, dtype=jnp.int32))


def bincount(index, length: int, where=None):
    """Exact counts of ``index`` values in ``[0, length)`` (``where`` false or out of range:
    not counted), as an int32 ``(length,)`` array; split it with :func:`df_from_int`."""
    index = jnp.asarray(index, jnp.int32).reshape(-1)
    keep = (index >= 0) & (index < length)  # negative indices would wrap, not drop
    if where is not None:
        keep = keep & jnp.asarray(where, bool).reshape(-1)
    index = jnp.where(keep, index, length)
    return jnp.zeros((length,), jnp.int32).at[index].add(1, mode="drop")


# Elements summed in float32 per chunk before the chunks' sums are added as double-floats:
# small integers (|x| <= 4096) sum exactly within a chunk, and the rounding of a float32 sum
# grows with the chunk, not with the whole array.
_CHUNK = 4096


def df_sum(x):
    """Sum of every element of ``x`` (float32 or wider) as a double-float ``(2,)``.

    Chunks of :data:`_CHUNK` elements are summed in float32, then the chunk sums are added
    by a TwoSum tree, so a sum of 2^24 + 8 ones is exact (a plain float32 sum stops at 2^24)
    and the error of large float sums stays that of one chunk. One chunk or less: one sum.
    """
    x = widen(x).reshape(-1)
    if x.size <= _CHUNK:
        return df_from(jnp.sum(x))
    chunks = -(-x.size // _CHUNK)
    x = jnp.pad(x, (0, chunks * _CHUNK - x.size)).reshape(chunks, _CHUNK)
    parts = df_from(jnp.sum(x, axis=1))
    while parts.shape[0] > 1:
        if parts.shape[0] % 2:
            parts = jnp.concatenate([parts, jnp.zeros((1, 2), parts.dtype)])
        parts = df_add(parts[0::2], parts[1::2])
    return parts[0]
