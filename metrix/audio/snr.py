"""Signal-to-noise ratios of audio: SNR, scale-invariant SDR and scale-invariant SNR, in dB.

Each metric scores every example (a signal over the last axis, ``(..., time)``) and averages
the per-example dB values over the examples of every batch: the state is an exact
:class:`~metrix.core.states.AverageState` (double-float sum of dB values and count), so any
split into batches, devices or hosts gives the same mean.

Numerics. Whatever the input dtype, the per-example sums are taken in float32 or better
(``promote_types(dtype, float32)``: bf16 / fp16 are upcast first, float64 stays float64).
``eps`` is the machine epsilon of that compute dtype (``1.1920929e-07`` for float32), added to
every numerator and denominator as torchmetrics does with ``finfo(preds.dtype).eps``; so for
float32 and float64 inputs the values equal torchmetrics'. (torchmetrics on bf16 / fp16 would
use their much larger eps and half-precision sums; metrix does not.) The eps keeps every value
finite: a perfect prediction gives ``10 log10((sum t^2 + eps) / eps)`` (about
``10 log10(sum t^2) + 69.2`` dB in float32), a silent target with a non-silent prediction
``10 log10(eps / (sum p^2 + eps))`` (very negative), and silence against silence 0 dB.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, Shaped

from metrix.core.keys import REQUIRED, Key
from metrix.core.metric import Metric
from metrix.core.states import AverageState


def _prepare(preds, targets, zero_mean: bool):
    preds, targets = jnp.asarray(preds), jnp.asarray(targets)
    if preds.shape != targets.shape or preds.ndim < 1:
        raise ValueError(
            f"preds {preds.shape} and targets {targets.shape} must have one shape (..., time)"
        )
    dtype = jnp.promote_types(jnp.promote_types(preds.dtype, targets.dtype), jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"preds and targets must be float arrays, got {preds.dtype}")
    preds, targets = preds.astype(dtype), targets.astype(dtype)
    if zero_mean:
        preds = preds - jnp.mean(preds, axis=-1, keepdims=True)
        targets = targets - jnp.mean(targets, axis=-1, keepdims=True)
    return preds, targets, jnp.finfo(dtype).eps


def _power(x, **kwargs):
    return jnp.sum(jnp.square(x), axis=-1, **kwargs)


def snr(preds, targets, zero_mean: bool = False):
    """Signal-to-noise ratio per example, in dB: ``(...,)`` from ``(..., time)``.

    ``SNR = 10 log10((sum t^2 + eps) / (sum (t - p)^2 + eps))`` over the last axis; with
    ``zero_mean`` both signals are centred first. ``eps`` is the compute dtype's machine
    epsilon (see the module docstring); sums are float32 or better.
    """
    preds, targets, eps = _prepare(preds, targets, zero_mean)
    return 10 * jnp.log10((_power(targets) + eps) / (_power(targets - preds) + eps))


def si_sdr(preds, targets, zero_mean: bool = False):
    """Scale-invariant signal-to-distortion ratio per example, in dB.

    With ``a = (sum p t + eps) / (sum t^2 + eps)`` the optimal scaling of the target,
    ``SI-SDR = 10 log10((sum (a t)^2 + eps) / (sum (a t - p)^2 + eps))`` over the last axis
    (``zero_mean`` centres both signals first). The noise ``a t - p`` is formed sample by
    sample (no expanded quadratic, which would cancel catastrophically near a perfect match).
    """
    preds, targets, eps = _prepare(preds, targets, zero_mean)
    alpha = (jnp.sum(preds * targets, axis=-1, keepdims=True) + eps) / (
        _power(targets, keepdims=True) + eps
    )
    scaled = alpha * targets
    return 10 * jnp.log10((_power(scaled) + eps) / (_power(scaled - preds) + eps))


def si_snr(preds, targets):
    """Scale-invariant signal-to-noise ratio per example, in dB: ``si_sdr(..., zero_mean=True)``."""
    return si_sdr(preds, targets, zero_mean=True)


class _SignalRatio(Metric):
    """Mean over examples of a per-example ratio in dB (exact mergeable mean)."""

    preds: Key = REQUIRED
    targets: Key = REQUIRED
    mask: Key | None = None

    State = AverageState
    eager_compile = True  # one compiled program per (metric, shapes): no op-by-op dispatch

    def ratios(self, preds, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_state(
        self,
        preds: Float[Array, "*b t"],
        targets: Float[Array, "*b t"],
        mask: Shaped[Array, "*m"] | None = None,
    ) -> State:
        # The mask covers the example axes (leading axes of preds.shape[:-1]), never time.
        return self.State.from_values(self.ratios(preds, targets), mask=mask)


class SNR(_SignalRatio):
    """Signal-to-noise ratio in dB, averaged over examples (torchmetrics ``signal_noise_ratio``).

    ``mean_examples 10 log10((sum_t t^2 + eps) / (sum_t (t - p)^2 + eps))``, see :func:`snr`.
    Inputs: ``preds`` and ``targets`` float ``(..., time)`` of one shape; ``mask`` (optional,
    bool) over the leading example axes ``(...)`` or a prefix of them. ``zero_mean`` centres
    each signal first. Returns a float32 scalar in dB (higher is better); NaN for no examples.
    Everything runs on device and is jit-able.
    """

    zero_mean: bool = False

    def ratios(self, preds, targets):
        return snr(preds, targets, self.zero_mean)


class SISDR(_SignalRatio):
    """Scale-invariant SDR in dB, averaged over examples (torchmetrics
    ``scale_invariant_signal_distortion_ratio``).

    ``mean_examples 10 log10((|a t|^2 + eps) / (|a t - p|^2 + eps))`` with
    ``a = (<p, t> + eps) / (|t|^2 + eps)``, see :func:`si_sdr`. Inputs as :class:`SNR`
    (``(..., time)`` floats, ``mask`` over example axes); ``zero_mean`` centres each signal
    first. Returns a float32 scalar in dB; NaN for no examples. jit-able.
    """

    zero_mean: bool = False

    def ratios(self, preds, targets):
        return si_sdr(preds, targets, self.zero_mean)


class SISNR(_SignalRatio):
    """Scale-invariant SNR in dB, averaged over examples: :class:`SISDR` with ``zero_mean=True``
    (torchmetrics ``scale_invariant_signal_noise_ratio``).

    Inputs as :class:`SNR`: ``preds``, ``targets`` float ``(..., time)``, ``mask`` over the
    example axes. Returns a float32 scalar in dB; NaN for no examples. jit-able.
    """

    def ratios(self, preds, targets):
        return si_snr(preds, targets)


__all__ = ["SISDR", "SISNR", "SNR", "si_sdr", "si_snr", "snr"]
