"""ROC AUC / average precision over 10^6 scores: metrix exact and binned against sklearn.

The data (10^6 binary labels, float32 scores with ties) arrive in ten batches of 10^5. Timed,
medians over repeats after a warm-up, in one run:

* ``sklearn``: ``roc_auc_score`` / ``average_precision_score`` on the whole arrays (the peer);
* ``torchmetrics``: ``binary_auroc`` / ``binary_average_precision`` (exact), when importable;
* ``metrix exact compute``: ``compute()`` of the merged ``RocAuc(capacity=10**6)`` state
  (eager: one numpy sort, cumulative sums, tie groups, trapezoid);
* ``metrix exact compute (jit)``: the same under ``jax.jit`` (an XLA sort: slower on CPU);
* ``metrix exact accumulate``: ten jitted ``get_state`` + ``merge`` into the 10^6-row buffer;
* ``metrix binned-200 accumulate+compute``: ``RocAuc(thresholds=200)``, whose state is 200-ish
  counts whatever the data size (its bytes are printed).

Ratios are metrix time / peer time (below 1: metrix is faster). Run:
``python -m benchmarks.auc [--repeats 7]``.
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

import metrix as mx

N = 10**6
BATCHES = 10


def median_time(fn, repeats):
    fn()  # warm-up (compiles, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=N) < 0.3).astype(np.int32)
    scores = rng.beta(2, 5, size=N) + 0.2 * labels
    scores = np.round(scores / scores.max(), 4).astype(np.float32)  # ~10^4 distinct values: ties
    return scores, labels


_merge = jax.jit(lambda a, b: a.merge(b))
_get_state = {}


def accumulate(metric, scores, labels):
    """Ten jitted get_state + merge steps (compiled once per metric, as an eval loop would)."""
    get_state = _get_state.setdefault(metric, jax.jit(metric.get_state))
    state = metric.empty()
    for s, y in zip(np.array_split(scores, BATCHES), np.array_split(labels, BATCHES)):
        state = _merge(state, get_state(s, y))
    return state


def state_bytes(state):
    return sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state))


def _torchmetrics():
    try:
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules.setdefault(name, types.ModuleType(name))
        import torch
        from torchmetrics.functional.classification import binary_auroc, binary_average_precision
    except Exception:  # noqa: BLE001 - an optional peer
        return None
    return torch, binary_auroc, binary_average_precision


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    from sklearn import metrics as skm

    scores, labels = make_data()
    print(
        f"# ROC AUC / AP over {N:,} scores in {BATCHES} batches; {platform.processor() or platform.machine()}, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, repeats={args.repeats} (median)"
    )

    rows = []  # (name, seconds, peer name or None)
    results = {}
    for kind, cls, sk_fn in (
        ("auc", mx.RocAuc, skm.roc_auc_score),
        ("ap", mx.AveragePrecision, skm.average_precision_score),
    ):
        exact_metric = cls(capacity=N)
        binned_metric = cls(thresholds=200)
        exact_state = accumulate(exact_metric, scores, labels)
        sk = median_time(lambda: sk_fn(labels, scores), args.repeats)
        rows.append((f"{kind}: sklearn", sk, None))
        tm = _torchmetrics()
        if tm is not None:
            torch, tm_auc, tm_ap = tm
            ts, ty = torch.from_numpy(scores), torch.from_numpy(labels)
            tm_fn = tm_auc if kind == "auc" else tm_ap
            rows.append(
                (
                    f"{kind}: torchmetrics (exact)",
                    median_time(lambda: tm_fn(ts, ty), args.repeats),
                    "sklearn",
                )
            )
        rows.append(
            (
                f"{kind}: metrix exact compute",
                median_time(exact_state.compute, args.repeats),
                "sklearn",
            )
        )
        jit_compute = jax.jit(lambda s: s.compute())
        rows.append(
            (
                f"{kind}: metrix exact compute (jit)",
                median_time(lambda: jit_compute(exact_state), args.repeats),
                "sklearn",
            )
        )
        rows.append(
            (
                f"{kind}: metrix exact accumulate (10 batches)",
                median_time(lambda: accumulate(exact_metric, scores, labels).count, args.repeats),
                "sklearn",
            )
        )
        rows.append(
            (
                f"{kind}: metrix binned-200 accumulate+compute",
                median_time(
                    lambda: accumulate(binned_metric, scores, labels).compute(), args.repeats
                ),
                "sklearn",
            )
        )
        binned_state = accumulate(binned_metric, scores, labels)
        results[kind] = {
            "sklearn": sk_fn(labels, scores),
            "exact": float(exact_state.compute()),
            "exact_jit": float(jit_compute(exact_state)),
            "binned": float(binned_state.compute()),
            "exact_bytes": state_bytes(exact_state),
            "binned_bytes": state_bytes(binned_state),
        }
        peers = {name: t for name, t, _ in rows if name == f"{kind}: sklearn"}
        for name, seconds, peer in [r for r in rows if r[0].startswith(kind + ":")]:
            ratio = (
                ""
                if peer is None
                else f"  ratio vs sklearn {seconds / peers[f'{kind}: sklearn']:.3f}"
            )
            print(f"{name:<48} {seconds * 1e3:9.2f} ms{ratio}")
        r = results[kind]
        print(
            f"{kind}: values sklearn {r['sklearn']:.7f} exact {r['exact']:.7f} exact(jit) {r['exact_jit']:.7f} "
            f"binned-200 {r['binned']:.7f} (|binned - exact| {abs(r['binned'] - r['exact']):.1e})"
        )
        print(f"{kind}: state bytes exact {r['exact_bytes']:,} binned-200 {r['binned_bytes']:,}")
    return results


if __name__ == "__main__":
    main()
