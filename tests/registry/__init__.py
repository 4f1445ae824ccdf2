"""A registry of every metric with example inputs, so generic tests cover new metrics.

Each domain adds a module in this package (``tests/registry/<domain>.py``) defining
``EXAMPLES: list[Example]``; :func:`all_examples` imports every module here. Generic tests
(property tests of the algebra, distributed equality) run over all of them, and a coverage
test checks that every public metric class in ``metrix`` has at least one example.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Example:
    """A metric and a way to make inputs for it.

    ``make_inputs(rng, n)`` returns the keyword inputs of ``get_state`` for ``n`` examples;
    every array in ``batched`` has ``n`` along axis 0 (the axis that batches, devices and
    hosts split). ``split_invariant`` is False for metrics whose value is not a function
    of the union of the data (e.g. a loss averaged per batch of pairs); for those, generic
    tests only compare merges of the same batches. ``mask_input`` names the input that
    masks examples (None if the metric has no mask).
    """

    name: str
    metric: Any
    make_inputs: Callable[[np.random.Generator, int], dict[str, Any]]
    batched: tuple[str, ...]
    split_invariant: bool = True
    mask_input: str | None = "mask"
    rtol: float = 1e-5
    atol: float = 1e-6
    min_batch: int = 1  # smallest batch the metric accepts (e.g. 2 for pair losses)


def all_examples() -> list[Example]:
    examples: list[Example] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        examples.extend(getattr(module, "EXAMPLES", []))
    return examples


def variant_names(examples: list[Example]) -> frozenset[str]:
    """Examples that are a further configuration of a metric class with an earlier example
    (``RocAuc_multiclass`` after ``RocAuc_binary``): 35 of 128 today."""
    seen, variants = set(), set()
    for example in examples:
        if type(example.metric) in seen:
            variants.add(example.name)
        seen.add(type(example.metric))
    return frozenset(variants)


def example_params(examples: list[Example], *, slow_variants: bool = False) -> list:
    """``pytest.param`` per example, ids its name; with ``slow_variants`` the variants (see
    :func:`variant_names`) are marked ``slow``: the default run checks every metric class
    once and the variants where their configuration changes the code path most (the
    split-invariance and eager-vs-jit tests keep them all); ``scripts/test.sh --all`` runs
    every example."""
    import pytest

    variants = variant_names(examples) if slow_variants else frozenset()
    return [
        pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.name in variants else [])
        for e in examples
    ]
