"""metrix.typing: Kauldron-style shorthands (``Float["*b n"]``, ``Float | None``)."""

from __future__ import annotations

import typing

import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import metrix as mx
from metrix.core.typecheck import InputTypeError
from metrix.typing import Float, Int, typechecked


def test_bare_shorthand_in_a_union_is_any_shape_of_that_dtype():
    optional = Float | None
    assert typing.get_origin(optional) is typing.Union
    array_type, none_type = typing.get_args(optional)
    assert none_type is type(None)
    assert array_type.dtype is jaxtyping.Float and array_type.dim_str == "..."
    assert typing.get_args(None | Float) == (type(None), array_type)
    assert {a.dtype for a in typing.get_args(Float | Int)} == {jaxtyping.Float, jaxtyping.Int}
    assert typing.get_args(Float | int)[1] is int
    # A subscripted shorthand is already a jaxtyping type: its union is Python's own.
    assert typing.get_args(Float["b"] | None)[0].dim_str == "b"
    assert typing.get_args(Float["b"] | Float)[1].dim_str == "..."


def test_union_annotations_are_checked_in_get_state():
    class Total(mx.Metric):
        values: mx.Key = mx.REQUIRED
        weights: mx.Key | None = None

        @typechecked
        def get_state(self, values: Float["n"], weights: Float | None = None) -> mx.AverageState:
            return mx.AverageState.from_values(values, mask=None)

    metric = Total(values="v")
    x = jnp.array([1.0, 3.0])
    assert float(metric.get_state(x, None).compute()) == pytest.approx(2.0)
    assert float(metric.get_state(x, jnp.ones((2, 2))).compute()) == pytest.approx(2.0)
    with pytest.raises(InputTypeError, match="weights"):
        metric.get_state(x, jnp.array([1, 2], jnp.int32))  # an int array is not Float


def test_optional_autostate_field_declared_with_a_union():
    class Sums(mx.AutoState):
        b: Float = mx.sum_field()
        c: Float | None = mx.sum_field(default=None)

    one = Sums(b=jnp.array(1.0), c=None)
    assert one.merge(Sums(b=jnp.array(2.0), c=None)).b == 3.0
    with_c = Sums(b=jnp.array(1.0), c=jnp.array([1.0, 2.0]))
    merged = with_c.merge(Sums(b=jnp.array(1.0), c=jnp.array([3.0, 4.0])))
    np.testing.assert_array_equal(np.asarray(merged.c), [4.0, 6.0])
