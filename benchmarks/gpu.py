"""GPU figures for FID compute and LPIPS, when a GPU is available (never required).

Run on a machine with a CUDA GPU, JAX with CUDA and (for the peers) CUDA torch:
``python -m benchmarks.gpu [--repeats 10] [--out FILE]``. Without a GPU it says so and exits 0.

- FID compute from 2048-d statistics (N=5000 rows per side, decaying-spectrum ReLU features):
  ``mx.frechet_distance`` (float32, jitted) on the GPU vs torchmetrics' eigvals method on the
  same GPU (torch, float64 as torchmetrics runs it) and scipy ``sqrtm`` on the host CPU
  (pytorch-fid's method); relative error against scipy float64 beside each.
- LPIPS pairs/second, alex and vgg at 64x64 and 256x256: ``mx.LPIPS.get_state`` on the GPU vs
  the ``lpips`` package on the same GPU, identical random trunk weights (``pnet_rand=True``)
  and the shipped calibration.

Timings: medians after warm-up, device synchronised (``block_until_ready`` /
``torch.cuda.synchronize``), metrix and peer interleaved round by round.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import time
import types

import numpy as np

D = 2048


def _gpu_name() -> str | None:
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    return gpus[0].device_kind if gpus else None


def _interleaved(runs: dict, repeats: int) -> dict:
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def _features(rng, n, shift, scale, basis):
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(D))
    z = rng.normal(size=(n, D)) * spectrum
    return np.maximum(z @ basis.T * scale + shift, 0)


def bench_fid(repeats: int, lines: list[str]) -> None:
    import jax
    import jax.numpy as jnp
    import scipy.linalg

    import metrix as mx

    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(D, D)))
    a = _features(rng, 5000, 0.3, 1.0, basis)
    b = _features(rng, 5000, 0.32, 1.05, basis)
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)

    def scipy_fid():
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)

    t0 = time.perf_counter()
    reference = scipy_fid()
    scipy_seconds = time.perf_counter() - t0
    args32 = [jax.device_put(jnp.asarray(v, jnp.float32)) for v in (mu1, s1, mu2, s2)]
    ours = jax.jit(functools.partial(mx.frechet_distance, precision="float32"))  # on the device
    runs = {"metrix float32 (GPU)": lambda: float(jax.block_until_ready(ours(*args32)))}
    try:
        import torch

        t_args = [torch.from_numpy(v).cuda() for v in (mu1, s1, mu2, s2)]

        def torchmetrics_eigvals():
            # torchmetrics' _compute_fid: eigenvalues of sigma1 @ sigma2 (general eig).
            m1, c1, m2, c2 = t_args
            eig = torch.linalg.eigvals(c1 @ c2)
            value = (m1 - m2).square().sum() + c1.trace() + c2.trace() - 2 * eig.sqrt().real.sum()
            torch.cuda.synchronize()
            return float(value)

        runs["torchmetrics eigvals (GPU, torch)"] = torchmetrics_eigvals
    except Exception as err:  # noqa: BLE001 - a peer that is missing is reported, not fatal
        lines.append(f"  (torch CUDA unavailable: {type(err).__name__}: {err})")
    seconds = _interleaved(runs, repeats)
    values = {name: run() for name, run in runs.items()}
    ours_s = seconds["metrix float32 (GPU)"]
    lines.append(f"FID compute from {D}-d statistics (N=5000 per side; FID = {reference:.6f}), median of {repeats}")
    lines.append(f"  {'scipy sqrtm (host CPU, 1 run)':38s} {scipy_seconds * 1e3:10.1f} ms   x{scipy_seconds / ours_s:8.1f} vs metrix   rel.err 0")
    for name, s in seconds.items():
        rel = abs(values[name] - reference) / abs(reference)
        lines.append(f"  {name:38s} {s * 1e3:10.1f} ms   x{s / ours_s:8.1f} vs metrix   rel.err {rel:.1e}")


def bench_lpips(repeats: int, lines: list[str]) -> None:
    import jax
    import torch

    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        if "torchvision" not in sys.modules:
            sys.modules.setdefault(name, types.ModuleType(name))
    import lpips

    from metrix.backbones.lpips_nets import convert_torchvision_state_dict
    from metrix.perceptual import lpips_math as lpips_core
    from metrix.perceptual.lpips import LPIPS

    lines.append(f"LPIPS pairs/s on the GPU, median of {repeats} (> 1: metrix faster)")
    for net, size, batch in (("alex", 64, 64), ("alex", 256, 32), ("vgg", 64, 64), ("vgg", 256, 16)):
        torch.manual_seed(0)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, version="0.1", verbose=False).eval()
        gen = torch.Generator().manual_seed(0)
        a = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
        b = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
        metric = LPIPS(net=net, capacity=batch)
        weights = {
            "backbone_params": jax.device_put(convert_torchvision_state_dict(net, model.state_dict())),
            "calibration": jax.device_put(lpips_core.load_calibration(net)),
        }
        a_j, b_j = (jax.device_put(x.numpy().transpose(0, 2, 3, 1)) for x in (a, b))
        model = model.cuda()
        a_t, b_t = a.cuda(), b.cuda()

        def run_metrix():
            return jax.block_until_ready(metric.get_state(a_j, b_j, **weights))

        def run_lpips():
            with torch.no_grad():
                out = model(a_t, b_t)
            torch.cuda.synchronize()
            return out

        seconds = _interleaved({"metrix": run_metrix, "lpips": run_lpips}, repeats)
        ours = np.asarray(run_metrix().compute()["per_image"])
        theirs = run_lpips().flatten().cpu().numpy()
        diff = f"  max|diff| {np.max(np.abs(ours - theirs)):.1e}"
        m, p = batch / seconds["metrix"], batch / seconds["lpips"]
        lines.append(f"  {net:5s} {size:4d}x{size:<4d} batch {batch:3d}: metrix {m:9.1f}/s | lpips (torch) {p:9.1f}/s | x{m / p:.2f}{diff}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--skip", nargs="*", default=[], choices=["fid", "lpips"])
    args = parser.parse_args(argv)
    import jax

    gpu = _gpu_name()
    if gpu is None:
        print("benchmarks.gpu: no GPU visible to JAX; nothing measured.")
        return 0
    lines = [f"device: {gpu} (jax {jax.__version__}), host {platform.machine()}, Python {platform.python_version()}"]
    if "fid" not in args.skip:
        bench_fid(args.repeats, lines)
    if "lpips" not in args.skip:
        try:
            bench_lpips(args.repeats, lines)
        except ImportError as err:
            lines.append(f"LPIPS: peer unavailable ({err})")
    text = "\n".join(lines)
    print(text)
    if args.out:  # e.g. benchmarks/RESULTS_GPU.md: written by this script, never by hand
        import datetime

        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.out, "w") as f:
            f.write(f"# GPU benchmark results\n\nGenerated by `python -m benchmarks.gpu --out {args.out}` "
                    f"on {stamp}.\n\n```\n{text}\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
