"""Masks that are not boolean: 0/1 in any dtype selects; any other value is refused eagerly."""

import jax
import numpy as np
import pytest

import metrix as mx

VALUES = np.array([1.0, 2.0, 4.0], np.float32)


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.uint8])
def test_zero_one_masks_of_any_dtype_select_like_booleans(dtype):
    mask = np.array([1, 0, 1], dtype)
    assert float(mx.Average()(values=VALUES, mask=mask)) == 2.5  # (1 + 4) / 2
    state = mx.Average().get_state(values=VALUES, mask=mask)
    assert float(state.compute()) == 2.5


@pytest.mark.parametrize("bad", [0.5, 2.0, np.nan, -1.0])
def test_other_mask_values_are_refused_naming_the_metric_and_weights(bad):
    mask = np.array([1.0, bad, 0.0], np.float32)
    with pytest.raises(ValueError, match=r"Average: mask holds 1 value\(s\) other than 0 and 1.*weights="):
        mx.Average()(values=VALUES, mask=mask)
    with pytest.raises(ValueError, match="Average: mask holds 1 value"):
        mx.Average().get_state(values=VALUES, mask=mask)


def test_refused_on_a_cached_one_shot_call_too():
    metric = mx.Accuracy()
    logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = np.array([1, 1, 1])
    good = np.array([1.0, 1.0, 0.0], np.float32)
    assert float(metric(logits=logits, labels=labels, mask=good)) == 0.5  # compiles the key
    assert float(metric(logits=logits, labels=labels, mask=good)) == 0.5
    with pytest.raises(ValueError, match="Accuracy: mask holds 1 value"):
        metric(logits=logits, labels=labels, mask=np.array([1.0, 0.5, 0.0], np.float32))


def test_under_jit_a_nonzero_value_keeps_the_element_as_documented():
    # docs/inputs.md: inside a jit of the caller's own, a fractional mask cannot be refused.
    value = jax.jit(lambda m: mx.Average().get_state(values=VALUES, mask=m).compute())(
        np.array([0.5, 0.0, 1.0], np.float32)
    )
    assert float(value) == 2.5
