"""Fixed-capacity buffers: order, masks, overflow (reported, never silent), truncation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx


class Collect(mx.Metric):
    values: mx.Key = mx.REQUIRED
    mask: mx.Key | None = None
    capacity: int = 8
    overflow: str = "error"
    item_shape: tuple = ()

    class State(mx.CollectState):
        pass

    def get_state(self, values, mask=None):
        return self.State.from_rows(capacity=self.capacity, mask=mask, overflow=self.overflow, values=values)


def test_rows_keep_order_and_masked_rows_are_removed():
    m = Collect(values="v")
    s1 = m.get_state(jnp.array([1.0, 2.0, 3.0]), mask=jnp.array([True, False, True]))
    s2 = m.get_state(jnp.array([4.0, 5.0]))
    merged = s1.merge(s2)
    np.testing.assert_array_equal(merged.rows()["values"], [1.0, 3.0, 4.0, 5.0])
    assert int(merged.count) == 4
    np.testing.assert_array_equal(merged.compute()[:4], [1.0, 3.0, 4.0, 5.0])
    assert merged.values.shape == (8,)


def test_merge_inside_jit_and_scan():
    m = Collect(values="v", capacity=16)
    batches = jnp.arange(12.0).reshape(4, 3)

    def body(carry, x):
        return carry.merge(m.get_state(x)), None

    final, _ = jax.jit(lambda xs: jax.lax.scan(body, m.empty(), xs))(batches)
    np.testing.assert_array_equal(final.rows()["values"], np.arange(12.0))


def test_overflow_raises_eagerly_and_is_nan_under_jit():
    m = Collect(values="v", capacity=4)
    s = m.get_state(jnp.arange(3.0)).merge(m.get_state(jnp.arange(3.0)))
    assert bool(s.overflowed)
    np.testing.assert_array_equal(s.rows()["values"], [0.0, 1.0, 2.0, 0.0])
    with pytest.raises(mx.CapacityOverflowError, match=r"holds 4 rows but 6 arrived \(2 dropped\)"):
        s.compute()
    out = jax.jit(lambda s: s.compute())(s)
    assert np.isnan(np.asarray(out)).all()


def test_batch_larger_than_capacity_is_counted():
    m = Collect(values="v", capacity=4)
    s = m.get_state(jnp.arange(10.0))
    assert int(s.count) == 4
    with pytest.raises(mx.CapacityOverflowError):
        s.compute()


def test_truncate_keeps_first_rows_silently():
    m = Collect(values="v", capacity=4, overflow="truncate")
    s = m.get_state(jnp.arange(3.0)).merge(m.get_state(jnp.arange(10.0, 13.0)))
    np.testing.assert_array_equal(s.compute(), [0.0, 1.0, 2.0, 10.0])


def test_states_of_different_capacity_refuse_to_merge():
    a = Collect(values="v", capacity=4).get_state(jnp.arange(2.0))
    b = Collect(values="v", capacity=5).get_state(jnp.arange(2.0))
    with pytest.raises(mx.MergeError):
        a.merge(b)
