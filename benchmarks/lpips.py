"""LPIPS throughput (image pairs per second): ``mx.LPIPS`` against the ``lpips`` package, on CPU.

Cases: LPIPS-alex and LPIPS-vgg at 64x64 and 256x256. Both sides use the same weights: the
lpips model is built with a random trunk (``pnet_rand=True``, no download) and the shipped
calibration, and its state dict is converted for metrix. Compared in one run on this CPU:

- ``metrix``: ``jax.jit(metric.get_state)`` on one batch (default XLA threads), weights passed
  as inputs; the first call's time (compile + one run) is reported apart as ``compile``;
- ``lpips (torch, N threads)``: ``model(a, b)`` under ``torch.no_grad()`` with torch's default
  thread count, and with ``torch.set_num_threads(1)``.

Prints the median over ``--repeats`` timed runs after a warm-up, and metrix's speed ratio to
each peer (> 1: metrix is faster). A sanity check prints the largest distance difference.
The vgg 256x256 compile alone takes ~35 s. Run: ``python -m benchmarks.lpips [--repeats 5]``.
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

from metrix import lpips_core
from metrix.backbones.lpips_nets import convert_torchvision_state_dict
from metrix.perceptual import LPIPS

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


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    step = jax.jit(metric.get_state)

    def run_metrix():
        return jax.block_until_ready(step(a_nhwc, b_nhwc, **weights))

    t0 = time.perf_counter()
    state = run_metrix()
    compile_s = time.perf_counter() - t0
    out = {"compile_s": compile_s, "metrix": batch / _median_seconds(run_metrix, repeats)}

    def run_torch():
        with torch.no_grad():
            return model(a, b)

    default_threads = torch.get_num_threads()
    out[f"lpips (torch, {default_threads} threads)"] = batch / _median_seconds(run_torch, repeats)
    torch.set_num_threads(1)
    try:
        out["lpips (torch, 1 thread)"] = batch / _median_seconds(run_torch, repeats)
    finally:
        torch.set_num_threads(default_threads)
    reference = run_torch().numpy().reshape(-1)
    out["max_abs_diff"] = float(np.abs(np.asarray(state.compute()["per_image"]) - reference).max())
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="LPIPS pairs/s: metrix vs the lpips package (CPU)")
    parser.add_argument("--repeats", type=int, default=5)
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
        peers = [k for k in r if k.startswith("lpips")]
        line = f"{net:5s} {size:3d}x{size:<3d} batch {batch:2d}: metrix {r['metrix']:8.2f}/s"
        for peer in peers:
            line += f" | {peer} {r[peer]:8.2f}/s (metrix x{r['metrix'] / r[peer]:.2f})"
        line += f" | compile {r['compile_s']:.1f}s | max|diff| {r['max_abs_diff']:.1e}"
        print(line, flush=True)
    return results


if __name__ == "__main__":
    main()
