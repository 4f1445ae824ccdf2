"""AutoState and truncate_field: Kauldron's automatic state, on metrix's algebra.

Expected values are slices of the input data (the first ``num`` rows in arrival order) and
numpy sums/minima: what merging batches one after another must give.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import metrix as mx

NUM_DEVICES = 8


class FirstRows(mx.Metric):
    """Keeps the first ``num_rows`` rows, their running total and minimum."""

    values: mx.Key = mx.REQUIRED
    num_rows: int = 3

    class State(mx.AutoState):
        label: str = "rows"  # an undeclared field: static, as in Kauldron
        rows: jax.Array = mx.truncate_field(num_field="parent.num_rows", item_shape=(2,))
        total: jax.Array = mx.sum_field()
        lowest: jax.Array = mx.min_field()

    def get_state(self, values):
        return self.State(rows=values, total=values.sum(), lowest=jnp.min(values, initial=jnp.inf))


def _batches(rng, sizes):
    data = rng.normal(size=(sum(sizes), 2)).astype(np.float32)
    bounds = np.cumsum([0, *sizes])
    return data, [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("sizes", [(1, 1, 1, 1), (2, 5), (7,), (1, 0, 4)])
def test_merged_batches_keep_the_first_rows(sizes):
    data, batches = _batches(np.random.default_rng(0), sizes)
    metric = FirstRows(values="x")
    merge = jax.jit(lambda a, b: a.merge(b))
    for merge_fn in (lambda a, b: a.merge(b), merge):
        state = metric.empty()
        for batch in batches:
            state = merge_fn(state, metric.get_state(batch))
        out = state.compute()
        np.testing.assert_array_equal(np.asarray(out.rows), data[:3])
        np.testing.assert_allclose(float(out.total), data.sum(), rtol=1e-6)
        assert float(out["lowest"]) == data.min()
        assert sorted(out) == ["lowest", "rows", "total"]


def test_merge_is_associative_and_empty_is_the_identity():
    _, (a, b, c) = _batches(np.random.default_rng(1), (2, 2, 2))
    metric = FirstRows(values="x")
    sa, sb, sc = (metric.get_state(x) for x in (a, b, c))
    left, right = sa.merge(sb).merge(sc), sa.merge(sb.merge(sc))
    np.testing.assert_array_equal(left.compute().rows, right.compute().rows)
    for state in (sa, sa.merge(sb)):
        for merged in (state.merge(metric.empty()), metric.empty().merge(state), state.merge(state.empty_like())):
            np.testing.assert_array_equal(merged.compute().rows, state.compute().rows)


def test_compute_under_jit_returns_the_output_pytree():
    data = np.arange(10, dtype=np.float32).reshape(5, 2)
    out = jax.jit(lambda x: FirstRows(values="x").get_state(x).compute())(data)
    assert isinstance(out, mx.AutoStateOutput)
    np.testing.assert_array_equal(out.rows, data[:3])
    with pytest.raises(AttributeError, match="no field 'image'"):
        out.image


def test_static_fields_are_checked_on_merge():
    metric = FirstRows(values="x")
    x = jnp.ones((2, 2))
    other = metric.get_state(x).replace(label="other")
    with pytest.raises(mx.MergeError, match="label"):
        metric.get_state(x).merge(other)


def test_flax_struct_dataclass_leaves_the_state_unchanged():
    class Counted(mx.AutoState):
        total: jax.Array = mx.sum_field()
        tag: str = flax.struct.field(pytree_node=False, default="t")

    decorated = flax.struct.dataclass(Counted)
    assert decorated is Counted
    assert flax.struct.dataclass(kw_only=True)(Counted) is Counted
    leaves, treedef = jax.tree.flatten(Counted(total=jnp.float32(2)))
    assert len(leaves) == 1 and treedef.unflatten(leaves).tag == "t"


def test_plain_state_still_refuses_undeclared_fields():
    with pytest.raises(TypeError, match="truncate_field"):

        class Bad(mx.State):
            rows: jax.Array = None


def test_num_field_errors_are_clear():
    class Orphan(mx.AutoState):
        rows: jax.Array = mx.truncate_field(num_field="parent.num_rows")

    state = Orphan(rows=jnp.ones((2, 1)))
    with pytest.raises(AttributeError, match="num_field='parent.num_rows'"):
        state.merge(state)
    with pytest.raises(TypeError, match="num_field"):
        mx.truncate_field(num_field="")


def test_identity_without_item_shape_takes_the_other_side():
    class Loose(mx.AutoState):
        keep: int = 2
        rows: jax.Array = mx.truncate_field(num_field="keep", axis=1)

    empty = Loose.empty(keep=2)
    real = Loose(rows=jnp.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(empty.merge(real).compute().rows, np.arange(12.0).reshape(3, 4)[:, :2])
    np.testing.assert_array_equal(
        real.merge(real).compute().rows, np.arange(12.0).reshape(3, 4)[:, :2]
    )


@pytest.mark.skipif(jax.device_count() < NUM_DEVICES, reason="needs 8 devices (tests/conftest.py)")
@pytest.mark.parametrize("num_rows", [3, 20])
def test_allreduce_and_merge_stacked_keep_device_order(num_rows):
    data = np.random.default_rng(2).normal(size=(NUM_DEVICES * 2, 2)).astype(np.float32)
    metric = FirstRows(values="x", num_rows=num_rows)
    mesh = Mesh(np.array(jax.devices()[:NUM_DEVICES]), ("d",))
    step = jax.jit(
        jax.shard_map(
            lambda x: mx.allreduce(metric.get_state(x), "d"), mesh=mesh, in_specs=(P("d"),), out_specs=P()
        )
    )
    shards = [metric.get_state(jnp.asarray(s)) for s in np.split(data, NUM_DEVICES)]
    sequential = functools.reduce(lambda a, b: a.merge(b), shards)
    stacked = mx.merge_stacked(jax.tree.map(lambda *xs: jnp.stack(xs), *shards))
    for state in (step(data), stacked):
        out = state.compute()
        np.testing.assert_array_equal(out.rows, data[:num_rows])
        np.testing.assert_array_equal(out.rows, sequential.compute().rows)
        assert float(out.lowest) == data.min()
