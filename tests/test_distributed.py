"""Distributed evaluation equals one device: shard_map + allreduce, pmap + merge_stacked, jit
over sharded global arrays, for every registry example (8 simulated CPU devices).

The reference is the contract of the algebra: merging the shards' states one after the other
in device order (and, for split-invariant metrics, one state over all the data, computed
without padding). Hand-built states check each collective path bit for bit, and the Chan and
covariance rules against numpy's closed forms.
"""

from __future__ import annotations

import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import metrix as mx
from metrix import numerics
from tests.registry import Example, all_examples

NUM_DEVICES = 8
AXIS = "data"
EXAMPLES = all_examples()

pytestmark = pytest.mark.skipif(
    jax.device_count() < NUM_DEVICES,
    reason=f"needs {NUM_DEVICES} devices (tests/conftest.py sets XLA_FLAGS before jax is imported)",
)


def _mesh() -> Mesh:
    return Mesh(np.array(jax.devices()[:NUM_DEVICES]), (AXIS,))


def _sharded_step(fn, specs):
    """jit(shard_map(fn)) with replicated outputs and JAX's default replication checks."""
    return jax.jit(jax.shard_map(fn, mesh=_mesh(), in_specs=(specs,), out_specs=P()))


# ---------------------------------------------------------------------------------------
# Registry examples: data, shards and references, built once per example
# ---------------------------------------------------------------------------------------


class Case:
    """Padded inputs for 8 devices, split into array inputs (batched or replicated) and others."""

    def __init__(self, example: Example):
        self.example = example
        self.per_device = max(4, example.min_batch)
        n = self.n = NUM_DEVICES * self.per_device
        rng = np.random.default_rng(zlib.crc32(example.name.encode()))
        raw = dict(example.make_inputs(rng, n))
        self.batched = set(example.batched)
        mask_name = example.mask_input
        # The last device gets a padded batch: its trailing rows are masked out.
        padding = min(3, self.per_device - example.min_batch) if mask_name else 0
        self.n_real = n - padding
        self.unpadded = {
            k: (np.asarray(v)[: self.n_real] if k in self.batched else v) for k, v in raw.items()
        }
        if mask_name:
            valid = np.arange(n) < self.n_real
            if mask_name in raw:
                given = np.asarray(raw[mask_name]).astype(bool)
                valid = given & valid.reshape((n,) + (1,) * (given.ndim - 1))
            raw[mask_name] = valid
            self.batched.add(mask_name)
        self.padded = raw
        self.arrays = {k: v for k, v in raw.items() if isinstance(v, (np.ndarray, jax.Array))}
        self.static = {k: v for k, v in raw.items() if k not in self.arrays}

    @property
    def metric(self):
        return self.example.metric

    def get_state(self, arrays):
        return self.metric.get_state(**arrays, **self.static)

    def specs(self):
        return {k: P(AXIS) if k in self.batched else P() for k in self.arrays}

    def shard(self, i):
        b = self.per_device
        return {k: (v[i * b : (i + 1) * b] if k in self.batched else v) for k, v in self.arrays.items()}

    def stacked(self):
        b = self.per_device
        return {
            k: (np.asarray(v).reshape((NUM_DEVICES, b) + np.shape(v)[1:]) if k in self.batched else v)
            for k, v in self.arrays.items()
        }

    @functools.cached_property
    def sequential(self):
        """The shards' states merged one after the other, in device order."""
        get = jax.jit(self.get_state)
        return functools.reduce(lambda a, b: a.merge(b), [get(self.shard(i)) for i in range(NUM_DEVICES)])

    @functools.cached_property
    def one_device(self):
        """One state over all the padded data (padding masked out), on one device."""
        return self.metric.get_state(**self.padded)

    @functools.cached_property
    def unpadded_state(self):
        """One state over the real data only."""
        return self.metric.get_state(**self.unpadded)


@functools.lru_cache(maxsize=None)
def _case(index: int) -> Case:
    return Case(EXAMPLES[index])


def _values(state):
    return jax.tree.map(np.asarray, state.compute())


def _assert_same_values(actual, expected, example: Example, what: str):
    a, e = _values(actual), _values(expected)
    assert jax.tree.structure(a) == jax.tree.structure(e), f"{example.name}: {what}"
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(e)):
        np.testing.assert_allclose(
            x, y, rtol=example.rtol, atol=example.atol, equal_nan=True, err_msg=f"{example.name}: {what}"
        )


def _check_against_references(state, case: Case, path: str):
    """Split-invariant metrics: one state over all the data; others: the same shards in order."""
    if case.example.split_invariant:
        _assert_same_values(state, case.one_device, case.example, f"{path} vs one device over all the data")
    else:
        _assert_same_values(state, case.sequential, case.example, f"{path} vs sequential merge of the shards")


