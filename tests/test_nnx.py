"""metrix.nnx beyond the doc examples: masks, nnx transforms, errors, merging.

References: flax's own ``nnx.metrics`` on the same inputs where flax is right, numpy
boolean indexing where it is not (the mask count).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as flax_nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from metrix import nnx

RNG = np.random.default_rng(0)


def test_broadcast_mask_counts_selected_elements_unlike_flax():
    values = RNG.normal(size=(4, 3)).astype(np.float32)
    mask = np.array([[True], [False], [True], [True]])  # broadcasts over the 3 columns
    ours = nnx.Average()
    ours.update(values=jnp.asarray(values), mask=jnp.asarray(mask))
    expected = values[np.broadcast_to(mask, values.shape)].mean()  # boolean indexing
    assert float(ours.compute()) == pytest.approx(expected, rel=1e-6)
    # flax counts mask.sum() = 3 instead of the 9 selected elements
    theirs = flax_nnx.metrics.Average()
    theirs.update(values=jnp.asarray(values), mask=jnp.asarray(mask))
    assert float(theirs.compute()) == pytest.approx(3 * expected, rel=1e-5)


def test_full_mask_agrees_with_flax_and_nan_is_masked_out():
    values = RNG.normal(size=(10,)).astype(np.float32)
    mask = RNG.random(10) < 0.5
    ours, theirs = nnx.Average(), flax_nnx.metrics.Average()
    for m in (ours, theirs):
        m.update(values=jnp.asarray(values), mask=jnp.asarray(mask))
    assert float(ours.compute()) == pytest.approx(float(theirs.compute()), rel=1e-6)
    with_nan = values.copy()
    with_nan[~mask] = np.nan
    ours.reset()
    ours.update(values=jnp.asarray(with_nan), mask=jnp.asarray(mask))
    assert float(ours.compute()) == pytest.approx(values[mask].mean(), rel=1e-6)


def test_leading_axes_mask_also_works():
    values = RNG.normal(size=(3, 4)).astype(np.float32)
    mask = np.array([True, False, True])  # metrix convention: covers values[b, ...]
    avg = nnx.Average()
    avg.update(values=jnp.asarray(values), mask=jnp.asarray(mask))
    assert float(avg.compute()) == pytest.approx(values[mask].mean(), rel=1e-6)


def test_accuracy_mask_and_threshold_match_flax():
    logits = RNG.normal(size=(9, 3)).astype(np.float32)
    labels = RNG.integers(0, 3, size=(9,))
    mask = RNG.random(9) < 0.6
    ours, theirs = nnx.Accuracy(), flax_nnx.metrics.Accuracy()
    for m in (ours, theirs):
        m.update(logits=jnp.asarray(logits), labels=jnp.asarray(labels), mask=jnp.asarray(mask))
    assert float(ours.compute()) == pytest.approx(float(theirs.compute()))
    binary_logits = jnp.asarray([0.2, 0.5, 0.7, 0.4, 0.5])  # 0.5 counts as positive (>=)
    binary_labels = jnp.asarray([0, 1, 1, 1, 0])
    ours, theirs = nnx.Accuracy(threshold=0.5), flax_nnx.metrics.Accuracy(threshold=0.5)
    for m in (ours, theirs):
        m.update(logits=binary_logits, labels=binary_labels)
    assert float(ours.compute()) == pytest.approx(float(theirs.compute())) == pytest.approx(0.6)


def test_accuracy_input_errors():
    with pytest.raises(TypeError, match="threshold to be a float"):
        nnx.Accuracy(threshold=1)
    acc = nnx.Accuracy()
    with pytest.raises(ValueError, match="logits.ndim==labels.ndim\\+1"):
        acc.update(logits=jnp.zeros((3,)), labels=jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="integer labels"):
        acc.update(logits=jnp.zeros((3, 2)), labels=jnp.zeros((3,)))


def test_misspelled_keywords_are_rejected_with_a_suggestion():
    metrics = nnx.MultiMetric(accuracy=nnx.Accuracy(), loss=nnx.Average())
    with pytest.raises(TypeError, match="'lables'; did you mean 'labels'"):
        metrics.update(
            logits=jnp.zeros((2, 3)), lables=jnp.zeros((2,), jnp.int32), values=jnp.ones(2)
        )
    with pytest.raises(TypeError, match="misspelled"):
        nnx.Average().update(value=jnp.ones(2))
    # a flax metric inside: its update signature (and argname) define what it reads
    mixed = nnx.MultiMetric(loss=flax_nnx.metrics.Average("loss"), acc=nnx.Accuracy())
    mixed.update(loss=jnp.ones(2), logits=jnp.zeros((2, 3)), labels=jnp.zeros((2,), jnp.int32))
    with pytest.raises(TypeError, match="'los'"):
        mixed.update(los=jnp.ones(2), logits=jnp.zeros((2, 3)), labels=jnp.zeros((2,), jnp.int32))


def test_nnx_jit_split_merge_and_counts():
    metrics = nnx.MultiMetric(loss=nnx.Average(), stats=nnx.Welford())

    @flax_nnx.jit
    def step(m, values):
        m.update(values=values)

    chunks = [RNG.normal(size=(n,)).astype(np.float32) for n in (5, 1, 8)]
    for chunk in chunks:
        step(metrics, jnp.asarray(chunk))
    everything = np.concatenate(chunks).astype(np.float64)
    values = metrics.compute()
    assert float(values["loss"]) == pytest.approx(everything.mean(), rel=1e-5)
    assert float(values["stats"].standard_deviation) == pytest.approx(everything.std(), rel=1e-5)
    graphdef, state = flax_nnx.split(metrics)
    clone = flax_nnx.merge(graphdef, state)
    assert float(clone.compute()["loss"]) == float(values["loss"])


def test_state_merge_and_set_state():
    x = RNG.normal(size=(20,)).astype(np.float32)
    a, b = nnx.Welford(), nnx.Welford()
    a.update(values=jnp.asarray(x[:7]))
    b.update(values=jnp.asarray(x[7:]))
    a.merge(b)  # e.g. from another host
    assert float(a.compute().standard_deviation) == pytest.approx(
        np.std(x.astype(np.float64)), rel=1e-5
    )
    c = nnx.Welford()
    c.set_state(a.state)
    assert float(c.compute().mean) == float(a.compute().mean)
    with pytest.raises(TypeError, match="must be"):
        c.set_state(nnx.Average().state)


def test_exact_count_past_float32_integers():
    """flax's float32 total stops counting at 2^24; the double-float state does not."""
    from metrix.core import numerics

    big = float(1 << 24)
    avg = nnx.Average()
    avg.set_state(avg.state.replace(total=numerics.df_from(big), count=numerics.df_from(big)))
    avg.update(values=jnp.ones((1,)))
    assert numerics.df_to_python(avg.state.count) == (1 << 24) + 1
    assert numerics.df_to_python(avg.state.total) == (1 << 24) + 1
    assert float(jnp.float32(big) + jnp.float32(1.0)) == big  # what a float32 total would do


