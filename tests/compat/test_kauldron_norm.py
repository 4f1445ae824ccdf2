"""mx.Norm with Kauldron's configuration (``tensor``, ``axis``, ``aggregation_type``).

Expected values are worked out by hand in the comments (3-4-5 triangles and small sums).
"""

import warnings

import jax
import numpy as np
import pytest

import metrix as mx

ROWS = np.array([[3.0, 4.0], [6.0, 8.0]], np.float32)  # row norms 5 and 10
TREE = {"a": np.array([1.0, 2.0, 3.0], np.float32), "b": np.array([4.0, 5.0, 6.0], np.float32)}


def test_tensor_key_norms_the_last_axis_and_averages():
    metric = mx.Norm(tensor="x")
    # (5 + 10) / 2, through the key and through Kauldron's argument name.
    assert float(metric.get_state_from_context({"x": ROWS}).compute()) == pytest.approx(7.5)
    assert float(metric.get_state(tensor=ROWS).compute()) == pytest.approx(7.5)
    # Kauldron's (*b, 1) mask drops the second row.
    masked = mx.Norm(tensor="x", mask="m")
    got = masked.get_state_from_context({"x": ROWS, "m": np.array([[True], [False]])}).compute()
    assert float(got) == pytest.approx(5.0)


def test_values_key_keeps_the_norm_of_the_whole_input():
    # sqrt(9 + 16 + 36 + 64) = sqrt(125): metrix's default, unchanged by the alias.
    assert float(mx.Norm(values="x").get_state_from_context({"x": ROWS}).compute()) == pytest.approx(np.sqrt(125))
    assert float(mx.Norm(axis=None)(ROWS)) == pytest.approx(np.sqrt(125))
    assert float(mx.Norm(axis=0)(ROWS)) == pytest.approx((np.sqrt(45) + np.sqrt(80)) / 2)


def test_tensor_and_values_together_are_refused():
    with pytest.raises(ValueError, match="another name"):
        mx.Norm(tensor="x", values="y").get_state_from_context({"x": ROWS, "y": ROWS})


@pytest.mark.parametrize("jit", [False, True])
def test_tree_reduce_concat_is_the_norm_of_all_leaves(jit):
    metric = mx.TreeReduce(metric=mx.Norm(tensor="t", axis=None, aggregation_type="concat"))
    fn = jax.jit(lambda t: metric.get_state(tensor=t).compute()) if jit else (lambda t: metric.get_state(tensor=t).compute())
    # sqrt(1 + 4 + 9 + 16 + 25 + 36) = sqrt(91)
    assert float(fn(TREE)) == pytest.approx(np.sqrt(91), rel=1e-6)


def test_concat_merges_across_calls_and_with_empty():
    metric = mx.Norm(tensor="t", axis=None, aggregation_type="concat")
    a, b = metric.get_state(tensor=TREE["a"]), metric.get_state(tensor=TREE["b"])
    assert float(a.merge(b).compute()) == pytest.approx(np.sqrt(91), rel=1e-6)
    assert float(metric.empty().merge(a).compute()) == pytest.approx(np.sqrt(14), rel=1e-6)
    assert float(metric.empty().compute()) == 0.0  # the norm of nothing
    # ord=1 concat: the sum of |x| over both, 21; per-row ord=1 concat of ROWS: 3+4+6+8 = 21.
    l1 = mx.Norm(tensor="t", axis=None, ord=1, aggregation_type="concat")
    assert float(l1.get_state(tensor=TREE["a"]).merge(l1.get_state(tensor=TREE["b"])).compute()) == pytest.approx(21)
    assert float(mx.Norm(tensor="t", ord=1, aggregation_type="concat")(tensor=ROWS)) == pytest.approx(21)
    # Masked rows are left out of the concatenation: sqrt(25) only.
    rows = mx.Norm(axis=-1, aggregation_type="concat")
    assert float(rows(ROWS, mask=np.array([True, False]))) == pytest.approx(5.0)


