"""save_states / restore_states, and an evaluation killed mid-run that resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.runtime.checkpoint import (
    CheckpointError,
    read_checkpoint_info,
    restore_states,
    save_states,
)

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "resume_worker.py"


def _metrics(num_classes=4):
    return {
        "acc": mx.Accuracy(logits="logits", labels="labels"),
        "nested": {
            "std": mx.Std(values="score"),
            "cm": mx.ConfusionMatrix(
                preds="logits", labels="labels", from_logits=True, num_classes=num_classes
            ),
        },
    }


def _states(num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    context = {
        "logits": jnp.asarray(rng.normal(size=(20, num_classes)), jnp.float32),
        "labels": jnp.asarray(rng.integers(0, num_classes, 20)),
        "score": jnp.asarray(rng.normal(size=20), jnp.float32),
    }
    return mx.get_states(_metrics(num_classes), context)


def test_round_trip_is_exact(tmp_path):
    states = _states()
    path = save_states(tmp_path / "s.msgpack", states, info={"batches_done": 7})
    restored = restore_states(path, like=mx.empty_states(_metrics()))
    assert jax.tree.structure(restored) == jax.tree.structure(states)
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), restored, states
    )
    assert read_checkpoint_info(path) == {"batches_done": 7}
    assert mx.compute(restored)["acc"] == mx.compute(states)["acc"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.msgpack"]  # no temporary file left


def test_other_metrics_are_refused(tmp_path):
    path = save_states(tmp_path / "s.msgpack", _states())
    with pytest.raises(CheckpointError, match="different structure or metric configuration"):
        restore_states(path, like=mx.empty_states(_metrics(num_classes=5)))
    with pytest.raises(CheckpointError, match="different structure"):
        restore_states(path, like={"acc": mx.Accuracy(logits="logits", labels="labels").empty()})


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        restore_states(tmp_path / "missing", like=mx.empty_states(_metrics()))
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01 not msgpack")
    with pytest.raises(CheckpointError, match="not a metrix checkpoint"):
        restore_states(junk, like=mx.empty_states(_metrics()))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def test_killed_evaluation_resumes_to_the_uninterrupted_result(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    import resume_worker

    expected = resume_worker.to_json(resume_worker.run())  # uninterrupted, in this process

    path = tmp_path / "eval.msgpack"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), "0.4"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        done = 0
        while done < 3:  # wait until a few batches are checkpointed, then kill
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the worker never checkpointed"
            time.sleep(0.05)
            if path.exists():
                done = read_checkpoint_info(path)["batches_done"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = read_checkpoint_info(path)["batches_done"]
    assert 3 <= killed_at < resume_worker.NUM_BATCHES

    out = subprocess.run(
        [sys.executable, str(WORKER), str(path), "0"],
        env=_env(),
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["resumed_from"] == killed_at
    assert result["values"] == expected  # exactly, not to a tolerance
    assert read_checkpoint_info(path)["batches_done"] == resume_worker.NUM_BATCHES
