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
