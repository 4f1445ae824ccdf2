"""Every field kind's contract, on hand-built states.

For each kind: ``merge_stacked`` of 1, 2, 5 and 8 stacked states equals a left-to-right
``functools.reduce`` of ``merge`` (exactly for counts, buffers, min/max, last, truncate; to
1e-6 relative for float sums and Chan's moments); ``allreduce`` over 8 simulated CPU devices
(``shard_map`` with ``out_specs=P()`` under the default replication checks) equals the same
sequential merge in device order; ``empty()``/``empty_like()`` is the identity of merge on both
sides and has the shapes, dtypes and weak types of real states (a jitted merge never
retraces). Expected values are the sequential merge of the per-part states or numpy on the
concatenated data, never ``merge_stacked`` itself. tests/conftest.py sets XLA_FLAGS (8 CPU
devices) before JAX is imported.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import metrix as mx
from metrix.core import numerics

NUM_DEVICES = 8
AXIS = "d"
ROWS = 6  # rows per part (per device)
LENGTHS = (1, 2, 5, 8)

needs_devices = pytest.mark.skipif(
    jax.device_count() < NUM_DEVICES,
    reason=f"needs {NUM_DEVICES} devices (tests/conftest.py sets XLA_FLAGS before jax is imported)",
)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


# Values are what is checked, not speed: skip LLVM optimisations (compiles dominate this file).
_FAST = {"xla_backend_optimization_level": 0}


def _stack(states):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


TRACES: collections.Counter = collections.Counter()  # traces of _merge, per state class


def _traced_merge(a, b):
    TRACES[type(a).__qualname__] += 1
    return a.merge(b)


_merge = jax.jit(_traced_merge, compiler_options=_FAST)


def _sequential(states):
    """The reference: states merged one after the other, left to right (a jitted merge)."""
    return functools.reduce(_merge, states)


# Every length of one case folded by one compiled program (merge_stacked is inlined).
_fold_all = jax.jit(lambda stacks: [mx.merge_stacked(s) for s in stacks], compiler_options=_FAST)


def _allreduced(build: Callable, data: np.ndarray):
    """allreduce(build(shard)) over 8 devices, jit(shard_map) with out_specs=P() (default checks)."""
    mesh = Mesh(np.array(jax.devices()[:NUM_DEVICES]), (AXIS,))
    step = jax.jit(
        jax.shard_map(
            lambda x: mx.allreduce(build(x), AXIS), mesh=mesh, in_specs=(P(AXIS),), out_specs=P()
        ),
        compiler_options=_FAST,
    )
    return step(data.reshape((-1, *data.shape[2:])))


def _path(key_path) -> str:
    return jax.tree_util.keystr(key_path)


def _avals(tree):
    return [
        (_path(k), jax.typeof(x).shape, jax.typeof(x).dtype, jax.typeof(x).weak_type)
        for k, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _assert_states(actual, expected, rtol: dict[str, float] | None = None, what: str = ""):
    """Same class, static fields and leaf avals; leaves equal (bit for bit unless named in rtol)."""
    rtol = rtol or {}
    assert type(actual) is type(expected), what
    assert jax.tree.structure(actual) == jax.tree.structure(expected), what
    leaves_a = jax.tree_util.tree_flatten_with_path(actual)[0]
    leaves_e = jax.tree_util.tree_flatten_with_path(expected)[0]
    for (path, a), (_, e) in zip(leaves_a, leaves_e):
        name = _path(path)
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, (
            f"{what} {name}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        )
        if name in rtol:
            np.testing.assert_allclose(
                a, e, rtol=rtol[name], atol=rtol[name], err_msg=f"{what} {name}"
            )
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"{what} {name}")
            if np.issubdtype(a.dtype, np.floating):  # signed zeros too
                np.testing.assert_array_equal(
                    np.signbit(a), np.signbit(e), err_msg=f"{what} {name} sign"
                )


# ---------------------------------------------------------------------------------------
# States: one per kind (field values built from a (ROWS, 4) chunk: [flag, a, b, c];
# a row is valid where flag > 0, so a part whose flags are all negative is empty)
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config:
    """A hashable parent for states whose shapes come from their metric."""

    num_features: int = 3
    capacity: int = 64
    item_shape: tuple = (2,)


class SumS(mx.State):
    total: jax.Array = mx.sum_field(shape=(2,))
    hits: jax.Array = mx.sum_field(dtype=jnp.int32)


def _sum(x):
    valid = x[:, 0] > 0
    return SumS(
        total=jnp.sum(jnp.where(valid[:, None], x[:, 1:3], 0), axis=0),
        hits=jnp.sum(valid, dtype=jnp.int32),
    )


class ExactS(mx.State):
    count: jax.Array = mx.exact_sum_field()
    bins: jax.Array = mx.exact_sum_field(shape=(3,))


def _exact(x):
    valid = x[:, 0] > 0
    n = jnp.sum(valid, dtype=jnp.float32)
    bin_of = jnp.clip(jnp.floor(x[:, 1] + 1.5).astype(jnp.int32), 0, 2)
    bins = jnp.zeros(3, jnp.float32).at[jnp.where(valid, bin_of, 3)].add(1.0, mode="drop")
    # 2^24 + n is not a float32: only the (hi, lo) pair holds it (normalised by df_add; the
    # traced operand first: see test_exact_sum_merge_under_jit_with_a_constant_state).
    count = numerics.df_add(numerics.df_from(n), numerics.df_from(jnp.float32(2**24)))
    return ExactS(count=count, bins=numerics.df_from(bins))


class MinMaxS(mx.State):
    low: jax.Array = mx.min_field(shape=(2,))
    high: jax.Array = mx.max_field(dtype=jnp.int32)
    flag: jax.Array = mx.max_field(dtype=jnp.bool_)


def _minmax(x):
    valid = x[:, 0] > 0
    low = jnp.min(jnp.where(valid[:, None], x[:, 1:3], jnp.inf), axis=0, initial=jnp.inf)
    scaled = jnp.floor(x[:, 1] * 100).astype(jnp.int32)
    high = jnp.max(
        jnp.where(valid, scaled, jnp.iinfo(jnp.int32).min), initial=jnp.iinfo(jnp.int32).min
    )
    return MinMaxS(low=low, high=high, flag=jnp.any(valid & (x[:, 2] > 1.0)))


class FirstSeen(mx.State):
    """A user state with its own merge: the first value seen (associative, not commutative)."""

    value: jax.Array = mx.sum_field(shape=(2,))
    seen: jax.Array = mx.max_field(dtype=jnp.bool_)

    def merge(self, other):
        self._check_mergeable(other)
        value = jnp.where(self.seen, self.value, other.value)
        return self._with_parent(other).replace(value=value, seen=self.seen | other.seen)


def _first_seen(x):
    return FirstSeen(value=x[0, 1:3], seen=x[0, 0] > 0)


class Outer(mx.State):
    """Nested states: one, and a tuple of a field-wise state, a buffer and a user merge."""

    total: jax.Array = mx.sum_field()
    inner: ExactS = mx.nested_field(ExactS)
    pair: tuple = mx.nested_field()


def _outer(x):
    valid = x[:, 0] > 0
    return Outer(
        total=jnp.sum(jnp.where(valid, x[:, 1], 0)),
        inner=_exact(x),
        pair=(
            _minmax(x),
            mx.CollectState.from_rows(capacity=16, values=x[:, 1:3], mask=valid),
            _first_seen(x),
        ),
    )


class NestedS(mx.State):
    inner: SumS = mx.nested_field(SumS)
    moments: mx.WelfordState = mx.nested_field(mx.WelfordState)


def _nested(x):
    return NestedS(inner=_sum(x), moments=_welford(x))


def _collect(capacity):
    def build(x):
        return mx.CollectState.from_rows(
            capacity=capacity, values=x[:, 1:3], mask=x[:, 0] > 0, parent=Config(capacity=capacity)
        )

    return build


class FirstRows(mx.AutoState):
    keep: int = 5  # undeclared: static
    rows: jax.Array = mx.truncate_field(num_field="keep", item_shape=(2,))
    cols: jax.Array = mx.truncate_field(num_field="keep", axis=-1, item_shape=(3,))
    lowest: jax.Array = mx.min_field()


def _first_rows(x):
    return FirstRows(rows=x[:3, 1:3], cols=x[:3, 1:4].T, lowest=jnp.min(x[:, 1]))


def _last(x):
    return mx.LastState(value=x[0, 1:3], seen=x[0, 0] > 0)


class VecLast(mx.State):
    """A last value per element: element i is taken from the last part that saw element i."""

    value: jax.Array = mx.last_field(shape=(3,))
    seen: jax.Array = mx.max_field(shape=(3,), dtype=jnp.bool_)


def _vec_last(x):
    return VecLast(value=x[0, 1:4], seen=x[1, 1:4] > 0)


def _valid(x):
    return x[:, 0] > 0


def _welford(x):
    return mx.WelfordState.from_values(x[:, 1:3], mask=_valid(x))


def _mean_cov(x):
    return mx.MeanCovState.from_rows(x[:, 1:4], mask=_valid(x), parent=CONFIG)


class ElementwiseMoments(mx.State):
    """Chan's moments per element, each with its own count (elementwise variant)."""

    count: jax.Array = mx.exact_sum_field(shape=(3,))
    mean: jax.Array = mx.chan_mean_field(shape=(3,))
    m2: jax.Array = mx.chan_m2_field(shape=(3,))


