"""One process of the two-process test in tests/test_multihost.py.

Run as ``python -m tests.multihost_worker PROCESS_ID NUM_PROCESSES PORT OUT_JSON`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``. Each process evaluates its half of
one data set (the last rows are padding, masked out) two ways and writes the merged values:

* ``local``: shard_map + allreduce over its own 4 devices, then ``process_allreduce``
  across processes (``to="all"`` and ``to="lead"``);
* ``global``: one mesh over all 8 devices of both processes, global arrays, shard_map +
  allreduce (collectives across processes), replicated result.

Exit code 3 with a ``DISTRIBUTED_UNAVAILABLE`` line means jax.distributed could not start.
"""

from __future__ import annotations

import json
import sys

import numpy as np

NUM_ROWS = 48  # 2 processes x 4 devices x 6 rows
NUM_REAL = 45  # the last 3 rows are padding
CAPACITY = 64


def make_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    return {
        "x": (rng.normal(size=(NUM_ROWS, 3)) * 10 + 1e3).astype(np.float32),
        "logits": rng.normal(size=(NUM_ROWS, 5)).astype(np.float32),
        "labels": rng.integers(0, 5, size=NUM_ROWS).astype(np.int32),
        "mask": np.arange(NUM_ROWS) < NUM_REAL,
    }


def make_metrics():
    import metrix as mx

    class Collect(mx.Metric):
        """Every unmasked row of x, in order, in a fixed-capacity buffer."""

        values: mx.Key = mx.REQUIRED
        mask: mx.Key | None = None
        capacity: int = CAPACITY
        item_shape: tuple = (3,)

        class State(mx.CollectState):
            pass

        def get_state(self, values, mask=None):
            return self.State.from_rows(capacity=self.capacity, values=values, mask=mask, parent=self)

    return {
        "average": mx.Average(values="x", mask="mask"),
        "std": mx.Std(values="x", mask="mask"),
        "accuracy": mx.Accuracy(logits="logits", labels="labels", mask="mask"),
        "rows": Collect(values="x", mask="mask"),
    }


def values_of(states) -> dict:
    import jax

    import metrix as mx

    out = {k: np.asarray(v).tolist() for k, v in mx.compute(states).items() if k != "rows"}
    out["rows"] = states["rows"].rows()["values"].tolist()
    out["count"] = int(jax.device_get(states["rows"].count))
    return out


def main(process_id: int, num_processes: int, port: int, out_path: str) -> None:
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=f"localhost:{port}",
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=60,
        )
    except Exception as err:  # noqa: BLE001 - reported to the parent test, which skips
        print(f"DISTRIBUTED_UNAVAILABLE: {type(err).__name__}: {err}", flush=True)
        sys.exit(3)

    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import metrix as mx

    metrics = make_metrics()
    data = make_data()
    half = NUM_ROWS // num_processes
    mine = {k: v[process_id * half : (process_id + 1) * half] for k, v in data.items()}

    def step(context):
        return mx.allreduce(mx.get_states(metrics, context), "data")

    # Local devices, then across processes on the host.
    local_mesh = Mesh(np.array(jax.local_devices()), ("data",))
    local = jax.jit(jax.shard_map(step, mesh=local_mesh, in_specs=P("data"), out_specs=P()))(mine)
    merged_all = mx.process_allreduce(local, to="all")
    merged_lead = mx.process_allreduce(local, to="lead")
    result = {"local_all": values_of(merged_all)}
    if process_id == 0:
        result["local_lead"] = values_of(merged_lead)
    else:
        result["lead_elsewhere_is_none"] = merged_lead is None

    # One mesh over every device of every process.
    global_mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(global_mesh, P("data"))
    global_inputs = {k: jax.make_array_from_process_local_data(sharding, v) for k, v in mine.items()}
    global_states = jax.jit(jax.shard_map(step, mesh=global_mesh, in_specs=P("data"), out_specs=P()))(global_inputs)
    try:
        mx.process_allreduce(global_states)
        result["global_refused"] = False
    except ValueError:
        result["global_refused"] = True
    replica = jax.tree.map(lambda x: x.addressable_data(0), global_states)
    result["global"] = values_of(replica)

    with open(out_path, "w") as f:
        json.dump(result, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
