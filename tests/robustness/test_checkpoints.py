"""Checkpoints: a rerun or a resume on other data is refused, never silently mixed.

``mx.evaluate(..., checkpoint=p)`` stores a fingerprint of the metrics' config and of the data
stream (every batch's shapes and dtypes, digests of the first and of the last merged batch)
and checks it before it trusts the file. Each case asserts the exact outcome: the error type
and the words that name the file, what differs and the override; or the exact values.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.runtime.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    batch_digest,
    read_checkpoint_info,
    save_states,
)
from metrix.runtime.evaluate import evaluate

OVERRIDE = r"Pass resume='force' to resume anyway .* or resume='restart' \(or delete the file\)"


def _metrics(top_k=1):
    return {
        "acc": mx.Accuracy(logits="preds.logits", labels="batch.label", top_k=top_k),
        "mean": mx.Average(values="preds.score"),
    }


def _step(batch):
    preds = {"logits": batch["x"][:, :3], "score": jnp.sum(batch["x"], -1)}
    return {"preds": preds, "batch": batch}


def _batches(seed, count=5, size=8):
    rng = np.random.default_rng(seed)
    return [
        {
            "x": rng.normal(size=(size, 4)).astype(np.float32),
            "label": rng.integers(0, 3, size).astype(np.int32),
        }
        for _ in range(count)
    ]


def _run(batches, path=None, metrics=None, **kwargs):
    values = evaluate(metrics or _metrics(), _step, batches, checkpoint=path, progress=False,
                      **kwargs)
    return {k: float(v) for k, v in values.items()}


def _interrupted(batches, path, after):
    """A run killed after ``after`` batches (checkpointed every batch, no final save)."""

    def stream():
        for i, b in enumerate(batches):
            if i == after:
                raise KeyboardInterrupt
            yield b

    with pytest.raises(KeyboardInterrupt):
        _run(stream(), path, checkpoint_every=1)
    assert read_checkpoint_info(path)["batches_done"] == after


def _same(got, want):
    """Equal values: the counts exactly, float32 means to 1e-6 (the same run can round its
    last bit differently from call to call once compute is compiled; not a checkpoint matter)."""
    assert got.keys() == want.keys()
    for key in got:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)


def _mismatch(path, what):
    return rf"^{path}: this checkpoint was written by a different run: {what}"


@pytest.fixture(scope="module")
def data():
    a, b = _batches(1), _batches(2)
    return {"a": a, "b": b, "value_a": _run(a), "value_b": _run(b)}


def test_rerun_on_other_data_is_refused_not_the_first_values(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _same(_run(data["a"], path), data["value_a"])
    with pytest.raises(CheckpointMismatchError, match=_mismatch(
            path, r"the first batch holds other values \(its digest differs\)\. " + OVERRIDE)):
        _run(data["b"], path)


def test_rerun_on_the_same_data_returns_the_saved_values(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _run(data["a"], path)
    _same(_run(data["a"], path), data["value_a"])


def test_partial_checkpoint_resumed_on_other_data_is_refused(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _interrupted(data["a"], path, after=3)
    with pytest.raises(CheckpointMismatchError, match=_mismatch(path, "the first batch")):
        _run(data["b"], path)


def test_same_first_batch_other_later_batches_is_refused(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _interrupted(data["a"], path, after=3)
    mixed = data["a"][:1] + data["b"][1:]
    with pytest.raises(CheckpointMismatchError, match=_mismatch(
            path, r"batch 3, the last one merged, holds other values\. " + OVERRIDE)):
        _run(mixed, path)


def test_other_batch_shapes_are_refused_naming_the_batch(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _interrupted(data["a"], path, after=3)
    short = [dict(b) for b in data["a"]]
    short[1] = {k: v[:6] for k, v in short[1].items()}
    with pytest.raises(CheckpointMismatchError, match=_mismatch(
            path, r"batch 2 is \{\['label'\]: int32\[6\], \['x'\]: float32\[6, 4\]\}, the "
                  r"checkpoint's was \{\['label'\]: int32\[8\], \['x'\]: float32\[8, 4\]\}")):
        _run(short, path)


def test_other_metrics_config_is_refused_naming_the_metric(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _run(data["a"], path)
    with pytest.raises(CheckpointMismatchError, match=_mismatch(
            path, r"the metrics differ \(\['acc'\]: saved Accuracy\(.*top_k=1\), now "
                  r"Accuracy\(.*top_k=2\)\)\. Pass resume='restart'")):
        _run(data["a"], path, metrics=_metrics(top_k=2))


def test_fewer_batches_than_merged_is_refused(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _run(data["a"], path)
    with pytest.raises(CheckpointMismatchError, match=_mismatch(
            path, r"it has 5 batches merged but only 3 batches were given")):
        _run(data["a"][:3], path)


def test_interrupted_and_resumed_on_the_same_data_is_exact(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _interrupted(data["a"], path, after=3)
    _same(_run(data["a"], path, checkpoint_every=1), data["value_a"])
    info = read_checkpoint_info(path)
    assert info["batches_done"] == 5 and info["complete"] is True


def test_force_resumes_anyway(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _run(data["a"], path)
    _same(_run(data["b"], path, resume="force"), data["value_a"])  # what was asked for


def test_restart_ignores_and_overwrites_the_file(tmp_path, data):
    path = tmp_path / "eval.msgpack"
    _run(data["a"], path)
    _same(_run(data["b"], path, resume="restart"), data["value_b"])
    _same(_run(data["b"], path), data["value_b"])  # the file now holds b's fingerprint


def test_checkpoint_without_fingerprint_is_refused_clearly(tmp_path, data):
    path = tmp_path / "old.msgpack"
    states = mx.get_states(_metrics(), _step(data["a"][0]))
    save_states(path, states, info={"batches_done": 1})  # as metrix wrote them before
    with pytest.raises(CheckpointMismatchError, match=_mismatch(
            path, r"it holds 1 merged batches but no fingerprint of the metrics and the data "
                  r"\(written by an older metrix\)")):
        _run(data["a"], path)
    # resumed from batch 1, merging batches 2..5 on top: the old behaviour, asked for
    _same(_run(data["a"], path, resume="force"), data["value_a"])


def test_resume_typo_is_refused():
    with pytest.raises(ValueError, match=r"evaluate: resume must be one of \('check', 'force', "
                                         r"'restart'\), got 'forse'\. Did you mean 'force'\?"):
        evaluate(_metrics(), _step, [], resume="forse")


def test_mismatch_is_a_checkpoint_error_and_a_value_error():
    assert issubclass(CheckpointMismatchError, CheckpointError)
    assert issubclass(CheckpointMismatchError, ValueError)


def test_digest_sees_any_change_of_a_large_batch():
    rng = np.random.default_rng(3)
    big = {"x": rng.normal(size=(512, 1024)).astype(np.float32)}
    changed = {"x": big["x"].copy()}
    changed["x"][123, 457] += 1.0  # not a sampled position: the sum still differs
    assert batch_digest(big) == batch_digest({"x": big["x"].copy()})
    assert batch_digest(big) != batch_digest(changed)
    assert batch_digest(big) != batch_digest({"x": big["x"].astype(np.float64)})
