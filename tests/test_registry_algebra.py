"""The algebra, for every metric in the registry (new metrics are covered automatically).

- any split of the data into batches gives the same compute() (split-invariant metrics);
- merge is associative and ``empty()`` is its identity, with a real state's shapes/dtypes;
- eager equals ``jax.jit``; a mask equals filtering the masked rows out.
"""

import inspect

import chex
import jax
import numpy as np
import pytest

import metrix as mx
from tests.registry import all_examples, example_params

EXAMPLES = all_examples()
IDS = [e.name for e in EXAMPLES]
# Splits, merge algebra and masks: every metric class by default, its further configurations
# with `slow` (they share the state class, hence the merge, with the class's first example;
# eager-vs-jit below and the NaN edges keep every configuration by default).
ONCE_PER_CLASS = example_params(EXAMPLES, slow_variants=True)
N = 12


def _take(example, inputs, rows):
    return {k: (v[rows] if k in example.batched else v) for k, v in inputs.items()}


def _states(example, inputs, cuts):
    edges = sorted({0, N, *cuts})
    return [example.metric.get_state(**_take(example, inputs, slice(a, b))) for a, b in zip(edges[:-1], edges[1:])]


def _fold(states):
    out = states[0]
    for s in states[1:]:
        out = out.merge(s)
    return out


def _close(example, actual, expected):
    actual = jax.tree.map(np.asarray, actual)
    expected = jax.tree.map(np.asarray, expected)
    chex.assert_trees_all_equal_structs(actual, expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, e, rtol=example.rtol, atol=example.atol, equal_nan=True)


# Uneven splits drawn from few batch sizes (3, 4, 5), so each metric compiles few shapes;
# the hypothesis tests of tests/test_states.py explore arbitrary splits of the core states.
SPLITS = [(3, 7), (5, 8), (4, 8)]


def _splits_for(example):
    step = max(example.min_batch, 1)
    if step == 1:
        return SPLITS
    return [tuple(c // step * step for c in cuts if c // step * step not in (0, N)) for cuts in SPLITS]


@pytest.mark.parametrize("example", ONCE_PER_CLASS)
def test_any_split_gives_the_same_value(example):
    if not example.split_invariant:
        pytest.skip("value depends on the batching (e.g. pairs within a batch)")
    inputs = example.make_inputs(np.random.default_rng(0), N)
    whole = example.metric.get_state(**inputs).compute()
    for cuts in _splits_for(example):
        _close(example, _fold(_states(example, inputs, cuts)).compute(), whole)


@pytest.mark.parametrize("example", ONCE_PER_CLASS)
def test_merge_associative_with_empty_identity(example):
    inputs = example.make_inputs(np.random.default_rng(1), N)
    step = max(example.min_batch, 1)
    a, b, c = _states(example, inputs, [4 // step * step or step, 8 // step * step])
    _close(example, a.merge(b).merge(c).compute(), a.merge(b.merge(c)).compute())
    empty = example.metric.empty()
    chex.assert_trees_all_equal_shapes_and_dtypes(empty, a)
    _close(example, empty.merge(a).compute(), a.compute())
    _close(example, a.merge(empty).compute(), a.compute())


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_eager_equals_jit(example):
    inputs = example.make_inputs(np.random.default_rng(2), N)
    eager = example.metric.get_state(**inputs)
    jitted = jax.jit(lambda kw: example.metric.get_state(**kw))(inputs)
    chex.assert_trees_all_equal_shapes_and_dtypes(jitted, eager)
    _close(example, jitted.compute(), eager.compute())
    merged = jax.jit(lambda s, t: s.merge(t))(example.metric.empty(), jitted)
    _close(example, merged.compute(), eager.compute())


@pytest.mark.parametrize("example", ONCE_PER_CLASS)
def test_mask_equals_filtering(example):
    if example.mask_input is None or not example.split_invariant:
        pytest.skip("no example mask")
    inputs = example.make_inputs(np.random.default_rng(3), N)
    keep = np.array([i % 3 != 1 for i in range(N)])
    masked = example.metric.get_state(**inputs, **{example.mask_input: keep}).compute()
    filtered = example.metric.get_state(**_take(example, inputs, keep)).compute()
    _close(example, masked, filtered)


def _public_metric_classes():
    out = []
    for name in dir(mx):
        obj = getattr(mx, name)
        if inspect.isclass(obj) and issubclass(obj, mx.Metric) and not inspect.isabstract(obj):
            if obj.__module__.startswith("metrix") and "get_state" in {
                n for c in obj.__mro__ if c is not mx.Metric for n in vars(c)
            }:
                out.append(obj)
    return out


# Public metrics the generic examples (arrays split along axis 0) cannot feed, each with the
# tests that cover it instead.
NO_REGISTRY_EXAMPLE = {
    "NoopMetric": "takes any inputs, state and value empty: tests/compat/test_kauldron.py",
    "TreeMap": "inputs are pytrees of arrays: tests/compat/test_kauldron.py",
    "TreeReduce": "inputs are pytrees of arrays: tests/compat/test_kauldron.py",
    "SkipIfMissing": "reads a context whose paths may be missing: tests/compat/test_kauldron.py",
    "LpipsVgg": "LPIPS's maths on a VGG16 trunk (a random VGG per generic test costs minutes); "
    "LPIPS is in the registry, LpipsVgg's own options in tests/test_perceptual.py",
}


def test_every_public_metric_has_a_registry_example():
    covered = {type(e.metric) for e in EXAMPLES}
    missing = sorted(
        c.__name__ for c in _public_metric_classes()
        if not any(issubclass(k, c) for k in covered) and not getattr(c, "_abstract", False)
        and c.__name__ not in NO_REGISTRY_EXAMPLE
    )
    assert not missing, f"add registry examples (tests/registry/) for: {missing}"
