"""Double-float arithmetic against exact (Python integer / float64) values."""

import jax.numpy as jnp
import numpy as np

from metrix.core import numerics


def test_two_sum_is_error_free():
    a, b = np.float32(1e8), np.float32(3.0)
    s, e = numerics.two_sum(jnp.float32(a), jnp.float32(b))
    assert float(s) + float(e) == float(a) + float(b)
    assert float(e) != 0.0  # float32(1e8 + 3) alone rounds


def test_counts_exact_past_float32():
    total = numerics.df_from(0.0)
    for _ in range(5):  # 2^24 + 1 is not a float32: add it as 2^24 and 1
        total = numerics.df_add(total, numerics.df_from(2.0**24))
        total = numerics.df_add(total, numerics.df_from(1.0))
    assert numerics.df_to_python(total) == 5 * (2**24 + 1)


def test_divide_passes_infinities_and_nan_through():
    one, zero, inf = (numerics.df_from(v) for v in (1.0, 0.0, jnp.inf))
    assert float(numerics.df_divide(inf, numerics.df_from(2.0))) == np.inf
    assert float(numerics.df_divide(one, zero)) == np.inf
    assert np.isnan(float(numerics.df_divide(zero, zero)))
    np.testing.assert_allclose(numerics.df_divide(numerics.df_from(3.0), numerics.df_from(2.0)), 1.5)


def test_divide_of_huge_counts_is_correct_to_float32():
    n = 3 * 2**30 + 7
    den = numerics.df_add(numerics.df_from(3.0 * 2**30), numerics.df_from(7.0))
    num = numerics.df_add(numerics.df_from(1.5 * 3 * 2**30), numerics.df_from(1.5 * 7))
    np.testing.assert_allclose(numerics.df_divide(num, den), 1.5 * n / n, rtol=1e-7)
