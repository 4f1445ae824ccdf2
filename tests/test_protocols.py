"""metrix classes against the protocols, the PredictionMetric adapter and run_benchmark."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import metrix as mx
from metrix import nnx as mnnx
from metrix.protocols import (
    BenchmarkProtocol,
    MetricLearningProtocol,
    MetricProtocol,
    PredictionMetric,
    StatefulMetricProtocol,
    run_benchmark,
)
from metrix.stateful import BERTScoreMetric, FIDMetric, InceptionScoreMetric, LPIPSMetric, Stateful


def test_stateful_classes_are_stateful_metric_protocol():
    objects = [
        Stateful(mx.Accuracy()),
        FIDMetric(feature_dim=8),
        InceptionScoreMetric(),
        BERTScoreMetric(),
        LPIPSMetric(rngs=nnx.Rngs(0)),
    ]
    for obj in objects:
        assert isinstance(obj, StatefulMetricProtocol), type(obj).__name__
        assert isinstance(obj.name, str) and obj.name
    assert FIDMetric(feature_dim=8).higher_is_better is False
    assert InceptionScoreMetric().higher_is_better is True
    assert LPIPSMetric(rngs=nnx.Rngs(0)).higher_is_better is False


def test_learning_losses_are_metric_learning_protocol():
    from metrix import learning

    rng = np.random.default_rng(0)
    embeddings = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
    labels = jnp.asarray([0, 0, 1, 1, 2, 2, 3, 3])
    losses = [
        learning.ContrastiveLoss(),
        learning.TripletMarginLoss(),
        learning.NTXentLoss(),
        learning.ArcFaceLoss(num_classes=4, embedding_dim=4, rngs=nnx.Rngs(0)),
    ]
    for loss in losses:
        assert isinstance(loss, MetricLearningProtocol), type(loss).__name__
        value = loss(embeddings, labels)
        assert isinstance(value, jnp.ndarray) and value.shape == ()  # a differentiable array


def test_prediction_metric_adapter():
    metric = PredictionMetric(mx.Accuracy(), predictions="logits", targets="labels")
    assert isinstance(metric, MetricProtocol)
    assert metric.name == "Accuracy" and metric.higher_is_better
    logits = jnp.asarray([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    labels = jnp.asarray([1, 0, 0])
    metric.validate_inputs(logits, labels)
    assert float(metric.compute(logits, labels)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="batch sizes"):
        metric.validate_inputs(logits, labels[:2])
    with pytest.raises(ValueError, match="cannot be scored"):
        metric.validate_inputs(logits, jnp.zeros((3, 2), jnp.int32))  # labels of the wrong rank
    mse = PredictionMetric(mx.MSE(), higher_is_better=False)
    assert float(mse.compute(jnp.ones(3), jnp.zeros(3))) == pytest.approx(1.0)


class _Benchmark:
    """A tiny benchmark whose phases use metrix metrics through the stateful layer."""

    def __init__(self, fail_in_training: bool = False):
        self.events: list[str] = []
        self.fail_in_training = fail_in_training

    def setup(self):
        self.events.append("setup")
        self.logits = jnp.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        self.labels = jnp.asarray([1, 0, 0, 1])

    def run_training(self):
        self.events.append("training")
        if self.fail_in_training:
            raise RuntimeError("boom")
        loss = mnnx.Average()
        loss.update(values=jnp.asarray([0.5, 0.3]))
        return {"loss": float(loss.compute())}

    def run_evaluation(self):
        self.events.append("evaluation")
        accuracy = Stateful(mx.Accuracy())
        accuracy.update(logits=self.logits[:3], labels=self.labels[:3])
        accuracy.update(logits=self.logits[3:], labels=self.labels[3:])
        return {"accuracy": float(accuracy.compute())}

    def teardown(self):
        self.events.append("teardown")

    def get_performance_targets(self):
        return {"accuracy": 0.7, "loss": 0.5, "f1": 0.5}


def test_run_benchmark_checks_targets_and_prints_a_table(capsys):
    bench = _Benchmark()
    assert isinstance(bench, BenchmarkProtocol)
    result = run_benchmark(bench, lower_is_better=("loss",), verbose=True)
    assert bench.events == ["setup", "training", "evaluation", "teardown"]
    assert result.evaluation == {"accuracy": pytest.approx(0.75)}
    assert result.training == {"loss": pytest.approx(0.4)}
    assert result.passed == {"accuracy": True, "loss": True, "f1": False}  # f1 was never measured
    assert not result.all_passed
    table = capsys.readouterr().out
    assert "accuracy" in table and "pass" in table and "FAIL" in table and "missing" in table
    assert set(result.seconds) == {"setup", "training", "evaluation", "teardown"}
    # higher-is-better by default: a loss of 0.4 misses a 0.5 target
    assert not run_benchmark(_Benchmark()).passed["loss"]


def test_run_benchmark_tears_down_on_error_and_rejects_non_benchmarks():
    bench = _Benchmark(fail_in_training=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_benchmark(bench)
    assert bench.events == ["setup", "training", "teardown"]
    with pytest.raises(TypeError, match="run_training"):
        run_benchmark(object())
