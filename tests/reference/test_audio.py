"""SNR, SI-SDR and SI-SNR against torchmetrics' functional audio metrics.

Per-example values (the pure functions) and the merged mean over uneven batches (eager and
jit, with masks over the example axes) equal torchmetrics run in float64 on the same values;
bf16 inputs are compared with torchmetrics on the bf16-rounded values cast to float64. The
eps edge cases (perfect prediction, silent target) are compared with torchmetrics in float32,
whose eps is the one metrix uses.
"""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.audio import SISDR, SISNR, SNR, si_sdr, si_snr, snr
from tests import helpers

N, T = 23, 257
SPLITS = (0, 6, 17, N)  # three uneven batches (two batch shapes: fewer compiles)
RTOL, ATOL = 1e-5, 1e-5


def _tma():
    # torchvision's compiled ops do not load on this CPU torch; its pure-Python parts do.
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("torchmetrics.functional.audio")


def _torch():
    return pytest.importorskip("torch")


# (metric class, config, pure function, torchmetrics function name, its kwargs)
CASES = {
    "snr": (SNR, {}, snr, "signal_noise_ratio", {}),
    "snr_zero_mean": (SNR, {"zero_mean": True}, snr, "signal_noise_ratio", {"zero_mean": True}),
    "sisdr": (SISDR, {}, si_sdr, "scale_invariant_signal_distortion_ratio", {}),
    "sisdr_zero_mean": (
        SISDR,
        {"zero_mean": True},
        si_sdr,
        "scale_invariant_signal_distortion_ratio",
        {"zero_mean": True},
    ),
    "sisnr": (SISNR, {}, si_snr, "scale_invariant_signal_noise_ratio", {}),
}


def make_data(shape=(N, T), seed=0, dtype=np.float32):
    """Targets with an offset (so zero_mean matters) and predictions at varied noise levels."""
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=shape) + 0.3
    level = rng.uniform(0.05, 2.0, size=shape[:-1] + (1,))
    preds = 0.8 * targets + level * rng.normal(size=shape) - 0.1
    mask = rng.uniform(size=shape[:1]) < 0.7
    return preds.astype(dtype), targets.astype(dtype), mask


def reference(case, preds, targets, torch_dtype="float64"):
    """torchmetrics' per-example values on ``preds`` / ``targets`` (numpy) as float64 numpy."""
    torch, tma = _torch(), _tma()
    *_, name, kwargs = CASES[case]
    dt = getattr(torch, torch_dtype)
    p = torch.tensor(np.asarray(preds, np.float64), dtype=dt)
    t = torch.tensor(np.asarray(targets, np.float64), dtype=dt)
    return getattr(tma, name)(p, t, **kwargs).double().numpy()


def _metric(case):
    cls, config, *_ = CASES[case]
    return cls(preds="preds", targets="targets", mask="mask", **config)


def _pure(case, preds, targets):
    _, config, fn, *_ = CASES[case]
    return fn(preds, targets, **config)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("shape", [(N, T), (4, 3, 64), (T,)])
