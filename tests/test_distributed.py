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
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import metrix as mx
from metrix.core import numerics
from tests.registry import Example, all_examples

NUM_DEVICES = 8
AXIS = "data"
EXAMPLES = all_examples()
# One compile per registry example dominates this file: skip LLVM optimisations (values are
# what is checked, not speed).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

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
# Registry examples: every path and its references in one compiled program per example
# ---------------------------------------------------------------------------------------


class Case:
    """Inputs for 8 devices: the last device's batch ends with padding rows, masked out."""

    def __init__(self, example: Example):
        self.example = example
        self.per_device = max(4, example.min_batch)
        n = self.n = NUM_DEVICES * self.per_device
        rng = np.random.default_rng(zlib.crc32(example.name.encode()))
        raw = dict(example.make_inputs(rng, n))
        self.batched = set(example.batched)
        mask_name = example.mask_input
        padding = min(3, self.per_device - example.min_batch) if mask_name else 0
        self.n_real = n - padding
        unpadded = {k: (np.asarray(v)[: self.n_real] if k in self.batched else v) for k, v in raw.items()}
        if mask_name:
            valid = np.arange(n) < self.n_real
            if mask_name in raw:
                given = np.asarray(raw[mask_name]).astype(bool)
                valid = given & valid.reshape((n,) + (1,) * (given.ndim - 1))
            raw[mask_name] = valid
            self.batched.add(mask_name)
        # Array inputs travel through jit; anything else (a Python step, a config) is closed over.
        self.arrays = {k: v for k, v in raw.items() if isinstance(v, (np.ndarray, jax.Array))}
        self.unpadded = {k: v for k, v in unpadded.items() if k in self.arrays}
        self.static = {k: v for k, v in raw.items() if k not in self.arrays}

    @property
    def metric(self):
        return self.example.metric

    def get_state(self, arrays):
        return self.metric.get_state(**arrays, **self.static)

    def specs(self):
        return {k: P(AXIS) if k in self.batched else P() for k in self.arrays}

    def stacked(self):
        """Batched inputs reshaped to (devices, per_device, ...)."""
        b = self.per_device
        return {
            k: (np.asarray(v).reshape((NUM_DEVICES, b) + np.shape(v)[1:]) if k in self.batched else v)
            for k, v in self.arrays.items()
        }

    def run(self) -> dict:
        """All paths and references, computed by one jitted program (one compile per example).

        In JAX 0.10 ``pmap`` is itself a jitted shard_map, so calling it inside this jit is
        the program a standalone ``pmap`` call compiles. Its per-device states feed both
        ``merge_stacked`` and a ``shard_map`` that ``allreduce``-s them (the same per-device
        states that ``get_state`` inside that shard_map would give), so the metric is traced
        per device once. The references take replicated inputs: every device computes them
        whole, as one device would.
        """
        mesh = _mesh()
        batched_sharding, replicated = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
        place = lambda tree, sharded: {
            k: jax.device_put(v, sharded if k in self.batched else replicated) for k, v in tree.items()
        }
        pmapped = jax.pmap(
            self.get_state, axis_name=AXIS, in_axes=({k: 0 if k in self.batched else None for k in self.arrays},)
        )
        allreduced = jax.shard_map(
            lambda stacked: mx.allreduce(jax.tree.map(lambda x: x[0], stacked), AXIS),
            mesh=mesh, in_specs=P(AXIS), out_specs=P(),
        )

        def sequential(stacked):
            shard = lambda i: {k: (v[i] if k in self.batched else v) for k, v in stacked.items()}
            first = self.get_state(shard(0))
            rest = {k: v[1:] for k, v in stacked.items() if k in self.batched}
            fixed = {k: v for k, v in stacked.items() if k not in self.batched}
            step = lambda state, xs: (state.merge(self.get_state({**xs, **fixed})), None)
            return jax.lax.scan(step, first, rest)[0]

        def program(sharded, padded, unpadded, stacked):
            per_device = pmapped(stacked)
            out = {
                "shard_map": allreduced(per_device),
                "pmap": mx.merge_stacked(per_device),
                "jit_sharded": self.get_state(sharded),
            }
            if self.example.split_invariant:
                out["reference"] = self.get_state(padded if _padding_changes_the_value(self) else unpadded)
            else:
                out["reference"] = sequential(stacked)
                out["one_device"] = self.get_state(padded)
            return out

        return jax.jit(program, compiler_options=COMPILER_OPTIONS)(
            place(self.arrays, batched_sharding),
            place(self.arrays, replicated),
            place(self.unpadded, replicated),
            place(self.stacked(), replicated),
        )


@functools.cache
def _results(index: int) -> tuple[Case, dict]:
    case = Case(EXAMPLES[index])
    return case, case.run()


@functools.cache
def _values(index: int, path: str):
    return jax.tree.map(np.asarray, _results(index)[1][path].compute())