def _element_mask(x):
    return _valid(x)[:, None] & (x[:, 1:4] > -1.0)


def _elementwise(x):
    keep = _element_mask(x)
    n = jnp.sum(keep, axis=0, dtype=jnp.float32)
    mean = jnp.sum(jnp.where(keep, x[:, 1:4], 0), axis=0) / jnp.maximum(n, 1)
    m2 = jnp.sum(jnp.where(keep, jnp.square(x[:, 1:4] - mean), 0), axis=0)
    return ElementwiseMoments(count=numerics.df_from(n), mean=mean, m2=m2)


class BatchedCov(mx.State):
    """Covariance per output (as regression's co-moments): count (2,), mean (2, 3), m2 (2, 3, 3)."""

    count: jax.Array = mx.exact_sum_field(shape=(2,))
    mean: jax.Array = mx.chan_mean_field(shape=(2, 3), covariance=True)
    m2: jax.Array = mx.chan_m2_field(shape=(2, 3, 3), covariance=True)


def _output_masks(x):
    valid = _valid(x)
    return jnp.stack([valid, valid & (x[:, 3] > 0)], axis=0)  # (2, rows)


def _batched_cov(x):
    keep = _output_masks(x)[..., None]  # (2, rows, 1)
    z = jnp.broadcast_to(x[:, 1:4], (2, *x[:, 1:4].shape))
    n = jnp.sum(keep[..., 0], axis=1, dtype=jnp.float32)
    mean = jnp.sum(jnp.where(keep, z, 0), axis=1) / jnp.maximum(n, 1)[:, None]
    centred = jnp.where(keep, z - mean[:, None], 0)
    m2 = jnp.einsum("oni,onj->oij", centred, centred, precision=jax.lax.Precision.HIGHEST)
    return BatchedCov(count=numerics.df_from(n), mean=mean, m2=m2)


