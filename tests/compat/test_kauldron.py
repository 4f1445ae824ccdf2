"""Kauldron's ``kd.metrics`` behaviours on metrix's core (issue 22), as users rely on them.

Expected values are written out by hand (small integer data: sums, means, the first rows in
arrival order), not computed by metrix.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import metrix as mx

# ---------------------------------------------------------------------------------------
# Keys: optional keys get_state does not read; glob paths
# ---------------------------------------------------------------------------------------


class IntMean(mx.Metric):
    """Mean of ``x``; declares a ``mask`` key its get_state never reads (Kauldron style)."""

    x: mx.Key = "batch.x"
    mask: mx.Key = None

    State = mx.AverageState

    def get_state(self, x=None):
        return self.State.from_values(x)


class IntMeanChecked(IntMean):
    def __post_init__(self):  # an own __post_init__: the key is checked on reading
        pass


def test_an_unset_optional_key_that_get_state_does_not_read_is_accepted():
    metric = IntMean()
    value = metric.get_state_from_context({"batch": {"x": np.arange(12.0)}}).compute()
    assert float(value) == 5.5  # (0 + ... + 11) / 12


def test_a_set_key_that_get_state_does_not_read_is_refused_naming_it():
    with pytest.raises(TypeError, match=r"IntMean\.mask is set to 'batch.m'.*does not read"):
        IntMean(mask="batch.m")
    metric = IntMeanChecked(mask="batch.m")  # built: its own __post_init__ runs instead
    with pytest.raises(TypeError, match=r"IntMeanChecked\.mask is set"):
        metric.get_state_from_context({"batch": {"x": np.ones(2), "m": np.ones(2)}})


def test_a_key_set_by_default_that_get_state_does_not_read_fails_at_class_creation():
    with pytest.raises(TypeError, match=r"\['weights'\] are not inputs of get_state"):

        class Bad(mx.Metric):
            x: mx.Key = "batch.x"
            weights: mx.Key = "batch.w"

            def get_state(self, x):
                return mx.AverageState.from_values(x)


CONTEXT = {
    "batch": {"d": np.array([1.0, 3.0]), "b": {"c": np.array([100.0]), "d": np.array([5.0, 7.0, 9.0])}},
    "other": {"d": np.array([-1.0])},
}


def test_glob_paths_select_the_matching_subtree():
    from metrix.core.keys import resolve

    got = resolve(CONTEXT, "batch.**.d")
    assert sorted(got) == ["b", "d"] and sorted(got["b"]) == ["d"]
    np.testing.assert_array_equal(got["b"]["d"], [5.0, 7.0, 9.0])
    one_level = resolve(CONTEXT, "*.d")
    assert sorted(one_level) == ["batch", "other"]
    np.testing.assert_array_equal(one_level["other"]["d"], [-1.0])
    assert resolve(CONTEXT, "*") == CONTEXT
    with pytest.raises(mx.MissingPathError, match=r"M\.x: no entry of the context matches"):
        resolve(CONTEXT, "batch.**.zz", owner="M", key_name="x")


# ---------------------------------------------------------------------------------------
# AutoState fields: optional (None) values, pytrees, growing concatenation
# ---------------------------------------------------------------------------------------


class Optional(mx.AutoState):
    total: jax.Array = mx.sum_field()
    extra: jax.Array = mx.sum_field(default=None)
    rows: jax.Array = mx.truncate_field(num_field="keep", default=None)
    keep: int = 2


def test_optional_fields_merge_none_with_none_and_refuse_none_with_an_array():
    plain = Optional(total=jnp.float32(1))
    both = plain.merge(plain)
    assert both.extra is None and both.rows is None and float(both.total) == 2.0
    filled = Optional(total=jnp.float32(1), extra=jnp.float32(4), rows=jnp.arange(3.0))
    with pytest.raises(mx.MergeError, match="Cannot sum None and non-None"):
        plain.merge(filled)
    with pytest.raises(mx.MergeError, match=r"Cannot concatenate \(& truncate\) None"):
        plain.merge(plain.replace(rows=jnp.ones(1)))
    # empty() is the identity of both (its optional fields are EMPTY).
    empty = Optional.empty()
    assert empty.extra is mx.EMPTY
    assert empty.merge(plain).extra is None
    np.testing.assert_array_equal(filled.merge(empty).compute().rows, [0.0, 1.0])


class TreeSums(mx.AutoState):
    sums: dict = mx.sum_field()
    low: dict = mx.min_field()


def test_pytree_fields_merge_leaf_by_leaf_and_empty_broadcasts():
    a = TreeSums(sums={"a": jnp.array([1.0, 2.0]), "b": jnp.float32(5)}, low={"a": jnp.float32(3)})
    b = TreeSums(sums={"a": jnp.array([10.0, 20.0]), "b": jnp.float32(1)}, low={"a": jnp.float32(-2)})
    for merge in (lambda x, y: x.merge(y), jax.jit(lambda x, y: x.merge(y))):
        out = merge(merge(TreeSums.empty(), a), b).compute()
        np.testing.assert_array_equal(out.sums["a"], [11.0, 22.0])
        assert float(out.sums["b"]) == 6.0 and float(out.low["a"]) == -2.0
    with pytest.raises(mx.MergeError, match="TreeSums.sums.*tree structures"):
        a.merge(a.replace(sums={"z": jnp.float32(1)}))


class Rows(mx.AutoState):
    tag: str = "rows"
    by_row: jax.Array = mx.concat_field()
    by_col: jax.Array = mx.concat_field(axis=1)
    tree: dict = mx.concat_field()


def _rows(start, n):
    block = np.arange(start, start + 2 * n, dtype=np.float32).reshape(n, 2)
    return Rows(by_row=jnp.asarray(block), by_col=jnp.asarray(block.T), tree={"k": jnp.asarray(block[:, 0])})


def test_concat_fields_grow_along_their_axis_eagerly_and_under_jit():
    a, b, c = _rows(0, 1), _rows(2, 2), _rows(6, 1)  # rows [0 1], [2 3] [4 5], [6 7]
    expected = np.arange(8, dtype=np.float32).reshape(4, 2)
    for merge in (lambda x, y: x.merge(y), jax.jit(lambda x, y: x.merge(y))):
        left, right = merge(merge(a, b), c), merge(a, merge(b, c))
        for state in (left, right, merge(Rows.empty(), left), merge(left, Rows.empty())):
            out = state.compute()
            np.testing.assert_array_equal(out.by_row, expected)
            np.testing.assert_array_equal(out.by_col, expected.T)
            np.testing.assert_array_equal(out.tree["k"], [0.0, 2.0, 4.0, 6.0])
    assert Rows.empty().by_row is mx.EMPTY and Rows.empty().compute().by_row is None


def test_concat_fields_fold_and_allreduce_in_order():
    parts = [_rows(2 * i, 1) for i in range(8)]
    expected = np.arange(16, dtype=np.float32).reshape(8, 2)
    stacked = mx.merge_stacked(jax.tree.map(lambda *xs: jnp.stack(xs), *parts))
    np.testing.assert_array_equal(stacked.compute().by_row, expected)
    np.testing.assert_array_equal(stacked.compute().by_col, expected.T)
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices (tests/conftest.py)")
    mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
    step = jax.jit(
        jax.shard_map(
            lambda x: mx.allreduce(Rows(by_row=x, by_col=x.T, tree={"k": x[:, 0]}), "d"),
            mesh=mesh,
            in_specs=(P("d"),),
            out_specs=P(),
        )
    )
    out = step(jnp.asarray(expected)).compute()
    np.testing.assert_array_equal(out.by_row, expected)
    np.testing.assert_array_equal(out.tree["k"], expected[:, 0])


def test_concat_in_a_plain_state_or_along_axis_1_of_a_buffer_is_refused():
    with pytest.raises(TypeError, match="concat_field needs a fixed capacity.*BufferState.*AutoState"):

        class Plain(mx.State):
            rows: jax.Array = mx.concat_field()

    with pytest.raises(TypeError, match=r"axis 0; concat_field\(axis=1\) is for an mx.AutoState"):

        class Buffer(mx.BufferState):
            rows: jax.Array = mx.concat_field(axis=1)


class Mixed(mx.AutoState):
    keep: int = 3
    rows: jax.Array = mx.concat_field()
    first: jax.Array = mx.truncate_field(num_field="keep")


def test_finalize_cuts_truncate_fields_and_gives_numpy():
    state = Mixed(rows=jnp.ones((2, 3)), first=jnp.arange(5.0))
    final = state.finalize()
    assert isinstance(final.rows, np.ndarray) and isinstance(final.first, np.ndarray)
    np.testing.assert_array_equal(final.first, [0.0, 1.0, 2.0])
    assert final.keep == 3 and final.rows.shape == (2, 3)
    # Under jit the arrays stay traced (no host transfer) but are still cut.
    cut = jax.jit(lambda s: s.finalize())(state)
    np.testing.assert_array_equal(cut.first, [0.0, 1.0, 2.0])
    assert final.merge(final).finalize().rows.shape == (4, 3)
    # Every state has finalize (Kauldron's `state.finalize().compute()`).
    average = mx.AverageState.from_values(jnp.array([1.0, 3.0]))
    assert float(average.finalize().compute()) == 2.0


# ---------------------------------------------------------------------------------------
# EmptyState, CollectFirstState, NoopMetric
# ---------------------------------------------------------------------------------------


def test_empty_state_and_noop_metric_compute_an_empty_dict():
    state = mx.EmptyState.empty()
    assert state.merge(mx.EmptyState.empty()).compute() == {}
    noop = mx.NoopMetric()
    assert noop.get_state(anything=np.ones(3)).compute() == {}
    assert noop.get_state_from_context({"batch": {}}).merge(noop.empty()).compute() == {}


class FirstImages(mx.CollectFirstState):
    images: jax.Array
    ids: jax.Array


def _images(start, n, keep=3):
    ids = np.arange(start, start + n, dtype=np.int32)
    return FirstImages(images=jnp.asarray(ids[:, None, None] * np.ones((n, 2, 2), np.float32)), ids=jnp.asarray(ids), keep_first=keep)


def test_collect_first_state_keeps_the_first_rows_of_every_field():
    merged = FirstImages.empty().merge(_images(0, 2)).merge(_images(2, 2)).merge(_images(4, 1))
    out = merged.compute()
    np.testing.assert_array_equal(out.ids, [0, 1, 2])
    np.testing.assert_array_equal(out.images[:, 0, 0], [0.0, 1.0, 2.0])
    assert isinstance(out.images, np.ndarray)
    np.testing.assert_array_equal(_images(0, 7).compute().ids, [0, 1, 2])  # one state is cut too
    with pytest.raises(mx.MergeError, match="keep_first"):
        _images(0, 2).merge(_images(2, 2, keep=4))


# ---------------------------------------------------------------------------------------
# TreeMap, TreeReduce, SkipIfMissing
# ---------------------------------------------------------------------------------------

TREE = {"a": np.array([1.0, 2.0, 3.0]), "b": {"c": np.array([10.0]), "d": np.array([4.0, 8.0])}}


def test_tree_map_gives_the_tree_of_values():
    metric = mx.TreeMap(metric=IntMean())
    out = metric(x=TREE)
    assert float(out["a"]) == 2.0 and float(out["b"]["c"]) == 10.0 and float(out["b"]["d"]) == 6.0
    # merged across batches leaf by leaf: a = (1 + 2 + 3 + 5) / 4
    more = {"a": np.array([5.0]), "b": {"c": np.array([20.0]), "d": np.array([0.0])}}
    state = metric.empty().merge(metric.get_state(x=TREE)).merge(metric.get_state(x=more))
    out = state.compute()
    assert float(out["a"]) == 2.75 and float(out["b"]["c"]) == 15.0 and float(out["b"]["d"]) == 4.0
    assert metric.empty().compute() == {}


def test_tree_reduce_is_the_metric_over_every_leaf_together():
    metric = mx.TreeReduce(metric=IntMean())
    state = metric.get_state(x=TREE)
    assert float(state.compute()) == pytest.approx(28.0 / 6)  # (1 + 2 + 3 + 10 + 4 + 8) / 6 elements
    assert state.parent is metric.metric and metric.empty().parent is metric.metric


def test_tree_metrics_read_glob_keys():
    context = {"batch": TREE | {"d": np.array([1.0, 1.0])}, "unused": TREE}
    mapped = mx.TreeMap(metric=IntMean(x="batch.**.d")).get_state_from_context(context).compute()
    assert sorted(mapped) == ["b", "d"] and sorted(mapped["b"]) == ["d"]
    assert float(mapped["d"]) == 1.0 and float(mapped["b"]["d"]) == 6.0
    reduced = mx.TreeReduce(metric=IntMean(x="batch.**.d")).get_state_from_context(context)
    assert float(reduced.compute()) == 14.0 / 4  # (1 + 1 + 4 + 8) / 4


def test_skip_if_missing_gives_the_identity_when_an_input_is_absent():
    metric = mx.SkipIfMissing(IntMean(x="batch.d"))  # positional, as Kauldron's
    present = metric.get_state_from_context({"batch": {"d": np.array([2.0, 4.0])}})
    absent = metric.get_state_from_context({"batch": {}})
    assert float(present.compute()) == 3.0 and absent.compute() == {}
    assert float(absent.merge(present).compute()) == 3.0
    assert float(jax.jit(lambda a, b: a.merge(b))(present, absent).compute()) == 3.0
    with pytest.raises(mx.ContextKeyError, match="required key"):  # an unset key is not "missing"
        mx.SkipIfMissing(IntMean(x=mx.REQUIRED)).get_state_from_context({"batch": {}})


def test_states_of_different_metrics_refuse_to_merge():
    a = IntMean(x="batch.x").get_state(x=np.ones(2))
    b = IntMean(x="batch.y").get_state(x=np.ones(2))
    with pytest.raises(mx.MergeError, match="from different metrics"):
        a.merge(b)


def test_call_with_a_context_reads_the_keys():
    metric = IntMean()
    assert float(metric(context={"batch": {"x": np.array([1.0, 2.0])}})) == 1.5
    with pytest.raises(TypeError, match="either context= or the inputs"):
        metric(np.ones(2), context={})


def test_tree_metrics_fold_like_sequential_merges():
    metric = mx.TreeMap(metric=IntMean())
    parts = [metric.get_state(x={"a": np.array([float(i), 1.0])}) for i in range(4)]
    sequential = functools.reduce(lambda a, b: a.merge(b), parts).compute()
    stacked = mx.merge_stacked(jax.tree.map(lambda *xs: jnp.stack(xs), *parts)).compute()
    assert float(sequential["a"]) == float(stacked["a"]) == (0 + 1 + 2 + 3 + 4) / 8


# ---------------------------------------------------------------------------------------
# metrix.typing unions and kd.metrics.LpipsVgg (keys pred / target / mask, weights found by
# the metric itself)
# ---------------------------------------------------------------------------------------


def test_optional_fields_annotated_with_a_shorthand_union():
    from metrix.typing import Float

    class Sums(mx.AutoState):
        b: Float = mx.sum_field()
        c: Float | None = mx.sum_field(default=None)

    none = Sums(b=jnp.array(1.0), c=None).merge(Sums(b=jnp.array(2.0), c=None))
    assert float(none.b) == 3.0 and none.c is None
    both = Sums(b=jnp.array(1.0), c=jnp.array([1.0])).merge(
        Sums(b=jnp.array(0.0), c=jnp.array([5.0]))
    )
    np.testing.assert_array_equal(np.asarray(both.c), [6.0])
    with pytest.raises(ValueError, match="Cannot sum None"):
        Sums(b=jnp.array(1.0), c=None).merge(Sums(b=jnp.array(1.0), c=jnp.array([1.0])))


def _vgg_weights_folder(folder):
    from metrix.backbones import weights as weight_io
    from metrix.backbones.lpips_nets import params_shapes
    from metrix.perceptual import lpips_math

    rng = np.random.default_rng(0)
    backbone = jax.tree_util.tree_map(
        lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32), params_shapes("vgg")
    )
    weight_io.save(backbone, folder / "vgg.safetensors")
    channels = lpips_math.LPIPS_CHANNELS["vgg"]
    calibration = {f"lin{k}": np.ones(c, np.float32) for k, c in enumerate(channels)}
    lpips_math.save_calibration(calibration, folder / "vgg_calibration.safetensors")


def test_lpips_vgg_reads_kauldron_keys_and_finds_its_weights(tmp_path, monkeypatch):
    from metrix.perceptual import LpipsVgg

    metric = LpipsVgg(pred="pred", target="target", mask="mask")
    rng = np.random.default_rng(1)
    pred = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    target = pred.copy()
    target[1] = rng.uniform(0, 1, (16, 16, 3))  # pair 0 identical, pair 1 not
    monkeypatch.setenv("METRIX_LPIPS_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="`LpipsVgg` require"):
        metric.get_state(pred=pred, target=target, mask=None)
    _vgg_weights_folder(tmp_path)
    # Kauldron's (*b, 1) mask: only the identical pair is kept, so the mean is 0.
    context = {"pred": pred, "target": target, "mask": np.array([[True], [False]])}
    assert abs(float(metric.get_state_from_context(context).compute())) < 1e-9
    assert float(metric.get_state(pred=pred, target=target, mask=None).compute()) > 0.0
