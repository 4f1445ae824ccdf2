"""Registry examples for the audio metrics: SNR, SI-SDR, SI-SNR on short random signals."""

import numpy as np

from metrix.audio import SISDR, SISNR, SNR
from tests.registry import Example

T = 32  # samples per signal: tiny, the generic tests compile many programs


def _signals(rng, n):
    targets = rng.normal(size=(n, T)) + 0.2
    preds = 0.9 * targets + rng.uniform(0.1, 1.0, size=(n, 1)) * rng.normal(size=(n, T))
    return {"preds": preds.astype(np.float32), "targets": targets.astype(np.float32)}


def _two_channels(rng, n):
    # (B, channels, time): every (b, c) is one example; the mask covers B.
    targets = rng.normal(size=(n, 2, T))
    preds = targets + 0.5 * rng.normal(size=(n, 2, T))
    return {"preds": preds.astype(np.float32), "targets": targets.astype(np.float32)}


def _example(name, cls, make, **config):
    metric = cls(preds="preds", targets="targets", mask="mask", **config)
    return Example(name, metric, make, ("preds", "targets"), rtol=1e-5, atol=1e-5)


EXAMPLES = [
    _example("SNR", SNR, _signals),
    _example("SNR_zero_mean_channels", SNR, _two_channels, zero_mean=True),
    _example("SISDR", SISDR, _signals),
    _example("SISNR_channels", SISNR, _two_channels),
]
