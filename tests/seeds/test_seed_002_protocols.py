"""Seed 002 (``calibrax.core.protocols`` -> ``metrix.protocols``): the protocols, their members
and signatures, and structural (runtime-checkable) subtyping."""

from __future__ import annotations

import inspect
from typing import Any

import jax.numpy as jnp
import pytest

from metrix import protocols
from metrix.protocols import (
    BatchableDatasetProtocol,
    BenchmarkProtocol,
    DatasetProtocol,
    MetricLearningProtocol,
    MetricProtocol,
    StatefulMetricProtocol,
)

SEED_SIGNATURES = {
    BenchmarkProtocol: {
        "setup": [],
        "run_training": [],
        "run_evaluation": [],
        "teardown": [],
        "get_performance_targets": [],
    },
    DatasetProtocol: {"__len__": [], "__getitem__": ["idx"]},
    BatchableDatasetProtocol: {
        "__len__": [],
        "__getitem__": ["idx"],
        "get_batch": ["batch_size", "start_idx"],
    },
    MetricProtocol: {
        "compute": ["predictions", "targets"],
        "validate_inputs": ["predictions", "targets"],
    },
    StatefulMetricProtocol: {"update": ["kwargs"], "compute": [], "reset": []},
    MetricLearningProtocol: {"__call__": ["embeddings", "labels"]},
}


@pytest.mark.parametrize("protocol", list(SEED_SIGNATURES), ids=lambda p: p.__name__)
def test_signatures_match_the_seed(protocol):
    assert getattr(protocol, "_is_runtime_protocol", False)
    for method, params in SEED_SIGNATURES[protocol].items():
        signature = inspect.signature(getattr(protocol, method))
        assert [p for p in signature.parameters if p != "self"] == params, (protocol, method)


def test_properties_match_the_seed():
    for protocol, names in (
        (MetricProtocol, ("name", "higher_is_better")),
        (StatefulMetricProtocol, ("name",)),
    ):
        for name in names:
            assert isinstance(inspect.getattr_static(protocol, name), property)


class ToyBenchmark:
    def setup(self) -> None: ...
    def run_training(self) -> dict[str, float]:
        return {"loss": 0.1}

    def run_evaluation(self) -> dict[str, float]:
        return {"accuracy": 0.9}

    def teardown(self) -> None: ...
    def get_performance_targets(self) -> dict[str, float]:
        return {"accuracy": 0.8}


class ToyDataset:
    def __init__(self, n: int):
        self.x = jnp.arange(n, dtype=jnp.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: int) -> Any:
        return self.x[idx]

    def get_batch(self, batch_size: int, start_idx: int) -> dict[str, Any]:
        return {"x": self.x[start_idx : start_idx + batch_size]}


class ToyMetric:
    name = "mae"
    higher_is_better = False

    def compute(self, predictions, targets):
        return jnp.mean(jnp.abs(predictions - targets))

    def validate_inputs(self, predictions, targets):
        if predictions.shape != targets.shape:
            raise ValueError("shapes differ")


def test_structural_subtyping():
    """Any class with the members satisfies a protocol without inheriting from it."""
    assert isinstance(ToyBenchmark(), BenchmarkProtocol)
    assert isinstance(ToyDataset(3), DatasetProtocol) and isinstance(
        ToyDataset(3), BatchableDatasetProtocol
    )
    assert isinstance([1, 2], DatasetProtocol) and not isinstance([1, 2], BatchableDatasetProtocol)
    assert isinstance(ToyMetric(), MetricProtocol)
    assert not isinstance(ToyMetric(), StatefulMetricProtocol)  # no update/reset
    assert not isinstance(ToyDataset(3), BenchmarkProtocol)
    assert isinstance(lambda embeddings, labels: 0.0, MetricLearningProtocol)
    assert set(protocols.__all__) >= {p.__name__ for p in SEED_SIGNATURES}
