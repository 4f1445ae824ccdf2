"""Runtime-checkable protocols for benchmarks, datasets and metrics, and a benchmark runner.

Structural typing: any object with the right methods satisfies a protocol without
inheriting from it (``isinstance(obj, StatefulMetricProtocol)`` checks that the members
exist, not their signatures).

=========================== ================================================================
protocol                    members
=========================== ================================================================
``BenchmarkProtocol``       ``setup()``, ``run_training()``, ``run_evaluation()``,
                            ``teardown()``, ``get_performance_targets()``
``DatasetProtocol``         ``__len__()``, ``__getitem__(idx)``
``BatchableDatasetProtocol`` the above and ``get_batch(batch_size, start_idx)``
``MetricProtocol``          ``name``, ``higher_is_better``, ``compute(predictions, targets)``,
                            ``validate_inputs(predictions, targets)``
``StatefulMetricProtocol``  ``name``, ``update(**kwargs)``, ``compute()``, ``reset()``
``MetricLearningProtocol``  ``__call__(embeddings, labels)`` -> differentiable scalar
=========================== ================================================================

In metrix, :class:`metrix.stateful.Stateful`, the tier classes of :mod:`metrix.stateful`
(``FIDMetric``, ``LPIPSMetric``, ...) are ``StatefulMetricProtocol``; the losses of
:mod:`metrix.learning` are ``MetricLearningProtocol``; :class:`PredictionMetric` adapts any
metrix metric to ``MetricProtocol``. :func:`run_benchmark` drives a ``BenchmarkProtocol``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Protocol, runtime_checkable

import jax

__all__ = [
    "BatchableDatasetProtocol",
    "BenchmarkProtocol",
    "BenchmarkResult",
    "DatasetProtocol",
    "MetricLearningProtocol",
    "MetricProtocol",
    "PredictionMetric",
    "StatefulMetricProtocol",
    "run_benchmark",
]


@runtime_checkable
class BenchmarkProtocol(Protocol):
    """A benchmark's lifecycle: setup, training, evaluation, teardown, and its targets."""

    def setup(self) -> None:
        """Set up resources before execution."""
        ...

    def run_training(self) -> dict[str, float]:
        """Run the training phase; training metric name -> value."""
        ...

    def run_evaluation(self) -> dict[str, float]:
        """Run the evaluation phase; evaluation metric name -> value."""
        ...

    def teardown(self) -> None:
        """Release resources after execution."""
        ...

    def get_performance_targets(self) -> dict[str, float]:
        """Expected values: metric name -> target."""
        ...


@runtime_checkable
class DatasetProtocol(Protocol):
    """A dataset of indexable examples."""

    def __len__(self) -> int: ...

    def __getitem__(self, idx: int) -> Any: ...


@runtime_checkable
class BatchableDatasetProtocol(Protocol):
    """A dataset that also serves batches: ``get_batch(batch_size, start_idx) -> dict``."""

    def __len__(self) -> int: ...

    def __getitem__(self, idx: int) -> Any: ...

    def get_batch(self, batch_size: int, start_idx: int) -> dict[str, Any]: ...


@runtime_checkable
class MetricProtocol(Protocol):
    """A metric computed from predictions and targets in one call, with input validation."""

    @property
    def name(self) -> str: ...

    @property
    def higher_is_better(self) -> bool: ...

    def compute(self, predictions: jax.Array, targets: jax.Array) -> Any: ...

    def validate_inputs(self, predictions: jax.Array, targets: jax.Array) -> None:
        """Raise ``ValueError`` when the inputs cannot be scored together."""
        ...


@runtime_checkable
class StatefulMetricProtocol(Protocol):
    """Batch accumulation (tiers 1-2): ``update(**kwargs)``, ``compute() -> dict``, ``reset()``."""

    @property
    def name(self) -> str: ...

    def update(self, **kwargs: Any) -> None: ...

    def compute(self) -> dict[str, float]: ...

    def reset(self) -> None: ...


@runtime_checkable
class MetricLearningProtocol(Protocol):
    """A metric-learning loss (tier 3): ``loss(embeddings (B, D), labels (B,))`` -> scalar array."""

    def __call__(self, embeddings: jax.Array, labels: jax.Array) -> jax.Array: ...


