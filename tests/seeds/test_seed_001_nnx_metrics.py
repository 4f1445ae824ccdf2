"""Seed 001 (flax ``nnx.metrics``): the doc examples with ``flax.nnx.metrics`` -> ``metrix.nnx``.

The independent references are flax's own ``nnx.metrics`` classes fed the same inputs, and
hand computation (numpy argmax / mean / std).

About the Accuracy doc values (0.6, then 0.7): the logits come from
``jax.random.normal(jax.random.key(0), (5, 2))``, whose values depend on JAX's PRNG stream.
The docs were written before JAX 0.5 made ``jax_threefry_partitionable=True`` the default;
with today's default the same call gives other logits, and flax's own
``nnx.metrics.Accuracy`` reports 1.0 and 0.6. Under ``jax.threefry_partitionable(False)``
(the stream the docs saw) the examples print exactly the doc's 0.6 and 0.7: those tests run
the examples verbatim there; the others check the default stream against flax and numpy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as flax_nnx

from metrix import nnx

# Explicit logits reproducing the doc: batch 1 has 3 of 5 correct, batch 2 has 4 of 5.
DOC_LOGITS = jnp.array(
    [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
)  # argmax 1 1 1 0 0
DOC_LOGITS2 = jnp.array(
    [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]
)  # argmax 0 1 1 1 0
DOC_LABELS = jnp.array([1, 1, 0, 1, 0])  # the doc's labels
DOC_LABELS2 = jnp.array([0, 1, 1, 1, 1])  # the doc's labels


def _same(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, equal_nan=True)


def test_average_doc():
    # --- seed example (>>> lines), nnx.metrics -> metrix.nnx ---
    batch_loss = jnp.array([1, 2, 3, 4])
    batch_loss2 = jnp.array([3, 2, 1, 0])
    metrics = nnx.Average()
    c0 = metrics.compute()
    metrics.update(values=batch_loss)
    c1 = metrics.compute()
    metrics.update(values=batch_loss2)
    c2 = metrics.compute()
    metrics.reset()
    c3 = metrics.compute()
    # --- doc output: Array(nan), Array(2.5), Array(2.), Array(nan), all float32 ---
    assert np.isnan(c0) and np.isnan(c3)
    assert float(c1) == 2.5 and float(c2) == 2.0
    assert all(c.dtype == jnp.float32 and c.shape == () for c in (c0, c1, c2, c3))
    reference = flax_nnx.metrics.Average()
    for values in (batch_loss, batch_loss2):
        reference.update(values=values)
    _same(c2, reference.compute())


def test_average_argname():
    avg = nnx.Average("test")
    avg.update(test=jnp.array([1.0, 3.0]))
    assert float(avg.compute()) == 2.0


def test_accuracy_doc_with_random_logits_matches_flax_and_numpy():
    # --- seed example ---
    logits = jax.random.normal(jax.random.key(0), (5, 2))
    labels = jnp.array([1, 1, 0, 1, 0])
    logits2 = jax.random.normal(jax.random.key(1), (5, 2))
    labels2 = jnp.array([0, 1, 1, 1, 1])
    metrics = nnx.Accuracy()
    c0 = metrics.compute()
    metrics.update(logits=logits, labels=labels)
    c1 = metrics.compute()
    metrics.update(logits=logits2, labels=labels2)
    c2 = metrics.compute()
    metrics.reset()
    c3 = metrics.compute()
    # --- references on identical inputs ---
    reference = flax_nnx.metrics.Accuracy()
    reference.update(logits=logits, labels=labels)
    _same(c1, reference.compute())
    reference.update(logits=logits2, labels=labels2)
    _same(c2, reference.compute())
    correct1 = np.argmax(np.asarray(logits), -1) == np.asarray(labels)
    correct2 = np.argmax(np.asarray(logits2), -1) == np.asarray(labels2)
    assert float(c1) == pytest.approx(correct1.mean())
    assert float(c2) == pytest.approx(np.concatenate([correct1, correct2]).mean())
    assert np.isnan(c0) and np.isnan(c3)


def _doc_logits():
    """The doc's random logits, drawn from the PRNG stream the docs were written with."""
    with jax.threefry_partitionable(False):
        return jax.random.normal(jax.random.key(0), (5, 2)), jax.random.normal(jax.random.key(1), (5, 2))


def test_accuracy_doc_verbatim_gives_the_doc_values():
    logits, logits2 = _doc_logits()
    # --- seed example ---
    labels = jnp.array([1, 1, 0, 1, 0])
    labels2 = jnp.array([0, 1, 1, 1, 1])
    metrics = nnx.Accuracy()
    assert np.isnan(metrics.compute())  # Array(nan, dtype=float32)
    metrics.update(logits=logits, labels=labels)
    assert float(metrics.compute()) == pytest.approx(0.6)  # Array(0.6, dtype=float32)
    metrics.update(logits=logits2, labels=labels2)
    assert float(metrics.compute()) == pytest.approx(0.7)  # Array(0.7, dtype=float32)
    metrics.reset()
    assert np.isnan(metrics.compute())  # Array(nan, dtype=float32)
    # --- the same inputs by hand ---
    correct = np.concatenate(
        [np.argmax(logits, -1) == np.asarray(labels), np.argmax(logits2, -1) == np.asarray(labels2)]
    )
    assert correct[:5].mean() == pytest.approx(0.6) and correct.mean() == pytest.approx(0.7)


