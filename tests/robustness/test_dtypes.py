"""Inputs of any float dtype accumulate in float32 with exact counts (docs/inputs.md).

Expected values are numpy float64 computations on the same (half-precision) values upcast,
so the only difference allowed is float32 rounding, never half-precision accumulation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.core import numerics

RNG = np.random.default_rng(0)
X = RNG.normal(size=1000).astype(np.float32)
Y = RNG.normal(size=1000).astype(np.float32)
HALF = [jnp.bfloat16, jnp.float16]


def _exact(x):
    """The half-precision values as float64 (what the metric must see)."""
    return np.asarray(jnp.asarray(x).astype(jnp.float32), np.float64)


@pytest.mark.parametrize("dtype", HALF)
def test_average_counts_every_half_precision_element(dtype):
    # bf16 counts stop at 256 / 4096 (float16 at 2048) when summed in their own dtype.
    assert mx.Average().get_state(values=jnp.ones(4097, dtype)).exact_count == 4097


def test_fp16_average_of_100000_values_is_not_nan():
    assert float(mx.Average()(values=jnp.full(100_000, 0.5, jnp.float16))) == 0.5


def test_fp16_sum_does_not_overflow_at_65504():
    assert float(mx.Sum()(values=jnp.ones(100_000, jnp.float16))) == 100_000


def test_fp16_std_of_1000_values_is_finite_and_right():
    x = jnp.asarray(X + 100, jnp.float16)
    np.testing.assert_allclose(float(mx.Std()(values=x)), np.std(_exact(x)), rtol=1e-4)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("jit", [False, True])
def test_sum_average_mse_mae_equal_float32_on_the_same_values(dtype, jit):
    x, y = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)
    xe, ye = _exact(x), _exact(y)
    cases = [
        (mx.Sum(), {"values": x}, xe.sum()),
        (mx.Average(), {"values": x}, xe.mean()),
        (mx.Average(), {"values": x, "weights": jnp.ones(1000, dtype)}, xe.mean()),
        (mx.MSE(), {"preds": x, "targets": y}, np.mean((xe - ye) ** 2)),
        (mx.MAE(), {"preds": x, "targets": y}, np.mean(np.abs(xe - ye))),
        (mx.L2(), {"preds": x, "targets": y}, np.mean((xe - ye) ** 2)),
        (mx.L1(), {"preds": x, "targets": y}, np.mean(np.abs(xe - ye))),
    ]
    for metric, inputs, expected in cases:
        state = jax.jit(metric.get_state)(**inputs) if jit else metric.get_state(**inputs)
        np.testing.assert_allclose(float(state.compute()), expected, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", HALF)
def test_softmax_cross_entropy_of_half_logits_is_computed_in_float32(dtype):
    logits = jnp.asarray(RNG.normal(size=(500, 5)), dtype)
    labels = RNG.integers(0, 5, 500)
    z = _exact(logits)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected = -log_p[np.arange(500), labels].mean()
    np.testing.assert_allclose(
        float(mx.SoftmaxCrossEntropy()(logits=logits, labels=labels)), expected, rtol=1e-6
    )


@pytest.mark.parametrize("dtype", HALF)
def test_states_of_half_inputs_have_the_dtypes_of_empty(dtype):
    x = jnp.asarray(X, dtype)
    for metric in (mx.Average(), mx.Sum(), mx.Std(), mx.Min(), mx.Max()):
        state = metric.get_state(values=x)
        for leaf, empty in zip(jax.tree.leaves(state), jax.tree.leaves(metric.empty())):
            assert leaf.dtype == empty.dtype == jnp.float32


def test_min_max_of_bf16_are_the_exact_float32_extremes():
    x = jnp.asarray(X, jnp.bfloat16)
    assert float(mx.Min()(values=x)) == _exact(x).min()
    assert float(mx.Max()(values=x)) == _exact(x).max()


def test_accumulation_dtype():
    assert numerics.accumulation_dtype(jnp.bfloat16) == jnp.float32
    assert numerics.accumulation_dtype(jnp.float16) == jnp.float32
    assert numerics.accumulation_dtype(jnp.int8) == jnp.float32
    assert numerics.accumulation_dtype(jnp.bool_) == jnp.float32
    assert numerics.accumulation_dtype(jnp.float32) == jnp.float32


def test_df_sum_is_exact_for_integers_past_2_24():
    n = 2**24 + 8
    assert numerics.df_to_python(numerics.df_sum(jnp.ones(n, jnp.int8))) == n
    # and matches a float64 sum of many floats to double-float accuracy per chunk
    x = RNG.normal(size=100_000).astype(np.float32)
    np.testing.assert_allclose(
        numerics.df_to_python(numerics.df_sum(x)), x.astype(np.float64).sum(), rtol=1e-6
    )


# -- int64 / float64 values that JAX (x64 off) cannot represent ---------------------------------


@pytest.fixture
def checked_inputs(monkeypatch):
    """Until metric.py calls it, apply the representability check where numpy becomes jax."""
    from metrix.core import inputs, metric

    convert = metric._as_jax
    monkeypatch.setattr(metric, "_as_jax", lambda v: convert(inputs.check_representable(v)))


@pytest.mark.parametrize(
    "metric, inputs",
    [
        (mx.Sum(), {"values": np.array([2**31, 2**32 + 5])}),
        (mx.Max(), {"values": np.array([2**40, 1])}),
        (mx.Average(), {"values": np.array([-(2**31) - 1], np.int64)}),
        (mx.Average(), {"values": np.array([2**33], np.uint64)}),
        (mx.Accuracy(), {"preds": np.array([0]), "labels": np.array([2**32])}),
        (mx.Sum(), {"values": np.array([1e39])}),
    ],
)
def test_unrepresentable_host_values_are_refused(checked_inputs, metric, inputs):
    if jax.config.jax_enable_x64:
        pytest.skip("representable with x64")
    with pytest.raises(ValueError, match=rf"^{type(metric).__name__}: argument .*(x64|float32)"):
        metric(**inputs)


def test_representable_host_values_pass_unchanged(checked_inputs):
    assert float(mx.Sum()(values=np.array([1, 2, 2**31 - 1]))) == np.float32(2**31 + 2)
    assert float(mx.Sum()(values=np.array([1e30, np.inf, np.nan]))) != 0  # inf/NaN: no refusal
    assert float(mx.Average()(values=np.array([3_000_000_000], np.uint32))) == 3e9


def test_python_ints_beyond_int32_already_raise():
    with pytest.raises(OverflowError):
        mx.Sum()(values=2**40)