# ---------------------------------------------------------------------------------------
# An adapter: any metrix metric as a MetricProtocol
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PredictionMetric:
    """A metrix metric seen as a :class:`MetricProtocol`.

    ``PredictionMetric(mx.Accuracy(), predictions="logits", targets="labels")``:
    ``compute(p, t)`` is ``metric(**{predictions: p, targets: t})``; ``validate_inputs``
    checks that the leading (batch) axes agree and runs the metric's own input checks
    (shapes, dtypes) through ``jax.eval_shape``, without computing anything.
    """

    metric: Any
    predictions: str = "preds"
    targets: str = "targets"
    higher_is_better: bool = True
    name: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", type(self.metric).__name__)

    def _inputs(self, predictions, targets) -> dict[str, Any]:
        return {self.predictions: predictions, self.targets: targets}

    def validate_inputs(self, predictions, targets) -> None:
        p_shape, t_shape = getattr(predictions, "shape", ()), getattr(targets, "shape", ())
        if p_shape[:1] != t_shape[:1]:
            raise ValueError(
                f"{self.name}: predictions {tuple(p_shape)} and targets {tuple(t_shape)} have "
                "different batch sizes"
            )
        try:
            jax.eval_shape(
                lambda p, t: self.metric.get_state(**self._inputs(p, t)), predictions, targets
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.name}: inputs cannot be scored: {err}") from err

    def compute(self, predictions, targets) -> Any:
        return self.metric(**self._inputs(predictions, targets))


# ---------------------------------------------------------------------------------------
# Benchmark runner
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured: values, targets, pass/fail per target, timings."""

    name: str
    training: dict[str, float]
    evaluation: dict[str, float]
    targets: dict[str, float]
    passed: dict[str, bool]
    seconds: dict[str, float]

    @property
    def all_passed(self) -> bool:
        return all(self.passed.values())

    def table(self) -> str:
        """A plain-text table: phase, metric, value, target, status."""
        rows = [("phase", "metric", "value", "target", "status")]
        for phase, values in (("training", self.training), ("evaluation", self.evaluation)):
            for key, value in values.items():
                target = self.targets.get(key)
                status = "" if key not in self.passed else ("pass" if self.passed[key] else "FAIL")
                rows.append(
                    (phase, key, _fmt(value), "" if target is None else _fmt(target), status)
                )
        for key in self.targets:
            if key not in self.training and key not in self.evaluation:
                rows.append(("-", key, "missing", _fmt(self.targets[key]), "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        timing = ", ".join(f"{k} {v:.3f}s" for k, v in self.seconds.items())
        return f"{self.name}\n" + "\n".join(lines) + f"\n({timing})"

    def __str__(self) -> str:
        return self.table()


def _fmt(value: Any) -> str:
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return str(value)


def _meets(value: float, target: float, higher_is_better: bool) -> bool:
    value = float(value)
    if math.isnan(value):
        return False
    return value >= target if higher_is_better else value <= target


def run_benchmark(
    benchmark: BenchmarkProtocol,
    *,
    lower_is_better: tuple[str, ...] | list[str] = (),
    name: str | None = None,
    verbose: bool = False,
) -> BenchmarkResult:
    """Run ``setup``, ``run_training``, ``run_evaluation``, ``teardown`` and check the targets.

    A target is met when the metric (looked up in the evaluation values, then the training
    values) is ``>=`` it, or ``<=`` it for names in ``lower_is_better`` (losses, FID). A
    target without a value fails. ``teardown`` runs even when a phase raises. Returns a
    :class:`BenchmarkResult`; ``print(result)`` shows the table.
    """
    if not isinstance(benchmark, BenchmarkProtocol):
        missing = [
            m
            for m in (
                "setup",
                "run_training",
                "run_evaluation",
                "teardown",
                "get_performance_targets",
            )
            if not callable(getattr(benchmark, m, None))
        ]
        raise TypeError(
            f"run_benchmark needs a BenchmarkProtocol object; {type(benchmark).__name__} lacks {missing}"
        )
    seconds: dict[str, float] = {}

    def timed(phase, fn):
        start = time.perf_counter()
        out = fn()
        seconds[phase] = time.perf_counter() - start
        return out

    timed("setup", benchmark.setup)
    try:
        training = dict(timed("training", benchmark.run_training) or {})
        evaluation = dict(timed("evaluation", benchmark.run_evaluation) or {})
    finally:
        timed("teardown", benchmark.teardown)
    targets = dict(benchmark.get_performance_targets() or {})
    passed = {}
    for key, target in targets.items():
        value = evaluation.get(key, training.get(key))
        passed[key] = value is not None and _meets(value, target, key not in lower_is_better)
    result = BenchmarkResult(
        name=name or type(benchmark).__name__,
        training=training,
        evaluation=evaluation,
        targets=targets,
        passed=passed,
        seconds=seconds,
    )
    if verbose:
        print(result.table())
    return result
