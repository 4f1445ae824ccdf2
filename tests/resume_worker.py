"""Worker for tests/test_checkpoint.py: an evaluation that checkpoints every batch.

    python tests/resume_worker.py CHECKPOINT DELAY_S

Batches are generated from seeds (the same every run); each one waits DELAY_S first, so the
test can kill the process mid-run. Prints one JSON line: the values and the batch count the
checkpoint held when the run started.
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import metrix as mx
from metrix.runtime.checkpoint import read_checkpoint_info
from metrix.runtime.evaluate import evaluate

NUM_BATCHES = 12
BATCH = 32


def metrics():
    return {
        "acc": mx.Accuracy(logits="preds.logits", labels="batch.label"),
        "mean": mx.Average(values="preds.score"),
        "std": mx.Std(values="preds.score"),
        "max": mx.Max(values="preds.score"),
        "cm": mx.ConfusionMatrix(
            preds="preds.logits", labels="batch.label", from_logits=True, num_classes=3
        ),
    }


def step(batch):
    logits = batch["x"][:, :3] * 2.0 - batch["x"][:, 3:]
    return {"preds": {"logits": logits, "score": jnp.sin(batch["x"]).sum(-1)}, "batch": batch}


def make_batch(i):
    rng = np.random.default_rng(1000 + i)
    return {
        "x": rng.normal(size=(BATCH, 6)).astype(np.float32),
        "label": rng.integers(0, 3, BATCH).astype(np.int32),
    }


def batches(delay):
    for i in range(NUM_BATCHES):
        time.sleep(delay)
        yield make_batch(i)


def run(checkpoint=None, delay=0.0):
    kwargs = {"checkpoint": checkpoint, "checkpoint_every": 1} if checkpoint else {}
    return jax.device_get(evaluate(metrics(), step, batches(delay), progress=False, **kwargs))


def to_json(values):
    return jax.tree.map(lambda v: np.asarray(v).tolist(), values)


if __name__ == "__main__":
    path, delay = sys.argv[1], float(sys.argv[2])
    start = read_checkpoint_info(path)["batches_done"] if os.path.exists(path) else 0
    values = run(path, delay)
    print(json.dumps({"resumed_from": start, "values": to_json(values)}), flush=True)
