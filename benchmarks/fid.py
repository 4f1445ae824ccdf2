"""FID speed and accuracy against scipy ``sqrtm`` (pytorch-fid / clean-fid) and torchmetrics.

Two measurements, every peer timed in this one process on the same CPU, medians over
repeats after a warm-up:

1. ``compute`` from 2048-d statistics: metrix's default (float64 on the host: pivoted
   Cholesky of one covariance, ``M = L^T S2 L``, eigenvalues only) and its float32 option
   (jitted JAX: Cholesky factors, singular values of ``L1^T L2``) vs
   ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` (pytorch-fid's ``calculate_frechet_distance``
   core) vs torchmetrics' ``_compute_fid`` (``torch.linalg.eigvals(sigma1 @ sigma2)``,
   float64). Runs are interleaved (A, B, C, A, B, C, ...) and the load average is printed;
   the table is printed twice, with the default threads and with BLAS/LAPACK and torch
   capped at 1 thread (a reference that a loaded machine distorts less). The relative
   error of each against the float64 scipy value is printed too, and the two target
   ratios (>= 30x scipy ``sqrtm``, >= 2x torchmetrics).
2. accumulating N x 2048 features (default N = 50,000, batches of 1,000): a jitted
   ``FID`` state merge vs torchmetrics' ``FrechetInceptionDistance(feature=identity)``
   ``update`` (float64 sums of x and x^T x).

Run: ``python -m benchmarks.fid [--repeats 3] [--sqrtm-repeats 1] [--rows 50000] [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types

import numpy as np

D = 2048


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _features(rng, n, shift, scale, basis):
    """Non-negative features with a decaying spectrum, like Inception pool3 activations."""
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(D))
    z = rng.normal(size=(n, D)).astype(np.float32) * spectrum.astype(np.float32)
    return np.maximum(z @ basis.T.astype(np.float32) * scale + shift, 0).astype(np.float32)


SQRTM = "scipy sqrtm (pytorch-fid)"
TORCHMETRICS = "torchmetrics _compute_fid (eigvals)"
OURS = "metrix float64 (default; Cholesky+eigvalsh)"


def _torch(quiet: bool = False):
    try:
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules.setdefault(name, types.ModuleType(name))
        import torch
        import torchmetrics.image.fid as tm_fid
    except (ImportError, RuntimeError) as err:  # pragma: no cover - optional peer
        if not quiet:
            print(f"(torchmetrics unavailable: {err})")
        return None, None
    return torch, tm_fid


def _interleaved_medians(fns: dict, repeats: int, slow: dict | None = None):
    """Median seconds and value of each callable, run in turns (A, B, C, A, B, C, ...)
    after a warm-up of each, so a change of machine load hits all of them alike. ``slow``:
    callables run only that many times, without a warm-up (scipy ``sqrtm`` compiles
    nothing and takes seconds)."""
    slow = slow or {}
    values = {name: fn() for name, fn in fns.items() if name not in slow}
    times = {name: [] for name in fns}
    for rep in range(repeats):
        for name, fn in fns.items():
            if rep >= slow.get(name, repeats):
                continue
            start = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}, values


def _thread_limit(threads: int | None):
    """A context that caps the BLAS/LAPACK (numpy, scipy) and torch threads, or does nothing."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    try:
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(threads))
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        print("(threadpoolctl unavailable: BLAS threads not capped)")
    torch, _ = _torch(quiet=True)
    if torch is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        stack.callback(torch.set_num_threads, previous)
    return stack