_IDS = [e.name for e in EXAMPLES]
_INDICES = list(range(len(EXAMPLES)))


@pytest.mark.parametrize("index", _INDICES, ids=_IDS)
def test_shard_map_allreduce_equals_one_device(index):
    case = _case(index)
    step = _sharded_step(lambda arrays: mx.allreduce(case.get_state(arrays), AXIS), case.specs())
    state = step(case.arrays)
    _check_against_references(state, case, "shard_map + allreduce")


@pytest.mark.parametrize("index", _INDICES, ids=_IDS)
def test_pmap_merge_stacked_equals_one_device(index):
    case = _case(index)
    in_axes = ({k: 0 if k in case.batched else None for k in case.arrays},)
    stacked = jax.pmap(case.get_state, axis_name=AXIS, in_axes=in_axes)(case.stacked())
    _check_against_references(mx.merge_stacked(stacked), case, "pmap + merge_stacked")


@pytest.mark.parametrize("index", _INDICES, ids=_IDS)
def test_jit_over_sharded_arrays_equals_unsharded(index):
    case = _case(index)
    mesh = _mesh()
    placed = {
        k: jax.device_put(v, NamedSharding(mesh, P(AXIS) if k in case.batched else P()))
        for k, v in case.arrays.items()
    }
    state = jax.jit(case.get_state)(placed)
    _assert_same_values(state, case.one_device, case.example, "jit over sharded arrays vs unsharded")


_PADDED = [i for i, e in enumerate(EXAMPLES) if e.mask_input and e.split_invariant]


@pytest.mark.parametrize("index", _PADDED, ids=[EXAMPLES[i].name for i in _PADDED])
def test_masked_padding_equals_unpadded_data(index):
    """The padded last batch with its mask gives the unpadded result (so every path above does)."""
    case = _case(index)
    if getattr(case.metric, "normalize_by", None) == "values":
        pytest.skip("normalize_by='values' counts masked elements in the normaliser by design")
    if case.n_real == case.n:
        pytest.skip(f"min_batch={case.example.min_batch} leaves no room for padding")
    _assert_same_values(case.one_device, case.unpadded_state, case.example, "padded + mask vs unpadded")


# ---------------------------------------------------------------------------------------
# Every collective path on hand-built states
# ---------------------------------------------------------------------------------------


class Nested(mx.State):
    low: jax.Array = mx.min_field(dtype=jnp.int32)


class Kinds(mx.State):
    """One field of every independent kind."""

    total: jax.Array = mx.sum_field()
    hits: jax.Array = mx.sum_field(dtype=jnp.int32)
    count: jax.Array = mx.exact_sum_field()
    smallest: jax.Array = mx.min_field()
    largest: jax.Array = mx.max_field(dtype=jnp.int32)
    any_nan: jax.Array = mx.max_field(dtype=jnp.bool_)
    inner: Nested = mx.nested_field(Nested)


def _kinds_state(x):
    """x: (rows, 3) float32 for one device."""
    return Kinds(
        total=jnp.sum(x),
        hits=jnp.sum(x > 0, dtype=jnp.int32),
        count=jnp.array([2.0**24, 1.0], jnp.float32),  # 2^24 + 1: not a float32
        smallest=jnp.nanmin(x),
        largest=jnp.nanmax(x).astype(jnp.int32),
        any_nan=jnp.any(jnp.isnan(x)),
        inner=Nested(low=jnp.nanmin(jnp.floor(x)).astype(jnp.int32)),
    )


def _device_rows(rng, rows=4, cols=3):
    return rng.normal(size=(NUM_DEVICES * rows, cols)).astype(np.float32) * 5


def _run_both(build, data):
    """(shard_map + allreduce result, sequential merge of the per-device states)."""
    step = _sharded_step(lambda x: mx.allreduce(build(x), AXIS), P(AXIS))
    shards = np.split(data, NUM_DEVICES)
    expected = functools.reduce(lambda a, b: a.merge(b), [build(jnp.asarray(s)) for s in shards])
    return step(data), expected


def _assert_states_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def test_field_kinds_allreduce_exactly():
    data = _device_rows(np.random.default_rng(0))
    data[5, 1] = np.nan
    actual, expected = _run_both(_kinds_state, data)
    np.testing.assert_allclose(actual.total, expected.total, rtol=1e-6)  # float psum order
    _assert_states_equal(actual.replace(total=expected.total), expected)
    assert numerics.df_to_python(actual.count) == NUM_DEVICES * (2**24 + 1)
    assert bool(actual.any_nan)