def test_double_float_fields_are_two_variables_value_and_rest():
    avg = nnx.Average()
    avg.update(values=jnp.asarray([float(1 << 24)]))
    avg.update(values=jnp.asarray([1.0]))  # 2^24 + 1 is not a float32
    assert float(avg.total[...]) == float(1 << 24)  # the float32 rounding, flax's reading
    assert float(avg.total_lo[...]) == 1.0  # the exact rest
    from metrix.core import numerics

    assert numerics.df_to_python(avg.state.total) == (1 << 24) + 1
    assert float(avg.compute()) == pytest.approx(((1 << 24) + 1) / 2, rel=1e-7)


def test_flax_style_reset_of_the_float32_value_drops_the_stale_rest():
    class ZeroingAverage(nnx.Average):
        def reset(self):  # flax's Average.reset writes the variables directly
            self.total[...] = jnp.zeros((), jnp.float32)
            self.count[...] = jnp.zeros((), jnp.float32)

    avg = ZeroingAverage()
    avg.update(values=jnp.asarray([float(1 << 24)]))
    avg.update(values=jnp.asarray([1.0]))  # total_lo is now 1
    avg.reset()
    avg.update(values=jnp.asarray([2.0, 4.0]))
    assert float(avg.compute()) == 3.0  # a kept rest would give (6 + 1) / 2 = 3.5


