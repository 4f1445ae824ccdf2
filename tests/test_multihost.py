"""Two local processes x 4 CPU devices, each evaluating half of a data set: the merged values
equal the single-process ones (and numpy's closed forms).

The processes run tests/multihost_worker.py under jax.distributed with a coordinator on a
free localhost port; the test starts them, waits at most TIMEOUT_S seconds, and kills them
if they hang. It skips only when jax.distributed cannot start here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import multihost_worker as worker

ROOT = Path(__file__).resolve().parent.parent
NUM_PROCESSES = 2
TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_workers(tmp_path: Path) -> list[dict]:
    port = _free_port()
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    outs = [tmp_path / f"process{i}.json" for i in range(NUM_PROCESSES)]
    logs = [tmp_path / f"process{i}.log" for i in range(NUM_PROCESSES)]
    procs = []
    for i in range(NUM_PROCESSES):
        with open(logs[i], "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.multihost_worker", str(i), str(NUM_PROCESSES), str(port), str(outs[i])],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for p in procs:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = [log.read_text() for log in logs]
    for text in texts:
        if "DISTRIBUTED_UNAVAILABLE" in text:
            pytest.skip(f"jax.distributed cannot start on this machine: {text.strip().splitlines()[-1]}")
    codes = [p.returncode for p in procs]
    report = "\n".join(f"--- process {i} (exit {c}) ---\n{t[-3000:]}" for i, (c, t) in enumerate(zip(codes, texts)))
    assert all(c == 0 for c in codes), f"workers failed or exceeded {TIMEOUT_S}s:\n{report}"
    return [json.loads(out.read_text()) for out in outs]


def _expected() -> dict:
    """numpy closed forms over the real rows (padding removed)."""
    data = worker.make_data()
    real = {k: v[: worker.NUM_REAL] for k, v in data.items()}
    x = real["x"].astype(np.float64)
    return {
        "average": x.mean(),
        "std": x.std(),
        "accuracy": np.mean(real["logits"].argmax(-1) == real["labels"]),
        "rows": real["x"],
    }


def _single_process_values() -> dict:
    import metrix as mx

    data = worker.make_data()
    real = {k: v[: worker.NUM_REAL] for k, v in data.items()}  # the mask keeps every real row
    return worker.values_of(mx.get_states(worker.make_metrics(), real))


def _check(values: dict, expected: dict, single: dict, what: str):
    for name in ("average", "std", "accuracy"):
        np.testing.assert_allclose(values[name], expected[name], rtol=1e-5, err_msg=f"{what}: {name} vs numpy")
        np.testing.assert_allclose(values[name], single[name], rtol=1e-5, err_msg=f"{what}: {name} vs one process")
    # Buffers: the same rows in the same order, bit for bit.
    np.testing.assert_array_equal(np.asarray(values["rows"], np.float32), expected["rows"], err_msg=what)
    assert values["count"] == worker.NUM_REAL == single["count"]


def test_two_processes_merge_to_single_process_values(tmp_path):
    results = _run_workers(tmp_path)
    expected, single = _expected(), _single_process_values()
    for i, result in enumerate(results):
        _check(result["local_all"], expected, single, f"process {i}: local allreduce + process_allreduce")
        _check(result["global"], expected, single, f"process {i}: allreduce over a global mesh")
        assert result["global_refused"], "process_allreduce must refuse already-global states"
    _check(results[0]["local_lead"], expected, single, "process 0: process_allreduce(to='lead')")
    assert results[1]["lead_elsewhere_is_none"]