def test_field_kinds_merge_stacked_exactly():
    data = _device_rows(np.random.default_rng(1))
    shards = [jnp.asarray(s) for s in np.split(data, NUM_DEVICES)][:7]  # odd length
    states = [_kinds_state(s) for s in shards]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    merged = jax.jit(mx.merge_stacked)(stacked)
    expected = functools.reduce(lambda a, b: a.merge(b), states)
    np.testing.assert_allclose(merged.total, expected.total, rtol=1e-6)
    _assert_states_equal(merged.replace(total=expected.total), expected)


def _collect(x, capacity):
    """Rows of x whose first column is positive (so devices fill their buffers unevenly)."""
    return mx.CollectState.from_rows(capacity=capacity, values=x, mask=x[:, 0] > 0)


@pytest.mark.parametrize("capacity", [40, 7], ids=["fits", "overflows"])
def test_buffer_allreduce_keeps_device_order_and_counts_drops(capacity):
    data = _device_rows(np.random.default_rng(2), rows=5)
    data[data[:, 0] > 0, 1] = -0.0  # signed zeros survive the bit-exact psum
    actual, expected = _run_both(functools.partial(_collect, capacity=capacity), data)
    _assert_states_equal(actual, expected)
    np.testing.assert_array_equal(np.signbit(actual.values), np.signbit(expected.values))
    kept = data[data[:, 0] > 0]
    np.testing.assert_array_equal(actual.rows()["values"], kept[:capacity])
    assert numerics.df_to_python(actual.dropped) == max(len(kept) - capacity, 0)


@pytest.mark.parametrize("length", [1, 2, 5, 8])
def test_buffer_merge_stacked_keeps_order(length):
    data = _device_rows(np.random.default_rng(3), rows=3)
    states = [_collect(jnp.asarray(s), 10) for s in np.split(data, NUM_DEVICES)[:length]]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    _assert_states_equal(mx.merge_stacked(stacked), functools.reduce(lambda a, b: a.merge(b), states))


def test_last_state_uses_gathered_merge_in_device_order():
    def build(x):
        seen = x[0, 0] > 0  # a device that saw nothing keeps the previous value
        return mx.LastState(value=x[0, 1], seen=seen)

    data = _device_rows(np.random.default_rng(4), rows=1)
    data[:, 0] = [1, -1, 1, 1, -1, 1, -1, -1]
    actual, expected = _run_both(build, data)
    _assert_states_equal(actual, expected)
    assert float(actual.value) == data[5, 1]


def test_welford_rule_matches_numpy_and_sequential():
    data = _device_rows(np.random.default_rng(5), rows=6) + 1e3
    mask = np.ones(len(data), bool)
    mask[8:14] = False  # device 1 empty, device 2 half empty
    build = lambda xm: mx.WelfordState.from_values(xm[:, :3], mask=xm[:, 3] > 0)  # noqa: E731
    packed = np.concatenate([data, mask[:, None].astype(np.float32)], axis=1)
    actual, expected = _run_both(build, packed)
    kept = data[mask]
    assert numerics.df_to_python(actual.count) == kept.size
    np.testing.assert_allclose(actual.mean, kept.mean(), rtol=1e-6)
    np.testing.assert_allclose(actual.variance(), kept.var(), rtol=1e-4)
    np.testing.assert_allclose(actual.m2, expected.m2, rtol=1e-4)


def test_mean_cov_rule_matches_numpy_covariance():
    data = _device_rows(np.random.default_rng(6), rows=5, cols=4) + 100
    mask = np.ones(len(data), bool)
    mask[:5] = False  # device 0 has no rows
    build = lambda xm: mx.MeanCovState.from_rows(xm[:, :4], mask=xm[:, 4] > 0)  # noqa: E731
    packed = np.concatenate([data, mask[:, None].astype(np.float32)], axis=1)
    actual, expected = _run_both(build, packed)
    kept = data[mask].astype(np.float64)
    np.testing.assert_allclose(actual.mean, kept.mean(0), rtol=1e-6)
    np.testing.assert_allclose(actual.covariance(), np.cov(kept, rowvar=False), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(actual.m2, expected.m2, rtol=1e-4, atol=1e-3)


def test_all_devices_empty_gives_empty_moments():
    build = lambda x: mx.WelfordState.from_values(x, mask=jnp.zeros(x.shape, bool))  # noqa: E731
    actual, _ = _run_both(build, _device_rows(np.random.default_rng(7)))
    assert numerics.df_to_python(actual.count) == 0
    assert float(actual.mean) == 0 and float(actual.m2) == 0


class Hooked(mx.State):
    """A state class with its own collective hook (here: the generic field path, counted)."""

    total: jax.Array = mx.sum_field()
    calls = []

    def _allreduce(self, axis_name):
        Hooked.calls.append(axis_name)
        return self.replace(total=jax.lax.psum(self.total, axis_name))


class CustomWelford(mx.WelfordState):
    """A subclass with its own merge must not get WelfordState's registered rule."""

    def merge(self, other):  # keeps the larger mean, to tell the paths apart
        self._check_mergeable(other)
        pick = other.mean > self.mean
        return self.replace(
            count=jnp.where(pick, other.count, self.count),
            mean=jnp.where(pick, other.mean, self.mean),
            m2=jnp.where(pick, other.m2, self.m2),
        )


def test_state_class_hook_is_used():
    Hooked.calls.clear()
    actual, expected = _run_both(lambda x: Hooked(total=jnp.sum(x)), _device_rows(np.random.default_rng(8)))
    assert Hooked.calls == [AXIS]
    np.testing.assert_allclose(actual.total, expected.total, rtol=1e-6)


def test_subclass_with_own_merge_falls_back_to_generic_path():
    actual, expected = _run_both(lambda x: CustomWelford.from_values(x), _device_rows(np.random.default_rng(9)))
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):  # jit vs eager rounding
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-6)