CONFIG = Config()
CHAN = 1e-6  # relative tolerance of float sums and Chan's moments (float32 association order)


@dataclasses.dataclass(frozen=True)
class Case:
    build: Callable
    rtol: dict[str, float] = dataclasses.field(default_factory=dict)
    empty: Callable | None = None  # State.empty(...) for the identity law (None: empty_like only)
    # flags per part: +1 valid rows, -1 an empty part (all rows invalid), 0 random
    flags: tuple = (0,) * NUM_DEVICES
    retraces: bool = False  # shapes grow with merges (truncate): a jitted merge may retrace


_MOMENTS = {".mean": CHAN, ".m2": CHAN}
CASES = {
    "sum": Case(_sum, {".total": CHAN}, SumS.empty, flags=(0, -1, 0, 0, -1, 0, 0, 0)),
    "exact_sum": Case(_exact, {}, ExactS.empty, flags=(0, -1, 0, 0, 0, 0, -1, 0)),
    "min_max": Case(_minmax, {}, MinMaxS.empty, flags=(-1, 0, 0, 0, 0, 0, 0, -1)),
    "nested": Case(
        _nested, {".inner.total": CHAN, ".moments.mean": CHAN, ".moments.m2": CHAN}, NestedS.empty
    ),
    "nested_tuple": Case(_outer, {".total": CHAN}, flags=(0, -1, 0, 0, 0, -1, 0, 0)),
    "user_merge": Case(_first_seen, {}, FirstSeen.empty, flags=(-1, -1, 1, -1, 1, 0, 0, 0)),
    "buffer_fits": Case(
        _collect(64),
        {},
        lambda: mx.CollectState.empty(Config(capacity=64)),
        flags=(0, -1, 0, 0, 0, -1, -1, 0),
    ),
    "buffer_overflows": Case(
        _collect(5),
        {},
        lambda: mx.CollectState.empty(Config(capacity=5)),
        flags=(1, 0, -1, 1, 0, 1, -1, 1),
    ),
    "buffer_all_empty": Case(
        _collect(5), {}, lambda: mx.CollectState.empty(Config(capacity=5)), flags=(-1,) * 8
    ),
    "truncate": Case(_first_rows, {}, FirstRows.empty, retraces=True),
    "last": Case(_last, {}, flags=(1, -1, 1, 1, -1, 1, -1, -1)),
    "last_none_seen": Case(_last, {}, flags=(-1,) * 8),
    "last_per_element": Case(_vec_last, {}, VecLast.empty),
    "welford": Case(_welford, _MOMENTS, mx.WelfordState.empty, flags=(0, -1, 0, -1, -1, 0, 0, 1)),
    "welford_all_empty": Case(_welford, _MOMENTS, mx.WelfordState.empty, flags=(-1,) * 8),
    "mean_cov": Case(
        _mean_cov,
        _MOMENTS,
        lambda: mx.MeanCovState.empty(CONFIG),
        flags=(-1, 0, 0, -1, 0, 1, 0, -1),
    ),
    "mean_cov_all_empty": Case(
        _mean_cov, _MOMENTS, lambda: mx.MeanCovState.empty(CONFIG), flags=(-1,) * 8
    ),
    "chan_elementwise": Case(
        _elementwise, _MOMENTS, ElementwiseMoments.empty, flags=(0, -1, 0, 0, -1, 0, 0, 0)
    ),
    "chan_batched_cov": Case(
        _batched_cov, _MOMENTS, BatchedCov.empty, flags=(0, 0, -1, 0, 0, 0, -1, 0)
    ),
}


