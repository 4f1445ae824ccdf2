"""Per-step cost of merging metric states across 8 devices, against one device doing it all.

For Accuracy, Average, Std and a mean/covariance metric with 2048 features (FID's statistics):

* ``allreduce``: ``mx.allreduce`` of 8 per-device states inside ``shard_map`` (the collective
  alone), against ``mx.merge_stacked`` of the same 8 states on one device; for the covariance
  also the generic gather-every-state path that the Chan rule replaces;
* ``step``: a whole evaluation step (``get_state`` of a global batch + merge) sharded over 8
  devices, against a jitted loop over the 8 shards on one device.

The 8 devices are simulated on the host CPU (``--xla_force_host_platform_device_count=8``), so
they share its cores: the ratios measure overheads, not a speed-up. Run with
``python -m benchmarks.distributed``.
"""

from __future__ import annotations

import os

if "jax" not in __import__("sys").modules:
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import statistics
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import metrix as mx
from metrix.core.kinds import gather

DEVICES = 8
AXIS = "d"


class FeatureStats(mx.Metric):
    """Mean and covariance of feature rows (the statistics FID compares)."""

    features: mx.Key = mx.REQUIRED
    num_features: int = 2048

    class State(mx.MeanCovState):
        pass

    def get_state(self, features):
        return self.State.from_rows(features)


def _cases(rng):
    batch = 1024
    return {
        "Accuracy": (
            mx.Accuracy(logits="logits", labels="labels"),
            {
                "logits": rng.normal(size=(batch, 10)).astype(np.float32),
                "labels": rng.integers(0, 10, size=batch).astype(np.int32),
            },
        ),
        "Average": (mx.Average(values="values"), {"values": rng.normal(size=(batch,)).astype(np.float32)}),
        "Std": (mx.Std(values="values"), {"values": rng.normal(size=(batch,)).astype(np.float32)}),
        "MeanCov2048": (
            FeatureStats(features="features"),
            {"features": rng.normal(size=(256, 2048)).astype(np.float32)},
        ),
    }


def _median_seconds(fn, *args, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _bench_metric(name, metric, inputs, mesh, repeats):
    sharded = NamedSharding(mesh, P(AXIS))
    on_devices = {k: jax.device_put(v, sharded) for k, v in inputs.items()}
    shards = {k: v.reshape((DEVICES, -1) + v.shape[1:]) for k, v in inputs.items()}
    # 8 per-device states, one per device, and the same 8 stacked on one device.
    stacked = jax.jit(jax.vmap(lambda kw: metric.get_state(**kw)))(shards)
    stacked_on_devices = jax.device_put(stacked, sharded)

    def one(tree):
        return jax.tree.map(lambda x: x[0], tree)

    def sharded_fn(body):
        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P(AXIS), out_specs=P()))

    rows = {}
    allreduce = sharded_fn(lambda s: mx.allreduce(one(s), AXIS))
    local_merge = jax.jit(mx.merge_stacked)
    rows["allreduce"] = (
        _median_seconds(allreduce, stacked_on_devices, repeats=repeats),
        _median_seconds(local_merge, stacked, repeats=repeats),
    )
    if isinstance(stacked, mx.MeanCovState):
        # The generic path a state without a cheaper collective takes: gather every device's
        # state, fold the stack (what State._allreduce does for a class-written merge).
        gathered = sharded_fn(
            lambda s: jax.tree.map(lambda x: gather(x, AXIS), one(s))._merge_stacked()
        )
        rows["allreduce (gather path)"] = (
            _median_seconds(gathered, stacked_on_devices, repeats=repeats),
            rows["allreduce"][1],
        )

    step = sharded_fn(lambda kw: mx.allreduce(metric.get_state(**kw), AXIS))

    @jax.jit
    def loop(kw):
        state = metric.empty()
        for i in range(DEVICES):
            state = state.merge(metric.get_state(**{k: v[i] for k, v in kw.items()}))
        return state

    rows["step"] = (
        _median_seconds(step, on_devices, repeats=repeats),
        _median_seconds(loop, shards, repeats=repeats),
    )
    for what, (multi, single) in rows.items():
        print(
            f"{name:12s} {what:24s} 8 devices {multi * 1e3:9.3f} ms   1 device {single * 1e3:9.3f} ms"
            f"   ratio {multi / single:6.2f}"
        )


def main(repeats: int = 30) -> None:
    if jax.device_count() < DEVICES:
        raise SystemExit(
            f"needs {DEVICES} devices; run in a fresh interpreter (XLA_FLAGS is set before jax loads)"
        )
    mesh = Mesh(np.array(jax.devices()[:DEVICES]), (AXIS,))
    print(f"jax {jax.__version__}, {jax.devices()[0].platform} x {DEVICES}, median of {repeats} runs")
    print("ratio = 8 devices / 1 device (below 1: the 8-device path is faster)")
    for name, (metric, inputs) in _cases(np.random.default_rng(0)).items():
        _bench_metric(name, metric, inputs, mesh, repeats if name != "MeanCov2048" else max(repeats // 3, 5))


if __name__ == "__main__":
    main()