def test_average_of_leaf_norms_and_the_merge_warning():
    # (sqrt(14) + sqrt(77)) / 2
    want = (np.sqrt(14) + np.sqrt(77)) / 2
    silent = mx.TreeReduce(metric=mx.Norm(tensor="t", axis=None, aggregation_type="average"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(silent.get_state(tensor=TREE).compute()) == pytest.approx(want, rel=1e-6)
        # metrix's default (axis="auto") merges steps without a warning.
        default = mx.Norm(values="g")
        default.get_state(TREE["a"]).merge(default.get_state(TREE["b"]))
        per_example = mx.Norm(axis=None, per_example=True)
        per_example.get_state(ROWS).merge(per_example.get_state(ROWS))
    loud = mx.TreeReduce(metric=mx.Norm(tensor="t", axis=None))
    with pytest.warns(UserWarning, match="aggregation_type"):
        got = loud.get_state(tensor=TREE).compute()
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_matrix_norms_over_two_axes():
    m = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)
    # Frobenius sqrt(30); max column sum |1|+|3|, |2|+|4| -> 6; max row sum 3+4 -> 7.
    assert float(mx.Norm(axis=(1, 2))(m)) == pytest.approx(np.sqrt(30), rel=1e-6)
    assert float(mx.Norm(axis=(1, 2), ord=None)(m)) == pytest.approx(np.sqrt(30), rel=1e-6)
    assert float(mx.Norm(axis=(1, 2), ord=1)(m)) == pytest.approx(6.0)
    assert float(mx.Norm(axis=(1, 2), ord=float("inf"))(m)) == pytest.approx(7.0)
    # Spectral norm of diag(3, 1) is 3 (a vector 2-norm of its entries would be sqrt(10)).
    assert float(mx.Norm(axis=(1, 2), ord=2)(np.diag([3.0, 1.0])[None].astype(np.float32))) == pytest.approx(3.0, rel=1e-6)


def test_other_numpy_orders_along_an_axis():
    # Vector orders: (1 + 8)^(1/3); ord=0 counts nonzeros (2); -inf is the smallest |x| (2).
    assert float(mx.Norm(tensor="x", ord=3)(tensor=np.array([[1.0, 2.0]], np.float32))) == pytest.approx(9 ** (1 / 3), rel=1e-6)
    assert float(mx.Norm(axis=-1, ord=0)(np.array([[0.0, 2.0, 3.0]], np.float32))) == pytest.approx(2.0)
    assert float(mx.Norm(axis=-1, ord=float("-inf"))(np.array([[-4.0, 2.0, 3.0]], np.float32))) == pytest.approx(2.0)
    # Nuclear norm of diag(3, 1): 3 + 1.
    assert float(mx.Norm(axis=(1, 2), ord="nuc")(np.diag([3.0, 1.0])[None].astype(np.float32))) == pytest.approx(4.0, rel=1e-6)
    # concat with p = 3 over two calls: (1 + 8 + 27)^(1/3), as one vector [1, 2, 3].
    cube = mx.Norm(axis=-1, ord=3, aggregation_type="concat")
    got = cube.get_state(np.array([[1.0, 2.0]], np.float32)).merge(cube.get_state(np.array([[3.0]], np.float32)))
    assert float(got.compute()) == pytest.approx(36 ** (1 / 3), rel=1e-6)


def test_refused_configurations():
    with pytest.raises(ValueError, match="axis"):
        mx.Norm(axis=(0, 1, 2))
    with pytest.raises(ValueError, match="ord=inf"):
        mx.Norm(axis=-1, ord=float("inf"), aggregation_type="concat")
    with pytest.raises(ValueError, match="matrix norm"):
        mx.Norm(axis=(0, 1), ord=2, aggregation_type="concat")
    with pytest.raises(ValueError, match="per_example"):
        mx.Norm(axis=-1, per_example=True)
    with pytest.raises(ValueError, match="aggregation_type"):
        mx.Norm(aggregation_type="sum")
    with pytest.raises(ValueError, match="TreeReduce"):
        mx.Norm(axis=-1)(TREE)
    with pytest.raises(ValueError, match="whole input"):
        mx.Norm(ord=3)
    with pytest.raises(ValueError, match="vector norm"):
        mx.Norm(axis=-1, ord="fro")
    with pytest.raises(ValueError, match="matrix norm"):
        mx.Norm(axis=(0, 1), ord=3)
    with pytest.raises(ValueError, match="p > 0"):
        mx.Norm(axis=-1, ord=0, aggregation_type="concat")