@functools.cache
def _data(name: str) -> np.ndarray:
    """(parts, ROWS, 4) float32: column 0 is the validity flag, set by the case's flags."""
    case = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    data = rng.normal(size=(NUM_DEVICES, ROWS, 4)).astype(np.float32)
    for part, flag in enumerate(case.flags):
        if flag:
            data[part, :, 0] = flag * np.abs(data[part, :, 0]) + flag * 0.1
    return data


@functools.cache
def _parts(name: str):
    build = jax.jit(CASES[name].build, compiler_options=_FAST)
    return tuple(build(chunk) for chunk in _data(name))


@functools.cache
def _folded(name: str) -> dict:
    """{length: merge_stacked of the first `length` parts} for every length in LENGTHS."""
    parts = _parts(name)
    return dict(zip(LENGTHS, _fold_all([_stack(parts[:length]) for length in LENGTHS])))


# ---------------------------------------------------------------------------------------
# merge_stacked == left-to-right merge; allreduce == merge in device order
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_merge_stacked_equals_sequential_merge(name):
    case, parts = CASES[name], _parts(name)
    for length, actual in _folded(name).items():
        _assert_states(
            actual, _sequential(parts[:length]), case.rtol, what=f"{name}, {length} stacked"
        )


@needs_devices
@pytest.mark.parametrize("name", sorted(CASES))
def test_allreduce_equals_sequential_merge_in_device_order(name):
    case = CASES[name]
    actual = _allreduced(case.build, _data(name))
    _assert_states(actual, _sequential(_parts(name)), case.rtol, what=f"{name} allreduce")


# ---------------------------------------------------------------------------------------
# Identity, shapes and dtypes of empty states, no retrace
# ---------------------------------------------------------------------------------------


_SEEN_STATES = (mx.LastState, VecLast, FirstSeen)


def _unseen_values_zeroed(state):
    """A value that no part saw means nothing (merge may keep either side's): zero it,
    in nested states too."""

    def zero(s):
        return s.replace(value=jnp.where(s.seen, s.value, 0)) if isinstance(s, _SEEN_STATES) else s

    return (
        zero(state)
        if isinstance(state, _SEEN_STATES)
        else jax.tree.map(zero, state, is_leaf=lambda x: isinstance(x, _SEEN_STATES))
    )


def _empties(name, state):
    case = CASES[name]
    return [state.empty_like()] + ([case.empty()] if case.empty is not None else [])


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty_is_the_identity_on_both_sides(name):
    parts = _parts(name)
    for state in (parts[0], _sequential(parts[:3])):
        for empty in _empties(name, state):
            for merged, what in (
                (_merge(state, empty), "s.merge(empty)"),
                (_merge(empty, state), "empty.merge(s)"),
            ):
                _assert_states(
                    _unseen_values_zeroed(merged),
                    _unseen_values_zeroed(state),
                    what=f"{name}: {what}",
                )