def _padding_changes_the_value(case: Case) -> bool:
    """Losses normalised by the number of values count masked elements, by design."""
    return getattr(case.metric, "normalize_by", None) == "values"


def _check(index: int, path: str, reference: str = "reference"):
    """Split-invariant metrics: one device over the unpadded data; others: the shards in order."""
    example = EXAMPLES[index]
    actual, expected = _values(index, path), _values(index, reference)
    what = f"{example.name}: {path} vs {reference}"
    assert jax.tree.structure(actual) == jax.tree.structure(expected), what
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, e, rtol=example.rtol, atol=example.atol, equal_nan=True, err_msg=what)


def _layout_signature(state) -> tuple:
    """What ``allreduce`` / ``merge_stacked`` of ``state`` depend on: the kinds of its fields
    (nested states recursively), or the class itself when it writes its own ``merge``."""
    if not state._merges_by_fields():
        return (type(state).__qualname__,)
    parts = []
    for name in state._data_fields:
        value = getattr(state, name)
        inner = [x for x in jax.tree.leaves(value, is_leaf=lambda x: isinstance(x, mx.State))
                 if isinstance(x, mx.State)]
        kind = type(state.field_kind(name)).__name__
        parts.append(repr((kind, tuple(_layout_signature(x) for x in inner))))
    return tuple(sorted(parts))


def _params():
    """One example per (state layout, split invariance) runs by default; the others are slow.

    The collectives are derived from the field declarations (principle 2), so examples whose
    states have the same layout take the same paths; a new metric with a new layout is
    picked up by default. ``bash scripts/test.sh --all`` runs every example.
    """
    seen, params = set(), []
    for index, example in enumerate(EXAMPLES):
        key = (_layout_signature(jax.eval_shape(example.metric.empty)), example.split_invariant)
        marks = () if key not in seen else (pytest.mark.slow,)
        seen.add(key)
        params.append(pytest.param(index, id=example.name, marks=marks))
    return params


def _kind_covering_params():
    """For the sharded-jit path: by default only examples that bring a field kind (or a
    class-written merge) no earlier default example had, per split invariance. That path is
    one ``jit`` over sharded inputs (XLA partitions it; metrix adds no collective of its own),
    so what varies is how each kind of state is built, not the layout as a whole."""
    covered, params = set(), []
    for index, example in enumerate(EXAMPLES):
        layout = _layout_signature(jax.eval_shape(example.metric.empty))
        new = {(part, example.split_invariant) for part in layout} - covered
        covered |= new
        marks = () if new else (pytest.mark.slow,)
        params.append(pytest.param(index, id=example.name, marks=marks))
    return params


_PARAMS = _params()
_SHARDED_PARAMS = _kind_covering_params()


@pytest.mark.parametrize("index", _PARAMS)
def test_shard_map_allreduce_equals_one_device(index):
    _check(index, "shard_map")


@pytest.mark.parametrize("index", _PARAMS)
def test_pmap_merge_stacked_equals_one_device(index):
    _check(index, "pmap")


@pytest.mark.parametrize("index", _SHARDED_PARAMS)
def test_jit_over_sharded_arrays_equals_unsharded(index):
    """One step over globally sharded inputs is one batch: compare with one device."""
    _check(index, "jit_sharded", "reference" if EXAMPLES[index].split_invariant else "one_device")


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


@pytest.mark.parametrize("length", [1, 5])
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
    build = lambda xm: mx.WelfordState.from_values(xm[:, :3], mask=xm[:, 3] > 0)
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
    build = lambda xm: mx.MeanCovState.from_rows(xm[:, :4], mask=xm[:, 4] > 0)
    packed = np.concatenate([data, mask[:, None].astype(np.float32)], axis=1)
    actual, expected = _run_both(build, packed)
    kept = data[mask].astype(np.float64)
    np.testing.assert_allclose(actual.mean, kept.mean(0), rtol=1e-6)
    np.testing.assert_allclose(actual.covariance(), np.cov(kept, rowvar=False), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(actual.m2, expected.m2, rtol=1e-4, atol=1e-3)


def test_all_devices_empty_gives_empty_moments():
    build = lambda x: mx.WelfordState.from_values(x, mask=jnp.zeros(x.shape, bool))
    actual, _ = _run_both(build, _device_rows(np.random.default_rng(7)))
    assert numerics.df_to_python(actual.count) == 0
    assert float(actual.mean) == 0 and float(actual.m2) == 0


class Hooked(mx.State):
    """A state class with its own collective hook (here: the generic field path, counted)."""

    total: jax.Array = mx.sum_field()
    calls: ClassVar[list] = []

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
    build = lambda v: {"std": mx.Std(values="v").get_state(v), "rows": _collect(v, 32)}
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


def test_docs_examples_run():
    """Every ```python block of docs/distributed.md, in order, in one namespace."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "distributed.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/distributed.md", "exec"), namespace)  # noqa: S102