def test_out_specs_replicated_with_default_checks_for_a_tree_of_metrics():
    """A dict of metrics of every path, merged with one call, returned with out_specs=P()."""

    class Collect(mx.Metric):
        values: mx.Key = mx.REQUIRED
        capacity: int = 64
        item_shape: tuple = (3,)

        class State(mx.CollectState):
            pass

        def get_state(self, values):
            return self.State.from_rows(capacity=self.capacity, values=values, parent=self)

    metrics = {
        "acc": mx.Accuracy(logits="logits", labels="labels"),
        "stats": {"std": mx.Std(values="x"), "min": mx.Min(values="x"), "avg": mx.Average(values="x")},
        "rows": Collect(values="x"),
    }
    rng = np.random.default_rng(10)
    context = {
        "logits": rng.normal(size=(32, 4)).astype(np.float32),
        "labels": rng.integers(0, 4, size=32).astype(np.int32),
        "x": rng.normal(size=(32, 3)).astype(np.float32),
    }

    # out_specs=P() under the default check_vma=True: refused unless every leaf is typed replicated.
    step = _sharded_step(lambda ctx: mx.allreduce(mx.get_states(metrics, ctx), AXIS), P(AXIS))
    states = step(context)
    expected = mx.get_states(metrics, context)
    got, want = mx.compute(states), mx.compute(expected)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    np.testing.assert_array_equal(states["rows"].rows()["values"], context["x"])


def test_allreduce_over_two_mesh_axes_and_under_pmap():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    build = lambda v: {"std": mx.Std(values="v").get_state(v), "rows": _collect(v, 32)}  # noqa: E731
    expected = build(jnp.asarray(x))

    mesh = Mesh(np.array(jax.devices()[:NUM_DEVICES]).reshape(4, 2), ("a", "b"))
    two_axes = jax.jit(
        jax.shard_map(lambda v: mx.allreduce(build(v), ("a", "b")), mesh=mesh, in_specs=P(("a", "b")), out_specs=P())
    )(x)
    pmapped = jax.pmap(lambda v: mx.allreduce(build(v), "i"), axis_name="i")(x.reshape(8, 4, 3))
    first_device = jax.tree.map(lambda leaf: leaf[0], pmapped)
    for got in (two_axes, first_device):
        np.testing.assert_allclose(got["std"].compute(), expected["std"].compute(), rtol=1e-5)
        _assert_states_equal(got["rows"], expected["rows"])


def test_merge_stacked_of_vmapped_batches():
    metric = mx.Std(values="x")
    x = np.random.default_rng(12).normal(size=(6, 5)).astype(np.float32)
    stacked = jax.vmap(metric.get_state)(x)
    np.testing.assert_allclose(mx.merge_stacked(stacked).compute(), x.std(), rtol=1e-5)


def test_merge_stacked_rejects_unstacked_and_empty():
    with pytest.raises(ValueError, match="leading axis"):
        mx.merge_stacked(mx.Average(values="x").get_state(jnp.ones(3)).replace(total=jnp.zeros((3, 2))))
    empty = jax.tree.map(lambda x: x[:0], jax.vmap(mx.Std(values="x").get_state)(jnp.ones((2, 3))))
    with pytest.raises(ValueError, match="length 0"):
        mx.merge_stacked(empty)


def test_allreduce_rejects_non_states():
    with pytest.raises(TypeError, match="metrix States"):
        mx.allreduce({"x": jnp.ones(2)}, AXIS)


def test_process_allreduce_single_process_is_identity_and_checks_to():
    state = mx.Average(values="x").get_state(jnp.arange(4.0))
    assert mx.process_allreduce(state) is state
    with pytest.raises(ValueError, match="'all' or 'lead'"):
        mx.process_allreduce(state, to="everyone")
