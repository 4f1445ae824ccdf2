"""LPIPS throughput (image pairs per second): ``mx.LPIPS`` against the ``lpips`` package, on CPU.

Cases: LPIPS-alex and LPIPS-vgg at 64x64 and 256x256. Both sides use the same weights: the
lpips model is built with a random trunk (``pnet_rand=True``, no download) and the shipped
calibration, and its state dict is converted for metrix. Timed in one process, interleaved
(metrix, peer, metrix, peer, ...) so load on the machine hits every contender alike, each
call after a ``common.settle()`` pause (torch's OpenMP workers spin a few ms after a call):

- ``metrix``: ``metric.get_state(a, b, **weights)`` as users call it: the distances are one
  compiled program per shape (both image batches as one 2N batch, weights passed as inputs,
  compiled with ``lpips_core.LPIPS_CPU_COMPILER_OPTIONS[net]``), the state a second, tiny one;
  inputs are on the device already and the state stays there (no host transfer). The first
  call (compiles + one run) is reported as ``compile``;
- ``metrix in jit``: ``jax.jit(metric.get_state)``, i.e. LPIPS inlined into a user's own
  program, compiled with XLA's default CPU options;
- ``lpips (torch, N threads)``: ``model(a, b)`` under ``torch.no_grad()`` with torch's default
  thread count, and with ``torch.set_num_threads(1)`` (robust to load: torch's multi-threaded
  runs collapse when other processes hold the cores).

Prints pairs/s (median over ``--repeats`` timed rounds after a warm-up), metrix's ratio to
each torch peer (> 1: metrix is faster; the targets are ``metrix / lpips (torch, default
threads) >= 1``), the CPU seconds per pair (process time, less sensitive to load than wall
time), the load average, and the largest distance difference as a sanity check.
Run: ``python -m benchmarks.lpips [--repeats 7] [--cases alex64,vgg256]``.

Notes from profiling (jax 0.10.2, 2-core AVX-512 Xeon, CPU seconds so that load matters less):

- The network is ~95% convolutions, which run near the core's f32 peak (110-135 GFLOP/s per
  core, the same as torch's oneDNN with one thread); the LPIPS tail (normalise, difference,
  1x1 heads, means) is 7-10%; bias+ReLU, pooling and the input scaling the rest.
- XLA:CPU hands f32 convolutions to YNNPACK by default. XLA's own (Eigen) convolutions are
  faster on all three trunks (steady state, interleaved, ms per call: alex 64x64 x32 25.3 vs
  29.1, alex 256x256 x8 134 vs 158, squeeze 64x64 x32 37 vs 51, squeeze 256x256 x8 175 vs
  293; vgg 64x64 0.71 vs 0.78 s per 16 pairs) and give the same distances to ~1e-8: hence
  ``LPIPS_CPU_COMPILER_OPTIONS``. The largest single gap is AlexNet's 5x5 conv on 7x7 maps
  at 64x64 (Eigen 6.6 ms, YNNPACK 10.2 ms, torch/oneDNN 5.6 ms, 2 threads). An earlier
  measurement that favoured YNNPACK on AlexNet was taken under load. Keeping YNNPACK for
  convolutions or reductions only (``LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION``,
  ``..._REDUCE``) was as slow as the default. The oneDNN and XNNPACK
  switches (``xla_cpu_use_onednn``, ``xla_cpu_experimental_xnn_fusion_type``) do not claim
  convolutions in this jaxlib.
- Max pools are the elementwise max of strided slices, not ``reduce_window`` (which XLA:CPU
  ran as a separate, slower loop): whole programs 4-23% faster (alex 256x256 133 -> 123 ms,
  squeeze 64x64 37 -> 29 ms, vgg 64x64 334 -> 321 ms per call). Materialising each tap once
  (``optimization_barrier``) or normalising the 2N taps before splitting them did not help.
- ``precision=HIGHEST`` on convolutions and dots is a no-op for f32 on CPU (bit-identical
  outputs), so it costs nothing. Other kernel layouts (OIHW, ...) only add a transpose.
- Tried and dropped (slower in XLA here): Winograd F(2x2, 3x3) for the 3x3 convolutions
  (2.25x fewer multiplies, but its transforms are memory-bound: 0.7-2x the direct time),
  im2col + one matmul, space-to-depth for AlexNet's stride-4 first layer, zero-padding
  3-channel inputs to 4/8/16 channels, a fused ``sum(w * diff**2)`` tail (slower than the
  dot, which XLA keeps as a matrix-vector product).
- ``metric.get_state`` eagerly used to build the capacity buffer op by op (~3 ms, 6% of an
  alex 64x64 batch); that state step is now compiled too.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import types

import jax
import numpy as np

from benchmarks.common import settle
from metrix.backbones.lpips_nets import convert_torchvision_state_dict
from metrix.perceptual import lpips_math as lpips_core
from metrix.perceptual.lpips import LPIPS

# (net, image size, batch of pairs)
CASES = (("alex", 64, 32), ("alex", 256, 8), ("vgg", 64, 16), ("vgg", 256, 2))


def _import_lpips():
    import torch

    # torchvision's compiled ops do not load on every CPU torch; its pure-Python models do.
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    import lpips

    return torch, lpips


def _lpips_model(torch, lpips, net):
    def no_download(*args, **kwargs):
        raise RuntimeError("this benchmark runs offline: lpips tried to download weights")

    saved = torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file
    torch.hub.load_state_dict_from_url = torch.hub.download_url_to_file = no_download
    try:
        torch.manual_seed(0)
        return lpips.LPIPS(
            net=net, pretrained=True, pnet_rand=True, version="0.1", verbose=False
        ).eval()
    finally:
        torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file = saved


def _interleaved(runs: dict, repeats: int) -> dict:
    """Median wall and process (CPU) seconds per run, timed round-robin after one warm-up each."""
    for run in runs.values():
        run()
    wall = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            settle()  # the previous contender's idle threads must not share the cores
            c0, t0 = time.process_time(), time.perf_counter()
            run()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in runs}


def bench_case(torch, lpips, net: str, size: int, batch: int, repeats: int) -> dict:
    model = _lpips_model(torch, lpips, net)
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    b = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    a_nhwc = jax.device_put(a.numpy().transpose(0, 2, 3, 1))
    b_nhwc = jax.device_put(b.numpy().transpose(0, 2, 3, 1))

    metric = LPIPS(net=net, capacity=batch)
    weights = {
        "backbone_params": jax.device_put(convert_torchvision_state_dict(net, model.state_dict())),
        "calibration": jax.device_put(lpips_core.load_calibration(net)),
    }
    in_user_jit = jax.jit(metric.get_state)

    def run_metrix():
        return jax.block_until_ready(metric.get_state(a_nhwc, b_nhwc, **weights))

    def run_metrix_jit():
        return jax.block_until_ready(in_user_jit(a_nhwc, b_nhwc, **weights))

    t0 = time.perf_counter()
    state = run_metrix()
    compile_s = time.perf_counter() - t0
    run_metrix_jit()  # compiled here, not in the timed rounds

    default_threads = torch.get_num_threads()

    def run_torch():
        with torch.no_grad():
            return model(a, b)

    def run_torch_1():
        torch.set_num_threads(1)
        try:
            return run_torch()
        finally:
            torch.set_num_threads(default_threads)

    runs = {
        "metrix": run_metrix,
        "metrix in jit": run_metrix_jit,
        f"lpips (torch, {default_threads} threads)": run_torch,
        "lpips (torch, 1 thread)": run_torch_1,
    }
    load = os.getloadavg()[0]
    timed = _interleaved(runs, repeats)
    out = {"compile_s": compile_s, "load": (load + os.getloadavg()[0]) / 2}
    for name, (wall_s, cpu_s) in timed.items():
        out[name] = batch / wall_s
        out[f"{name} cpu s/pair"] = cpu_s / batch
    reference = run_torch().numpy().reshape(-1)
    out["max_abs_diff"] = float(np.abs(np.asarray(state.compute()["per_image"]) - reference).max())
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="LPIPS pairs/s: metrix vs the lpips package (CPU)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--cases",
        default=",".join(f"{n}{s}" for n, s, _ in CASES),
        help="comma-separated subset, e.g. alex64,vgg256",
    )
    args = parser.parse_args(argv)
    torch, lpips = _import_lpips()
    wanted = set(args.cases.split(","))
    print(
        f"# LPIPS on {platform.processor() or platform.machine()}, jax {jax.__version__} "
        f"({jax.default_backend()}), torch {torch.__version__}; pairs/s, median of {args.repeats}"
    )
    results = {}
    for net, size, batch in CASES:
        if f"{net}{size}" not in wanted:
            continue
        r = bench_case(torch, lpips, net, size, batch, args.repeats)
        results[f"{net}{size}"] = r
        peers = [k for k in r if k.startswith("lpips") and not k.endswith("pair")]
        line = f"{net:5s} {size:3d}x{size:<3d} batch {batch:2d}: metrix {r['metrix']:8.2f}/s"
        for peer in peers:
            line += f" | {peer} {r[peer]:8.2f}/s (metrix x{r['metrix'] / r[peer]:.2f})"
        line += f" | metrix in jit {r['metrix in jit']:8.2f}/s"
        print(line, flush=True)
        cpu = " | ".join(
            f"{k[: -len(' cpu s/pair')]} {1e3 * v:.2f}" for k, v in r.items() if k.endswith("pair")
        )
        print(
            f"      CPU ms/pair: {cpu} | compile {r['compile_s']:.1f}s | "
            f"max|diff| {r['max_abs_diff']:.1e} | load {r['load']:.1f}",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
