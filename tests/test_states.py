"""The standard states against numpy, and the algebra (associativity, identity, splits)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metrix as mx
from metrix.core import numerics


def _splits(n, cuts):
    edges = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return list(zip(edges[:-1], edges[1:]))


def _fold(states):
    out = states[0]
    for s in states[1:]:
        out = out.merge(s)
    return out


class _Cov(mx.Metric):
    """A test metric whose state is MeanCovState (num_features for empty())."""

    x: mx.Key = mx.REQUIRED
    num_features: int = 3

    class State(mx.MeanCovState):
        pass

    def get_state(self, x):
        return self.State.from_rows(x)


class _Buf(mx.Metric):
    values: mx.Key = mx.REQUIRED
    mask: mx.Key | None = None
    capacity: int = 64
    item_shape: tuple = (2,)

    class State(mx.CollectState):
        pass

    def get_state(self, values, mask=None):
        return self.State.from_rows(capacity=self.capacity, mask=mask, values=values)


class _Hist(mx.Metric):
    values: mx.Key = mx.REQUIRED
    num_bins: int = 7

    class State(mx.HistogramState):
        pass

    def get_state(self, values):
        return self.State.from_values(values, num_bins=self.num_bins, low=-2.0, high=2.0)


# name -> (metric, reference(x) from numpy, data maker)
CASES = {
    "average": (mx.Average(values="v"), lambda x: np.mean(x), lambda r, n: r.normal(size=(n,)) * 3 + 50),
    "sum": (mx.Sum(values="v"), lambda x: np.sum(x), lambda r, n: r.normal(size=(n,))),
    # offset 1e3 with unit spread: float32 means carry ~eps*|mean|/std = 6e-5 relative error
    # into a merged std (the float32 floor of any Chan merge); the 1e6-offset case is below.
    "std": (mx.Std(values="v"), lambda x: np.std(x), lambda r, n: r.normal(size=(n,)) + 1e3),
    "min": (mx.Min(values="v"), lambda x: np.min(x), lambda r, n: r.normal(size=(n,))),
    "max": (mx.Max(values="v"), lambda x: np.max(x), lambda r, n: r.normal(size=(n,))),
    "cov": (_Cov(x="x"), lambda x: np.cov(x, rowvar=False), lambda r, n: r.normal(size=(n, 3)) + 100),
    "hist": (
        _Hist(values="v"),
        lambda x: np.histogram(np.clip(x, -2, 2), bins=7, range=(-2, 2))[0]
        - np.histogram(x[(x < -2) | (x > 2)].clip(-2, 2), bins=7, range=(-2, 2))[0],
        lambda r, n: r.normal(size=(n,)) * 1.5,
    ),
    "collect": (_Buf(values="v"), lambda x: x, lambda r, n: r.normal(size=(n, 2))),
}


def _value(metric, state):
    out = state.compute()
    if isinstance(metric, _Cov):
        return np.asarray(out["covariance"])
    if isinstance(metric, _Buf):
        return state.rows()["values"]
    return np.asarray(out)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 40), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_any_split_gives_the_reference(name, seed, n, cuts):
    metric, reference, make = CASES[name]
    x = make(np.random.default_rng(seed), n).astype(np.float32)
    states = [metric.get_state(x[a:b]) for a, b in _splits(n, cuts)]
    merged = _fold(states)
    expected = reference(x.astype(np.float64))
    rtol = 2e-4 if name == "std" else 2e-5
    np.testing.assert_allclose(_value(metric, merged), expected, rtol=rtol, atol=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), sizes=st.tuples(*[st.integers(0, 9)] * 3))
def test_merge_is_associative_and_empty_is_identity(name, seed, sizes):
    metric, _, make = CASES[name]
    rng = np.random.default_rng(seed)
    a, b, c = (metric.get_state(make(rng, k).astype(np.float32)) for k in sizes)
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    chex.assert_trees_all_close(_value(metric, left), _value(metric, right), rtol=1e-5, atol=1e-4)
    e = metric.empty()
    chex.assert_trees_all_equal_shapes_and_dtypes(e, a)
    for s in (a, b):
        chex.assert_trees_all_close(_value(metric, e.merge(s)), _value(metric, s), rtol=1e-6, atol=1e-6)
        chex.assert_trees_all_close(_value(metric, s.merge(e)), _value(metric, s), rtol=1e-6, atol=1e-6)
        chex.assert_trees_all_close(
            _value(metric, s.empty_like().merge(s)), _value(metric, s), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_eager_equals_jit(name):
    metric, _, make = CASES[name]
    rng = np.random.default_rng(0)
    x1, x2 = make(rng, 11).astype(np.float32), make(rng, 11).astype(np.float32)
    eager = metric.get_state(x1).merge(metric.get_state(x2))

    @jax.jit
    def step(carry, x):
        return carry.merge(metric.get_state(x))

    jitted = step(step(metric.empty(), x1), x2)
    chex.assert_trees_all_close(_value(metric, jitted), _value(metric, eager), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty_never_retraces_a_jitted_merge(name):
    metric, _, make = CASES[name]
    x = make(np.random.default_rng(1), 5).astype(np.float32)
    chex.clear_trace_counter()  # chex counts per code object, across parametrisations

    @jax.jit
    @chex.assert_max_traces(n=1)
    def merge(a, b):
        return a.merge(b)

    real = metric.get_state(x)
    merge(real, real)
    merge(metric.empty(), real)
    merge(real.empty_like(), metric.empty())


def test_average_counts_exact_past_2_pow_25():
    avg = mx.Average(values="v")
    get = jax.jit(avg.get_state)
    batch = jnp.full((2**20,), 0.75, jnp.float32)
    state = avg.empty()
    for _ in range(32):
        state = state.merge(get(batch))
    state = state.merge(get(jnp.full((1,), 0.75, jnp.float32)))
    assert state.exact_count == 2**25 + 1
    assert numerics.df_to_python(state.total) == 0.75 * (2**25 + 1)
    assert float(state.compute()) == 0.75


def test_average_counts_exact_past_2_pow_31():
    avg = mx.Average(values="v")
    batch = avg.get_state(jnp.full((2**24,), 1.5, jnp.float32))
    state = batch
    for _ in range(7):  # the same batch 2^7 times: 2^31 elements
        state = state.merge(state)
    state = state.merge(batch).merge(avg.get_state(jnp.array([1.5])))
    n = 2**31 + 2**24 + 1
    assert state.exact_count == n
    assert numerics.df_to_python(state.total) == 1.5 * n
    assert float(state.compute()) == 1.5
    # an int32 counter would have wrapped; a float32 one would read 2^31 + 2^24 exactly
    assert int(np.float32(n)) != n


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_std_large_offset_float32(offset):
    x = np.array([offset + 1, offset + 2, offset + 3], np.float32)
    expected = np.std(np.array([1.0, 2.0, 3.0]))  # 0.8164966
    std = mx.Std(values="v")
    np.testing.assert_allclose(std(x), expected, rtol=1e-5)
    # fed one element at a time (the worst case for naive sum-of-squares)
    state = _fold([std.get_state(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(state.compute(), expected, rtol=1e-5)
    np.testing.assert_allclose(state.mean, offset + 2, rtol=1e-7)


def test_welford_statistics_match_flax_nnx_doc_values():
    s = mx.Std(values="v").get_state(jnp.array([1, 2, 3, 4]))
    np.testing.assert_allclose(s.mean, 2.5)
    np.testing.assert_allclose(s.sem(), 0.559017, rtol=1e-6)
    np.testing.assert_allclose(s.std(), 1.118034, rtol=1e-6)
    s = s.merge(mx.Std(values="v").get_state(jnp.array([3, 2, 1, 0])))
    np.testing.assert_allclose(s.mean, 2.0)
    np.testing.assert_allclose(s.sem(), 0.43301272, rtol=1e-6)
    np.testing.assert_allclose(s.std(), 1.2247449, rtol=1e-6)


def test_mean_cov_matches_numpy_with_large_offset():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 4)) + 1e3).astype(np.float32)
    metric = _Cov(x="x", num_features=4)
    state = _fold([metric.get_state(x[a:b]) for a, b in [(0, 7), (7, 300), (300, 500)]])
    np.testing.assert_allclose(state.covariance(), np.cov(x.astype(np.float64), rowvar=False), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(state.mean, x.astype(np.float64).mean(0), rtol=1e-6)


def test_last_state_keeps_latest_nonempty():
    a = mx.LastState.from_value(jnp.array(1.0))
    b = mx.LastState.from_value(jnp.array(2.0))
    empty = a.empty_like()
    assert float(a.merge(b).compute()) == 2.0
    assert float(a.merge(b).merge(empty).compute()) == 2.0
    assert float(empty.merge(a).compute()) == 1.0


def test_histogram_counts_out_of_range_and_nan_apart():
    h = _Hist(values="v")
    s = h.get_state(jnp.array([-3.0, -2.0, 0.0, 2.0, 5.0, jnp.nan]))
    assert numerics.df_to_python(s.below) == 1
    assert numerics.df_to_python(s.above) == 1
    assert numerics.df_to_python(s.nan) == 1
    assert float(s.compute().sum()) == 3.0
    np.testing.assert_array_equal(s.compute(), np.histogram([-2.0, 0.0, 2.0], bins=7, range=(-2, 2))[0])