def test_per_example_values_match_torchmetrics(case, shape):
    preds, targets, _ = make_data(shape, seed=1)
    got = _pure(case, jnp.asarray(preds), jnp.asarray(targets))
    assert got.shape == shape[:-1] and got.dtype == jnp.float32
    np.testing.assert_allclose(got, reference(case, preds, targets), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("jit, masked", [(False, True), (True, False), (True, True)])
def test_merged_mean_matches_torchmetrics(case, jit, masked):
    preds, targets, mask = make_data()
    mask = mask if masked else None
    value = helpers.merged(
        _metric(case), splits=SPLITS, jit=jit, preds=preds, targets=targets, mask=mask
    )
    per_example = reference(case, preds, targets)
    expected = per_example.mean() if mask is None else per_example[mask].mean()
    np.testing.assert_allclose(value, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "case, mask_shape",
    [("snr", "examples"), ("sisdr_zero_mean", "examples_and_channels"), ("sisnr", "none")],
)
def test_extra_leading_axes(case, mask_shape):
    """``(B, C, time)``: one example per (b, c); a mask covers ``(B,)`` or ``(B, C)``."""
    preds, targets, _ = make_data((N, 3, 64), seed=2)
    rng = np.random.default_rng(3)
    mask = {
        "examples": rng.uniform(size=(N,)) < 0.6,
        "examples_and_channels": rng.uniform(size=(N, 3)) < 0.6,
        "none": None,
    }[mask_shape]
    value = helpers.merged(
        _metric(case), splits=SPLITS, jit=True, preds=preds, targets=targets, mask=mask
    )
    per_example = reference(case, preds, targets)
    expected = per_example.mean() if mask is None else per_example[mask].mean()
    np.testing.assert_allclose(value, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "case, dtype", [(case, "bfloat16") for case in sorted(CASES)] + [("sisnr", "float16")]
)
def test_half_inputs_accumulate_in_float32(case, dtype):
    preds, targets, mask = make_data(seed=4)
    preds_h, targets_h = jnp.asarray(preds, dtype), jnp.asarray(targets, dtype)
    value = helpers.merged(
        _metric(case), splits=SPLITS, jit=True, preds=preds_h, targets=targets_h, mask=mask
    )
    # The reference sees the very values metrix saw (rounded to half), in float64.
    per_example = reference(
        case, np.asarray(preds_h, np.float64), np.asarray(targets_h, np.float64)
    )
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, per_example[mask].mean(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_eps_edge_cases_match_torchmetrics_float32(case):
    """Perfect prediction, silent target / prediction, both silent: finite, as torchmetrics."""
    rng = np.random.default_rng(5)
    signal = rng.normal(size=(T,)).astype(np.float32) + 0.5
    zero = np.zeros(T, np.float32)
    preds = np.stack([signal, signal, zero, zero, 2 * signal])
    targets = np.stack([signal, zero, signal, zero, signal])
    got = np.asarray(_pure(case, jnp.asarray(preds), jnp.asarray(targets)))
    expected = reference(case, preds, targets, torch_dtype="float32")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-4)
    one_shot = _metric(case)(preds=preds, targets=targets)
    np.testing.assert_allclose(one_shot, expected.mean(), rtol=RTOL, atol=1e-4)


def test_perfect_prediction_closed_form():
    """``10 log10((sum t^2 + eps) / eps)`` with float32's eps (no reference needed)."""
    t = np.linspace(-1.0, 1.0, 101, dtype=np.float32)
    eps = np.finfo(np.float32).eps
    expected = 10 * np.log10((np.sum(t.astype(np.float64) ** 2) + eps) / eps)
    np.testing.assert_allclose(snr(t, t), expected, rtol=1e-6)
    np.testing.assert_allclose(si_sdr(t, t), expected, rtol=1e-5)
    assert float(snr(np.zeros(4, np.float32), np.zeros(4, np.float32))) == 0.0


def test_masked_out_nan_changes_nothing_and_empty_is_nan():
    preds, targets, mask = make_data(seed=6)
    preds[~mask] = np.nan
    metric = _metric("sisnr")
    value = metric(preds=preds, targets=targets, mask=mask)
    expected = reference("sisnr", preds[mask], targets[mask]).mean()
    np.testing.assert_allclose(value, expected, rtol=RTOL, atol=ATOL)
    assert np.isnan(metric.empty().compute())
    assert np.isnan(metric(preds=preds, targets=targets, mask=np.zeros(N, bool)))


def test_mismatched_shapes_name_the_metric():
    preds, targets, _ = make_data()
    with pytest.raises(Exception, match="SNR"):
        SNR(preds="p", targets="t")(preds=preds, targets=targets[:, :-1])
    with pytest.raises(ValueError, match="one shape"):
        snr(preds, targets[:, :-1])


def test_integer_inputs_are_refused():
    with pytest.raises(mx.InputTypeError, match="SISDR"):
        SISDR(preds="p", targets="t")(preds=np.ones((2, 4), np.int32), targets=np.ones((2, 4)))


def test_mask_over_time_is_refused():
    preds, targets, _ = make_data()
    with pytest.raises(Exception, match="mask"):
        SNR(preds="p", targets="t", mask="m")(
            preds=preds, targets=targets, mask=np.ones(preds.shape, bool)
        )


def test_jit_of_one_shot_equals_eager():
    preds, targets, mask = make_data(seed=7)
    metric = _metric("sisdr")
    eager = metric(preds=preds, targets=targets, mask=mask)
    jitted = jax.jit(lambda p, t, m: metric(preds=p, targets=t, mask=m))(preds, targets, mask)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)