def test_multimetric_doc_verbatim_gives_the_doc_values():
    logits, logits2 = _doc_logits()
    _, values = _multimetric_run(
        logits, jnp.array([1, 1, 0, 1, 0]), logits2, jnp.array([0, 1, 1, 1, 1]), _MetrixAsNnx
    )
    assert float(values[1]["accuracy"]) == pytest.approx(0.6) and float(values[1]["loss"]) == 2.5
    assert float(values[2]["accuracy"]) == pytest.approx(0.7) and float(values[2]["loss"]) == 2.0


def test_accuracy_doc_values_with_explicit_logits():
    metrics = nnx.Accuracy()
    metrics.update(logits=DOC_LOGITS, labels=DOC_LABELS)
    assert metrics.compute() == pytest.approx(0.6)
    metrics.update(logits=DOC_LOGITS2, labels=DOC_LABELS2)
    assert metrics.compute() == pytest.approx(0.7)
    assert metrics.compute().dtype == jnp.float32
    metrics.reset()
    assert np.isnan(metrics.compute())


def test_welford_doc():
    # --- seed example ---
    batch_loss = jnp.array([1, 2, 3, 4])
    batch_loss2 = jnp.array([3, 2, 1, 0])
    metrics = nnx.Welford()
    s0 = metrics.compute()
    metrics.update(values=batch_loss)
    s1 = metrics.compute()
    metrics.update(values=batch_loss2)
    s2 = metrics.compute()
    metrics.reset()
    s3 = metrics.compute()
    # --- doc output ---
    assert isinstance(s1, flax_nnx.metrics.Statistics)
    for empty in (s0, s3):
        assert float(empty.mean) == 0.0
        assert np.isnan(empty.standard_error_of_mean) and np.isnan(empty.standard_deviation)
    np.testing.assert_allclose(
        [s1.mean, s1.standard_error_of_mean, s1.standard_deviation],
        [2.5, 0.559017, 1.118034],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        [s2.mean, s2.standard_error_of_mean, s2.standard_deviation],
        [2.0, 0.43301272, 1.2247449],
        rtol=1e-6,
    )
    # hand computation: population std (ddof 0), sem = std / sqrt(n)
    everything = np.array([1, 2, 3, 4, 3, 2, 1, 0], np.float64)
    assert float(s2.standard_deviation) == pytest.approx(everything.std(), rel=1e-6)
    assert float(s2.standard_error_of_mean) == pytest.approx(
        everything.std() / np.sqrt(8), rel=1e-6
    )
    reference = flax_nnx.metrics.Welford()
    for values in (batch_loss, batch_loss2):
        reference.update(values=values)
    expected = reference.compute()
    _same(s2.mean, expected.mean)
    _same(s2.standard_deviation, expected.standard_deviation)
    _same(s2.standard_error_of_mean, expected.standard_error_of_mean)


def _multimetric_run(logits, labels, logits2, labels2, module):
    # --- seed example ---
    metrics = module.MultiMetric(accuracy=module.metrics.Accuracy(), loss=module.metrics.Average())
    batch_loss = jnp.array([1, 2, 3, 4])
    batch_loss2 = jnp.array([3, 2, 1, 0])
    out = [metrics.compute()]
    metrics.update(logits=logits, labels=labels, values=batch_loss)
    out.append(metrics.compute())
    metrics.update(logits=logits2, labels=labels2, values=batch_loss2)
    out.append(metrics.compute())
    metrics.reset()
    out.append(metrics.compute())
    return metrics, out


class _MetrixAsNnx:
    """The names the doc uses (``nnx.MultiMetric``, ``nnx.metrics.Accuracy``), from metrix.nnx."""

    MultiMetric = nnx.MultiMetric
    metrics = nnx


def test_multimetric_doc():
    logits = jax.random.normal(jax.random.key(0), (5, 2))
    labels = jnp.array([1, 1, 0, 1, 0])
    logits2 = jax.random.normal(jax.random.key(1), (5, 2))
    labels2 = jnp.array([0, 1, 1, 1, 1])
    metrics, ours = _multimetric_run(logits, labels, logits2, labels2, _MetrixAsNnx)
    assert isinstance(metrics.accuracy, nnx.Accuracy) and isinstance(metrics.loss, nnx.Average)
    _, theirs = _multimetric_run(logits, labels, logits2, labels2, flax_nnx)
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys() == {"accuracy", "loss"}
        for key in a:
            _same(a[key], b[key])
    assert float(ours[1]["loss"]) == 2.5 and float(ours[2]["loss"]) == 2.0
    # the doc's accuracy values, with logits whose argmax gives them
    _, doc = _multimetric_run(DOC_LOGITS, DOC_LABELS, DOC_LOGITS2, DOC_LABELS2, _MetrixAsNnx)
    assert doc[1]["accuracy"] == pytest.approx(0.6) and doc[2]["accuracy"] == pytest.approx(0.7)
    assert all(np.isnan(v) for v in doc[0].values()) and all(np.isnan(v) for v in doc[3].values())


def test_subclasses_flax_metric():
    for metric in (nnx.Average(), nnx.Accuracy(), nnx.Welford(), nnx.MultiMetric(a=nnx.Average())):
        assert isinstance(metric, flax_nnx.metrics.Metric)