@pytest.mark.parametrize("name", sorted(n for n in CASES if not CASES[n].retraces))
def test_empty_states_have_real_avals_and_never_retrace(name):
    real = _parts(name)[0]
    empties = _empties(name, real)
    for empty in empties:
        assert jax.tree.structure(empty) == jax.tree.structure(real), name
        assert _avals(empty) == _avals(real), name
    out = _merge(real, real)
    before = TRACES[type(real).__qualname__]
    for empty in empties:
        _merge(empty, real)
        _merge(real, empty)
        _merge(empty, empty)
    retraced = TRACES[type(real).__qualname__] - before
    assert not retraced, f"{name}: the jitted merge retraced {retraced} times for empty states"
    assert _avals(out) == _avals(real), f"{name}: merge changed shapes, dtypes or weak types"
    assert _avals(jax.eval_shape(mx.merge_stacked, _stack([real, real]))) == _avals(real), name


# ---------------------------------------------------------------------------------------
# Against numpy on the concatenated data
# ---------------------------------------------------------------------------------------


def _all_rows(name):
    data = _data(name).reshape(-1, 4).astype(np.float64)
    return data, data[:, 0] > 0


@pytest.mark.parametrize("name", ["buffer_fits", "buffer_overflows", "buffer_all_empty"])
def test_buffer_fold_keeps_order_and_counts_drops_exactly(name):
    capacity = {"buffer_fits": 64}.get(name, 5)
    data, valid = _all_rows(name)
    kept = data[valid][:, 1:3].astype(np.float32)
    parts = _parts(name)
    if name == "buffer_overflows":
        assert any(numerics.df_to_python(p.dropped) for p in parts)  # parts that drop on their own
        assert sum(int(p.count) for p in parts) > capacity  # and the fold overflows
    for state in (_folded(name)[NUM_DEVICES], _sequential(parts)):
        assert int(state.count) == min(len(kept), capacity)
        np.testing.assert_array_equal(state.rows()["values"], kept[:capacity])
        assert numerics.df_to_python(state.dropped) == max(len(kept) - capacity, 0)
        np.testing.assert_array_equal(np.asarray(state.values)[len(kept) :], 0)


