"""Metric-learning losses: forward + backward, metrix (jit) vs pytorch-metric-learning (CPU).

For each loss and batch size N (d = 128) it times ``value_and_grad`` w.r.t. the embeddings
(and class weights / proxies for the weighted losses) with matched hyperparameters,
distances and reducers, and prints medians after warm-up and the ratio
``pml / metrix`` (> 1: metrix faster). pytorch-metric-learning's slow cases (NT-Xent
materialises a positive-pairs x negative-pairs matrix) are capped: at most ``PEER_REPS``
repetitions and ``PEER_BUDGET_S`` seconds per configuration; a capped figure says so.

Run: ``python -m benchmarks.metric_learning [--sizes 128 256 512] [--losses triplet ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import metrix as mx

D = 128
REPS = 10
PEER_REPS = 5
PEER_BUDGET_S = 30.0


def _labels(name, n):
    if name == "ntxent":  # SimCLR: two views per sample
        return np.tile(np.arange(n // 2), 2).astype(np.int32)
    return (np.arange(n) % max(n // 4, 2)).astype(np.int32)  # 4 samples per class


def _configs():
    """name -> (metrix loss, factory of the pml loss, name of the weight in both)."""
    from pytorch_metric_learning import losses as pml

    return {
        "triplet": (mx.TripletMarginLoss(margin=0.05, normalize=True, reduction="mean_nonzero"),
                    lambda c: pml.TripletMarginLoss(margin=0.05), None),
        "contrastive": (mx.ContrastiveLoss(normalize=True, reduction="mean_nonzero"),
                        lambda c: pml.ContrastiveLoss(), None),
        "ntxent": (mx.NTXentLoss(temperature=0.5), lambda c: pml.NTXentLoss(temperature=0.5), None),
        "supcon": (mx.SupConLoss(), lambda c: pml.SupConLoss(), None),
        "multi_similarity": (mx.MultiSimilarityLoss(), lambda c: pml.MultiSimilarityLoss(), None),
        "circle": (mx.CircleLoss(), lambda c: pml.CircleLoss(), None),
        "arcface": (lambda c: mx.ArcFaceLoss(num_classes=c, embedding_dim=D),
                    lambda c: pml.ArcFaceLoss(c, D, margin=np.degrees(0.5), scale=64), ("weights", "W")),
        "cosface": (lambda c: mx.CosFaceLoss(num_classes=c, embedding_dim=D),
                    lambda c: pml.CosFaceLoss(c, D), ("weights", "W")),
        "proxy_nca": (lambda c: mx.ProxyNCALoss(num_classes=c, embedding_dim=D),
                      lambda c: pml.ProxyNCALoss(c, D), ("proxies", "proxies")),
        "proxy_anchor": (lambda c: mx.ProxyAnchorLoss(num_classes=c, embedding_dim=D),
                         lambda c: pml.ProxyAnchorLoss(c, D), ("proxies", "proxies")),
    }


def _median_time(fn, reps, budget_s=None):
    """Seconds over ``reps`` runs (stops early past ``budget_s``): (median, min, runs)."""
    times = []
    start = time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return statistics.median(times), min(times), len(times)


def time_metrix(loss, x, y, weight_key):
    if weight_key is None:
        step = jax.jit(jax.value_and_grad(lambda e, l: loss(e, l)))
        args = (jnp.asarray(x), jnp.asarray(y))
    else:
        params = loss.init(jax.random.PRNGKey(0))
        step = jax.jit(jax.value_and_grad(lambda e, p, l: loss(e, l, p), argnums=(0, 1)))
        args = (jnp.asarray(x), params, jnp.asarray(y))
    jax.block_until_ready(step(*args))  # compile + warm-up
    jax.block_until_ready(step(*args))
    return _median_time(lambda: jax.block_until_ready(step(*args)), REPS)


def time_pml(loss, x, y, weight_attr):
    import torch

    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y, dtype=torch.int64)
    wrt = [xt] + ([getattr(loss, weight_attr)] if weight_attr else [])

    def step():
        value = loss(xt, yt)
        torch.autograd.grad(value, wrt)

    t0 = time.perf_counter()
    step()  # warm-up
    if time.perf_counter() - t0 > PEER_BUDGET_S:
        elapsed = time.perf_counter() - t0
        return elapsed, elapsed, 1
    return _median_time(step, PEER_REPS, PEER_BUDGET_S)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--losses", nargs="+", default=None)
    args = parser.parse_args(argv)
    import torch

    configs = _configs()
    names = args.losses or list(configs)
    print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); forward+backward, d={D}; medians")
    print("(min in brackets: on a shared, loaded machine the minimum is the steadier figure)")
    print(f"{'loss':<17}{'N':>5}{'metrix ms (min)':>20}{'pml ms (min)':>22}{'pml runs':>10}{'pml/metrix':>12}")
    for name in names:
        ours, make_peer, weights = configs[name]
        for n in args.sizes:
            rng = np.random.default_rng(n)
            x = rng.normal(size=(n, D)).astype(np.float32)
            y = _labels(name, n)
            num_classes = int(y.max()) + 1
            loss = ours(num_classes) if callable(ours) and not isinstance(ours, mx.Metric) else ours
            ours_s, ours_min, _ = time_metrix(loss, x, y, weights[0] if weights else None)
            peer = make_peer(num_classes)
            if weights:
                params = loss.init(jax.random.PRNGKey(0))
                with torch.no_grad():
                    getattr(peer, weights[1]).copy_(torch.tensor(np.asarray(params[weights[0]])))
            peer_s, peer_min, runs = time_pml(peer, x, y, weights[1] if weights else None)
            capped = " (capped)" if runs < PEER_REPS else ""
            ours_txt = f"{ours_s * 1e3:.2f} ({ours_min * 1e3:.2f})"
            peer_txt = f"{peer_s * 1e3:.1f} ({peer_min * 1e3:.1f})"
            print(f"{name:<17}{n:>5}{ours_txt:>20}{peer_txt:>22}{runs:>10}"
                  f"{peer_s / ours_s:>11.1f}x{capped}", flush=True)


if __name__ == "__main__":
    main()