def test_nnx_jit_update_and_compute_inside_the_same_program():
    avg, acc = nnx.Average(), nnx.Accuracy()

    @flax_nnx.jit
    def step(avg, acc, values, logits, labels):
        avg.update(values=values)
        acc.update(logits=logits, labels=labels)
        return avg.compute(), acc.compute()

    step(avg, acc, jnp.asarray([1.0, 2.0]), jnp.asarray([[0.0, 1.0]]), jnp.asarray([1]))
    mean, accuracy = step(avg, acc, jnp.asarray([6.0]), jnp.asarray([[1.0, 0.0]]), jnp.asarray([1]))
    assert float(mean) == pytest.approx(3.0)  # (1 + 2 + 6) / 3
    assert float(accuracy) == pytest.approx(0.5)
    assert float(avg.compute()) == pytest.approx(3.0)  # eager read of the jitted state


def test_fractional_masks_are_refused_where_they_cannot_weight():
    with pytest.raises(ValueError, match="Accuracy.update: mask has values other than 0 and 1"):
        nnx.Accuracy().update(
            logits=jnp.zeros((2, 3)),
            labels=jnp.zeros((2,), jnp.int32),
            mask=jnp.asarray([0.5, 1.0]),
        )
    with pytest.raises(ValueError, match="Welford.update: mask"):
        nnx.Welford().update(values=jnp.ones(2), mask=jnp.asarray([0.5, 1.0]))
    acc = nnx.Accuracy()  # 0/1 floats are a selection
    acc.update(
        logits=jnp.asarray([[0.0, 1.0], [1.0, 0.0]]),
        labels=jnp.asarray([1, 1]),
        mask=jnp.asarray([1.0, 0.0]),
    )
    assert float(acc.compute()) == 1.0


def test_mask_dict_key_that_is_not_a_metric_is_refused():
    metrics = nnx.MultiMetric(accuracy=nnx.Accuracy(), loss=nnx.Average())
    with pytest.raises(ValueError, match="'acuracy'; did you mean 'accuracy'"):
        metrics.update(
            logits=jnp.zeros((2, 3)),
            labels=jnp.zeros((2,), jnp.int32),
            values=jnp.ones(2),
            mask={"acuracy": jnp.asarray([True, False])},
        )


def test_mask_array_goes_to_every_metric():
    metrics = nnx.MultiMetric(accuracy=nnx.Accuracy(), loss=nnx.Average())
    metrics.update(
        logits=jnp.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]),
        labels=jnp.asarray([1, 1, 0]),
        values=jnp.asarray([1.0, 2.0, 6.0]),
        mask=jnp.asarray([True, True, False]),
    )
    values = metrics.compute()
    assert float(values["accuracy"]) == pytest.approx(0.5)  # rows 0 (right) and 1 (wrong)
    assert float(values["loss"]) == pytest.approx(1.5)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1 << 22), min_size=4, max_size=4), min_size=1, max_size=6))
def test_float32_reading_is_the_rounded_exact_total(batches):
    """``total`` is the exact sum rounded once to float32; ``total + total_lo`` is exact."""
    avg = nnx.Average()
    for batch in batches:
        avg.update(values=jnp.asarray(batch, jnp.float32))
    exact = sum(sum(b) for b in batches)  # Python ints: exact
    assert float(avg.total[...]) == float(np.float32(exact))
    assert int(np.float64(avg.total[...]) + np.float64(avg.total_lo[...])) == exact
    assert float(avg.count[...]) == 4 * len(batches)


def test_variables_with_value_hooks_are_read_through_their_hooks():
    """Plain variables are read and written raw (the fast path); a variable given a value hook
    (flax's ``on_get_value``) is read through it, as ``get_value`` would."""
    m = nnx.Average()
    m.update(values=jnp.arange(4.0))
    assert float(m.compute()) == 1.5
    doubled = flax_nnx.metrics.MetricState(m.count.get_value(), on_get_value=lambda var, x: x * 2)
    m.count = doubled
    assert float(m.compute()) == 0.75  # sum 6 over a count read as 8
    m.update(values=jnp.arange(4.0))  # merges with the hooked reading, stored through set_value
    assert float(m.count.get_raw_value()) == 12.0