@pytest.mark.parametrize("name", ["welford", "welford_all_empty", "mean_cov", "mean_cov_all_empty"])
def test_chan_moments_with_empty_parts_match_numpy(name):
    data, valid = _all_rows(name)
    columns = slice(1, 3) if name.startswith("welford") else slice(1, 4)
    kept = data[valid][:, columns]
    state = _folded(name)[NUM_DEVICES]
    assert numerics.df_to_python(state.count) == (
        kept.size if name.startswith("welford") else len(kept)
    )
    if not len(kept):
        assert not np.asarray(state.mean).any() and not np.asarray(state.m2).any()
        return
    if name.startswith("welford"):
        np.testing.assert_allclose(state.mean, kept.mean(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(state.m2, np.sum((kept - kept.mean()) ** 2), rtol=1e-5)
    else:
        np.testing.assert_allclose(state.mean, kept.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            state.covariance(), np.cov(kept, rowvar=False), rtol=1e-5, atol=1e-6
        )


def test_elementwise_and_batched_covariance_moments_match_numpy():
    data, _ = _all_rows("chan_elementwise")
    keep = np.asarray(_element_mask(jnp.asarray(data)))
    state = _folded("chan_elementwise")[NUM_DEVICES]
    for i in range(3):
        column = data[keep[:, i], 1 + i]
        assert numerics.df_to_python(state.count[i]) == len(column)
        np.testing.assert_allclose(state.mean[i], column.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.m2[i], np.sum((column - column.mean()) ** 2), rtol=1e-5)

    data, _ = _all_rows("chan_batched_cov")
    masks = np.asarray(_output_masks(jnp.asarray(data)))
    state = _folded("chan_batched_cov")[NUM_DEVICES]
    for out in range(2):
        rows = data[masks[out], 1:4]
        np.testing.assert_allclose(state.mean[out], rows.mean(0), rtol=1e-5, atol=1e-6)
        scatter = (rows - rows.mean(0)).T @ (rows - rows.mean(0))
        np.testing.assert_allclose(state.m2[out], scatter, rtol=1e-5, atol=1e-5)


def test_last_state_seen_patterns():
    """The last part seen wins; with the last parts unseen it is an earlier one; with none seen
    the first part's value (what a left fold keeps)."""
    data = _data("last")
    seen = data[:, 0, 0] > 0
    assert not seen[-1]
    for length in LENGTHS:
        state = _folded("last")[length]
        last = max(np.flatnonzero(seen[:length]), default=0)
        np.testing.assert_array_equal(state.value, data[last, 0, 1:3])
        assert bool(state.seen) == bool(seen[:length].any())
    none = _folded("last_none_seen")[NUM_DEVICES]
    np.testing.assert_array_equal(none.value, _data("last_none_seen")[0, 0, 1:3])
    assert not bool(none.seen)


def test_truncate_fold_keeps_the_first_rows_along_each_axis():
    data = _data("truncate")
    for length in LENGTHS:
        state = _folded("truncate")[length]
        rows = np.concatenate(data[:length, :3, 1:3])
        np.testing.assert_array_equal(state.compute().rows, rows[:5])
        cols = np.concatenate([chunk[:3, 1:4].T for chunk in data[:length]], axis=1)
        np.testing.assert_array_equal(state.compute().cols, cols[:, :5])


class Counter(mx.BufferState):
    """A buffer's accounting alone (no rows): fill count and dropped rows, any capacity."""


@needs_devices
def test_dropped_stays_exact_when_one_fold_loses_more_than_2_pow_24_rows():
    """8 full buffers of capacity 2^22 + 1 folded: 7 (2^22 + 1) rows are lost, an odd number
    above 2^24 (not a float32); merged one by one each merge loses 2^22 + 1 (exact)."""
    capacity = 2**22 + 1
    part = Counter(
        capacity=capacity, count=jnp.int32(capacity), dropped=numerics.df_from(jnp.float32(0))
    )
    expected = 7 * capacity
    sequential = _sequential([part] * NUM_DEVICES)
    assert (
        numerics.df_to_python(sequential.dropped) == expected and int(sequential.count) == capacity
    )
    folded = mx.merge_stacked(_stack([part] * NUM_DEVICES))
    from_data = lambda x: part.replace(
        count=x[0, 0] + capacity, dropped=numerics.df_from(x[0, 0].astype(jnp.float32))
    )
    allreduced = _allreduced(from_data, np.zeros((NUM_DEVICES, 1, 1), np.int32))
    for state, what in ((folded, "merge_stacked"), (allreduced, "allreduce")):
        assert int(state.count) == capacity, what
        assert numerics.df_to_python(state.dropped) == expected, what


def test_exact_sum_merge_under_jit_with_a_constant_state():
    """A running state closed over by a jitted step is a compile-time constant there; its
    exact sum must stay exact (2^24 + 3 is not a float32)."""
    running = mx.SumState(total=numerics.df_from(jnp.float32(2**24)))
    step = jax.jit(lambda x: running.merge(mx.SumState.from_values(x)))
    batch = jnp.array([3.0], jnp.float32)
    assert (
        numerics.df_to_python(running.merge(mx.SumState.from_values(batch)).total) == 2**24 + 3
    )  # eager
    assert numerics.df_to_python(step(batch).total) == 2**24 + 3


# ---------------------------------------------------------------------------------------
# register_allreduce
# ---------------------------------------------------------------------------------------


class Registered(mx.State):
    total: jax.Array = mx.sum_field()


class KeepsMerge(Registered):
    pass


class OwnMerge(Registered):
    def merge(self, other):  # max instead of sum: tells the paths apart
        self._check_mergeable(other)
        return self._with_parent(other).replace(total=jnp.maximum(self.total, other.total))


RULE_CALLS: list = []


@mx.register_allreduce(Registered)
def _registered_rule(state, axis_name):
    RULE_CALLS.append(type(state).__name__)
    return state.replace(total=jax.lax.psum(state.total, axis_name) + 1000.0)  # marked


@needs_devices
def test_register_allreduce_applies_to_subclasses_that_keep_the_merge():
    data = _data("sum")
    RULE_CALLS.clear()
    for cls in (Registered, KeepsMerge, OwnMerge):
        build = lambda x, cls=cls: cls(total=jnp.sum(x[:, 1]))
        actual = _allreduced(build, data)
        expected = _sequential([build(jnp.asarray(chunk)) for chunk in data])
        marked = 1000.0 if cls is not OwnMerge else 0.0
        assert type(actual) is cls
        np.testing.assert_allclose(actual.total, expected.total + marked, rtol=1e-6)
    assert RULE_CALLS == ["Registered", "KeepsMerge"]
