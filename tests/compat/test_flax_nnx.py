"""flax nnx code that runs unchanged on ``metrix.nnx`` (flax 0.12.8's ``nnx.metrics`` patterns).

Each test writes the flax idiom out with ``mnnx`` in place of ``nnx.metrics``; the expected
values are worked out by hand in the comments, not computed by metrix or by flax.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from metrix import nnx as mnnx
from metrix.core import numerics

# Rows 0 and 2 predict class 1, row 1 predicts class 0.
LOGITS = jnp.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("jit", [jax.jit, nnx.jit], ids=["jax_jit", "nnx_jit"])
def test_split_multimetric_graphdef_is_a_static_jit_argument(jit):
    metrics = mnnx.MultiMetric(loss=mnnx.Average("loss"), acc=mnnx.Average("acc"))
    graphdef, state = nnx.split(metrics)
    hash(graphdef)  # static arguments must hash

    @partial(jit, static_argnames=("graphdef",))
    def step(graphdef, state, loss, acc):
        m = nnx.merge(graphdef, state)
        m.update(loss=loss, acc=acc)
        return nnx.split(m)[1]

    state = step(graphdef, state, jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([1.0, 0.0]))
    state = step(graphdef, state, jnp.asarray([5.0]), jnp.asarray([1.0]))
    values = nnx.merge(graphdef, state).compute()
    assert list(values) == ["loss", "acc"]  # construction order
    assert float(values["loss"]) == pytest.approx(11 / 4)  # (1 + 2 + 3 + 5) / 4
    assert float(values["acc"]) == pytest.approx(2 / 3)


def test_subclass_with_its_own_update_signature_inside_multimetric():
    class CustomAccuracy(mnnx.Accuracy):
        def update(self, y_preds, y_true, values):  # no **kwargs, no mask: flax's test pattern
            super().update(logits=y_preds, labels=y_true)

    metrics = mnnx.MultiMetric(accuracy=CustomAccuracy(), loss=mnnx.Average())
    labels = jnp.asarray([1, 1, 1])
    metrics.update(y_preds=LOGITS, y_true=labels, values=jnp.asarray([1.0, 2.0, 6.0]))
    values = metrics.compute()
    assert float(values["accuracy"]) == pytest.approx(2 / 3)  # rows 0 and 2 right
    assert float(values["loss"]) == pytest.approx(3.0)
    # What it reads comes from its own signature, so a typo there is still caught.
    with pytest.raises(TypeError, match="'y_pred'; did you mean 'y_preds'"):
        metrics.update(y_pred=LOGITS, y_true=labels, values=jnp.ones(3))


def test_multimetric_mask_dict_masks_each_metric_separately():
    metrics = mnnx.MultiMetric(accuracy=mnnx.Accuracy(), loss=mnnx.Average())
    labels = jnp.asarray([1, 1, 0])  # correct, wrong, wrong
    loss = jnp.asarray([1.0, 2.0, 6.0])
    metrics.update(logits=LOGITS, labels=labels, values=loss, mask={"accuracy": labels > 0})
    values = metrics.compute()
    assert float(values["accuracy"]) == pytest.approx(1 / 2)  # rows 0, 1 kept: 1 of 2
    assert float(values["loss"]) == pytest.approx(3.0)  # not in the dict: unmasked
    metrics.reset()
    metrics.update(
        logits=LOGITS, labels=labels, values=loss, mask={"accuracy": None, "loss": loss > 1}
    )
    values = metrics.compute()
    assert float(values["accuracy"]) == pytest.approx(1 / 3)
    assert float(values["loss"]) == pytest.approx(4.0)  # (2 + 6) / 2


def test_average_total_and_count_read_as_scalars():
    avg = mnnx.Average()
    avg.update(values=jnp.asarray([1, 2, 3, 4], jnp.int32))
    avg.update(values=3)  # a Python number counts once
    assert avg.count[...].shape == () and avg.total[...].shape == ()
    assert avg.count == 5 and avg.total == 13
    assert float(avg.total[...] / avg.count[...]) == pytest.approx(13 / 5)
    assert float(avg.compute()) == pytest.approx(13 / 5)


def test_python_number_with_a_mask_is_refused_as_flax_does():
    avg = mnnx.Average()
    with pytest.raises(ValueError, match="values should be a jax array"):
        avg.update(values=2, mask=jnp.ones(5))


def test_fractional_mask_weights_elements_as_flax_documents():
    avg = mnnx.Average()
    avg.update(values=jnp.asarray([1.0, 2.0, 3.0, 4.0]), mask=jnp.asarray([1.0, 0.5, 0.0, 2.0]))
    # flax: total = 1 + 1 + 0 + 8 = 10, count = 3.5
    assert float(avg.total[...]) == 10.0 and float(avg.count.get_value()) == 3.5
    assert float(avg.compute()) == pytest.approx(10 / 3.5)


def test_broadcast_fractional_mask_counts_each_covered_element():
    avg = mnnx.Average()
    values = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    avg.update(values=values, mask=jnp.asarray([[0.5], [1.0]]))
    # weights 0.5 on row 0, 1 on row 1: total 0.5 * 6 + 15 = 18, count 0.5 * 3 + 3 = 4.5
    # (flax adds mask.sum() = 1.5 to the count and reports 12).
    assert float(avg.compute()) == pytest.approx(4.0)


def test_flax_style_metric_with_its_own_variables():
    class Max(mnnx.Metric):
        def __init__(self):  # flax's Metric subclasses never call super().__init__()
            self.best = mnnx.MetricState(jnp.asarray(-jnp.inf))

        def update(self, *, values, **_):
            self.best[...] = jnp.maximum(self.best[...], jnp.max(values))

        def reset(self):
            self.best[...] = jnp.asarray(-jnp.inf)

        def compute(self):
            return self.best[...]

    metrics = mnnx.MultiMetric(top=Max(), mean=mnnx.Average())

    @nnx.jit
    def step(m, values):
        m.update(values=values)

    step(metrics, jnp.asarray([1.0, 7.0]))
    step(metrics, jnp.asarray([4.0]))
    values = metrics.compute()
    assert float(values["top"]) == 7.0
    assert float(values["mean"]) == pytest.approx(4.0)


def test_welford_count_reads_as_a_scalar_and_matches_flax_statistics():
    welford = mnnx.Welford()
    welford.update(values=jnp.asarray([1.0, 2.0, 3.0, 4.0]))
    graphdef, state = welford.split()
    welford = nnx.merge(graphdef, state)
    assert welford.count.get_value().shape == () and welford.count == 4
    stats = welford.compute()
    assert isinstance(stats, mnnx.Statistics)
    # mean 2.5, population std sqrt(1.25), sem std / 2
    np.testing.assert_allclose(
        [stats.mean, stats.standard_deviation, stats.standard_error_of_mean],
        [2.5, 1.25**0.5, 1.25**0.5 / 2],
        rtol=1e-6,
    )


def test_exact_count_kept_behind_the_scalar():
    big = float(1 << 24)
    avg = mnnx.Average()
    avg.set_state(avg.state.replace(total=numerics.df_from(big), count=numerics.df_from(big)))
    avg.update(values=jnp.ones(1))
    assert float(avg.count[...]) == big  # 2^24 + 1 rounded to float32, as flax's float32 reads
    assert numerics.df_to_python(avg.state.count) == (1 << 24) + 1  # the exact count