def bench_compute(basis, repeats: int, sqrtm_repeats: int, threads: int | None = None):
    """Time and relative error of each FID formula on the same 2048-d statistics."""
    import os

    import jax
    import jax.numpy as jnp
    import scipy.linalg

    from metrix.generative import frechet_distance

    rng = np.random.default_rng(1)  # the same statistics on every call
    a = _features(rng, 5000, 0.3, 1.0, basis).astype(np.float64)
    b = _features(rng, 5000, 0.32, 1.05, basis).astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    n = dict(num_samples1=len(a), num_samples2=len(b))

    def scipy_fid():
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        return float(
            ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
        )

    f32_args = [jnp.asarray(v, jnp.float32) for v in (mu1, s1, mu2, s2)]
    ours32 = jax.jit(lambda *args: frechet_distance(*args, precision="float32", **n))

    def ours_f32():
        return float(jax.block_until_ready(ours32(*f32_args)))

    def ours_f64():  # the default: float64 on the host, from the float64 statistics
        return float(frechet_distance(mu1, s1, mu2, s2, **n))

    fns = {SQRTM: scipy_fid}
    torch, tm_fid = _torch()
    if tm_fid is not None:
        t_args = [torch.from_numpy(v) for v in (mu1, s1, mu2, s2)]

        def tm():
            return float(tm_fid._compute_fid(*t_args))

        fns[TORCHMETRICS] = tm
    fns[OURS] = ours_f64
    fns["metrix float32 option (jit, Cholesky+svd)"] = ours_f32
    with _thread_limit(threads):
        load = os.getloadavg()[0]
        seconds, values = _interleaved_medians(fns, repeats, slow={SQRTM: max(1, sqrtm_repeats)})
        load = max(load, os.getloadavg()[0])
    reference = values[SQRTM]
    label = "default threads" if threads is None else f"{threads} BLAS/torch thread(s)"
    tag = "" if threads is None else f"[{threads} thread] "
    print(
        f"FID compute from {D}-d statistics (N=5000 per side; FID = {reference:.6f}); "
        f"{label}, load average {load:.1f}"
    )
    ours = seconds[OURS]
    for name in fns:
        rel = abs(values[name] - reference) / abs(reference)
        print(
            f"  {tag + name:48s} {seconds[name] * 1e3:10.1f} ms   x{seconds[name] / ours:7.2f} vs metrix"
            f"   rel.err {rel:.2e}"
        )
    for peer, target in ((SQRTM, 30), (TORCHMETRICS, 2)):
        if peer in seconds:
            print(
                f"  {tag}target: metrix default >= {target}x faster than {peer}: "
                f"x{seconds[peer] / ours:.2f}"
            )
    return seconds


def bench_accumulate(rng, basis, repeats: int, num_rows: int, batch: int = 1000) -> None:
    import jax

    import metrix as mx

    features = _features(rng, num_rows, 0.3, 1.0, basis)
    batches = [features[i : i + batch] for i in range(0, num_rows, batch)]
    metric = mx.FID(num_features=D)
    step = jax.jit(lambda s, x: s.merge(metric.get_state(real=x)))
    device_batches = [jax.device_put(x) for x in batches]

    def ours():
        state = metric.empty()
        for x in device_batches:
            state = step(state, x)
        jax.block_until_ready(state)

    rows = [("metrix FID (jit, Chan merge, f32)", _median_time(ours, repeats))]
    torch, tm_fid = _torch()
    if tm_fid is not None:

        class Identity(torch.nn.Module):
            num_features = D

            def forward(self, x):
                return x

        torch_batches = [torch.from_numpy(x) for x in batches]

        def tm():
            fid = tm_fid.FrechetInceptionDistance(feature=Identity(), reset_real_features=True)
            for x in torch_batches:
                fid.update(x, real=True)

        rows.append(("torchmetrics FID.update (f64 sums)", _median_time(tm, repeats)))
    ours_time = rows[0][1]
    print(f"Accumulating {num_rows} x {D} features in batches of {batch}")
    for name, seconds in rows:
        print(
            f"  {name:38s} {seconds:8.2f} s   {num_rows / seconds:10.0f} rows/s   x{seconds / ours_time:5.2f} vs metrix"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sqrtm-repeats", type=int, default=1, help="scipy sqrtm is slow; default 1"
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="cap BLAS and torch threads for the compute benchmark (default: also run with 1)",
    )
    parser.add_argument("--skip-compute", action="store_true")
    parser.add_argument("--skip-accumulate", action="store_true")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(D, D)))[0]
    if not args.skip_compute:
        bench_compute(basis, args.repeats, args.sqrtm_repeats, args.threads)
        if args.threads is None:  # single-threaded peers: a reference that survives a loaded box
            bench_compute(basis, args.repeats, args.sqrtm_repeats, threads=1)
    if not args.skip_accumulate:
        bench_accumulate(rng, basis, args.repeats, args.rows)


if __name__ == "__main__":
    main()
