"""SNR, SI-SDR and SI-SNR over a batch of signals: metrix against torchmetrics, same run.

The data: ``--batch`` x ``--samples`` float32 signals (default 64 x 16,000: one second of 16
kHz audio each), predictions the targets plus noise at varied levels. Timed, medians over
rounds in a rotated order (as ``benchmarks.common.interleaved_medians``, with a ``settle()``
pause before each call), each call the batch mean in dB:

* ``torchmetrics``: ``signal_noise_ratio`` / ``scale_invariant_signal_distortion_ratio`` /
  ``scale_invariant_signal_noise_ratio`` (functional) on CPU tensors, then ``.mean()``
  (the peer);
* ``metrix one-shot``: ``SNR(...)(preds, targets)`` etc. on device arrays: ``get_state`` (one
  cached compiled program) and ``compute()`` of the exact mean;
* ``metrix jit step``: a jitted ``get_state`` merged into a running state, what an eval loop
  pays per batch.

Values are checked before any time is trusted (``DISAGREES:`` lines otherwise). Ratios are
metrix / peer (below 1: metrix is faster). Run ``python -m benchmarks.audio``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import types

import jax
import numpy as np

from benchmarks.common import load, row, settle
from metrix.audio import SISDR, SISNR, SNR

CASES = (  # name, metric class, torchmetrics function name
    ("snr", SNR, "signal_noise_ratio"),
    ("si_sdr", SISDR, "scale_invariant_signal_distortion_ratio"),
    ("si_snr", SISNR, "scale_invariant_signal_noise_ratio"),
)


def make_data(batch: int, samples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=(batch, samples)).astype(np.float32)
    level = rng.uniform(0.05, 1.0, size=(batch, 1)).astype(np.float32)
    preds = targets + level * rng.normal(size=(batch, samples)).astype(np.float32)
    return preds, targets


def _torchmetrics():
    try:
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules.setdefault(name, types.ModuleType(name))
        import torch
        import torchmetrics.functional.audio as tma
    except Exception:  # noqa: BLE001 - an optional peer
        return None, None
    return torch, tma


def _interleaved_settled(runs: dict, repeats: int) -> dict[str, float]:
    """``interleaved_medians``' rotated rounds, with a ``settle()`` pause (untimed) before each
    call: torch's OpenMP workers spin after a call and would slow whoever runs next."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            settle()
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    preds, targets = make_data(args.batch, args.samples)
    print(
        f"# SNR / SI-SDR / SI-SNR over {args.batch} x {args.samples:,} float32 samples; "
        f"{platform.processor() or platform.machine()}, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, repeats={args.repeats} (median); load {load()} "
        "(shared machine: noisy)"
    )
    torch, tma = _torchmetrics()
    p_dev, t_dev = jax.device_put(preds), jax.device_put(targets)
    rows = []
    for name, cls, tm_name in CASES:
        metric = cls(preds="preds", targets="targets")
        step = jax.jit(lambda s, p, t, metric=metric: s.merge(metric.get_state(p, t)))
        start = metric.empty()
        runs = {
            "metrix one-shot": lambda metric=metric: jax.block_until_ready(metric(p_dev, t_dev)),
            "metrix jit step": lambda step=step, start=start: jax.block_until_ready(
                step(start, p_dev, t_dev)
            ),
        }
        values = {
            "metrix one-shot": float(runs["metrix one-shot"]()),
            "metrix jit step": float(runs["metrix jit step"]().compute()),
        }
        peer = None
        if tma is not None:
            peer = "torchmetrics"
            tp, tt = torch.from_numpy(preds), torch.from_numpy(targets)
            fn = getattr(tma, tm_name)
            runs[peer] = lambda fn=fn, tp=tp, tt=tt: fn(tp, tt).mean()
            values[peer] = float(runs[peer]())
        times = _interleaved_settled(runs, args.repeats)
        for k, v in values.items():
            if peer is not None and abs(v - values[peer]) > 1e-3:
                print(f"DISAGREES: {name} {k} {v!r} vs {peer} {values[peer]!r}")
        for k in runs:
            ratio = "" if peer is None or k == peer else f"  ratio {times[k] / times[peer]:.3f}"
            print(f"{name}: {k:<18} {times[k] * 1e3:9.2f} ms  (value {values[k]:.5f} dB){ratio}")
            rows.append(row(f"{name}/{k}", times[k], "s"))
        if peer is None:
            print(f"{name}: torchmetrics       not installed")
            rows.append(row(f"{name}/torchmetrics", None, "s", note="not installed"))
    return rows


if __name__ == "__main__":
    main()
