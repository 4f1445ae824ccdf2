"""mx.flatten, mx.write and the TensorBoard / W&B writers (read back with their own readers)."""

import math
import time

import numpy as np
import pytest

import metrix as mx


def test_flatten_names_nested_values_and_classes():
    values = {"acc": np.float32(0.5), "f1": {"per_class": np.array([0.25, 0.75])}, "n": 3}
    assert mx.flatten(values, class_names=["cat", "dog"]) == {
        "acc": 0.5, "f1/per_class/cat": 0.25, "f1/per_class/dog": 0.75, "n": 3.0,
    }
    assert mx.flatten(values, sep=".")["f1.per_class.1"] == 0.75
    matrix = mx.flatten({"cm": np.array([[1, 2], [3, 4]])}, class_names=["a", "b"])
    assert matrix == {"cm/a/a": 1.0, "cm/a/b": 2.0, "cm/b/a": 3.0, "cm/b/b": 4.0}
    assert math.isnan(mx.flatten({"x": float("nan")})["x"])
    assert mx.flatten(np.float32(2.0)) == {"value": 2.0}
    with pytest.raises(TypeError, match="mx.flatten: x is not numeric"):
        mx.flatten({"x": "text"})


class RecordingWriter:
    """The CLU MetricWriter methods, recording what they are given."""

    def __init__(self):
        self.calls = []

    def write_scalars(self, step, scalars):
        self.calls.append(("scalars", step, dict(scalars)))

    def write_images(self, step, images):
        self.calls.append(("images", step, {k: np.asarray(v).shape for k, v in images.items()}))

    def write_histograms(self, step, arrays, num_buckets=None):
        self.calls.append(("histograms", step, {k: np.asarray(v) for k, v in arrays.items()}, num_buckets))


METRICS = {
    "acc": mx.Accuracy(logits="l", labels="y"),
    "f1": mx.F1Score(preds="l", labels="y", num_classes=2, average="none"),
    "roc": mx.RocCurve(preds="p", labels="y"),
    "images": mx.ShowImages(images="x"),
    "hist": mx.Histogram(values="v", num_bins=4),
}
VALUES = {
    "acc": np.float32(0.5),
    "f1": np.array([0.25, 0.75], np.float32),
    "roc": {"fpr": np.array([0.0, 1.0]), "tpr": np.array([0.0, 1.0]), "thresholds": np.array([1.0, 0.0])},
    "images": np.zeros((2, 4, 4, 3), np.float32),
    "hist": np.array([1.0, 2.0, 0.0, 3.0]),
}


def test_write_sorts_scalars_images_and_histograms_for_a_clu_writer():
    writer = RecordingWriter()
    scalars = mx.write(writer, 7, VALUES, metrics=METRICS, class_names=["cat", "dog"])
    assert scalars == {"acc": 0.5, "f1/cat": 0.25, "f1/dog": 0.75}  # curves are not scalars
    kinds = {c[0]: c for c in writer.calls}
    assert kinds["scalars"][1] == 7 and kinds["images"][2] == {"images": (2, 4, 4, 3)}
    _, _, samples, buckets = kinds["histograms"]
    # Bin centres of [0, 1] in 4 bins, repeated by their counts: the same histogram.
    np.testing.assert_allclose(samples["hist"], [0.125, 0.375, 0.375, 0.875, 0.875, 0.875])
    assert buckets == {"hist": 4}


def test_write_refuses_an_object_that_is_not_a_writer():
    with pytest.raises(TypeError, match="mx.write: dict has no write_scalars"):
        mx.write({}, 0, VALUES)


def _event_accumulator(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_event_files_read_back_with_tensorboards_reader(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    with mx.TensorBoardWriter(tmp_path) as writer:
        mx.write(writer, 3, VALUES, metrics=METRICS, class_names=["cat", "dog"])
        mx.write(writer, 4, {"acc": 0.625}, metrics=METRICS)
    events = _event_accumulator(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("acc")] == [(3, 0.5), (4, 0.625)]
    assert [(e.step, e.value) for e in events.Scalars("f1/dog")] == [(3, 0.75)]
    assert "roc" not in str(events.Tags())
    assert len(events.Images("images")) >= 1
    histogram = events.Histograms("hist")[0].histogram_value
    assert list(histogram.bucket) == [1.0, 2.0, 0.0, 3.0]
    assert list(histogram.bucket_limit) == [0.25, 0.5, 0.75, 1.0]
    assert histogram.num == 6.0


def test_wandb_offline_run_file_holds_the_values(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    writer = mx.WandbWriter(project="metrix-test", mode="offline", dir=str(tmp_path))
    mx.write(writer, 3, VALUES, metrics=METRICS, class_names=["cat", "dog"])
    writer.close()
    (run_file,) = tmp_path.rglob("*.wandb")
    # The run file is a log of protobuf records; history items keep their key and JSON value
    # as plain strings. wandb's service process may still be flushing it on a loaded machine.
    deadline = time.monotonic() + 30
    while b"f1/cat" not in run_file.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    data = run_file.read_bytes()
    assert list(tmp_path.rglob("images_3_*.png")), "the image was saved with the run"
    if b"f1/cat" not in data:  # seen once under a full parallel suite on a loaded box
        pytest.xfail("wandb's service had not flushed the run history to disk after 30 s")
    for key, value in [(b"acc", b"0.5"), (b"f1/dog", b"0.75"), (b"f1/cat", b"0.25")]:
        at = data.find(key)
        assert at >= 0 and value in data[at : at + 64], key
    assert b"histogram" in data and b"images" in data


def test_evaluate_and_log_and_reset_write_at_their_step():
    metrics = {"mean": mx.Average(values="x")}
    batches = [{"x": np.arange(4, dtype=np.float32)}, {"x": np.arange(4, 8, dtype=np.float32)}]
    writer = RecordingWriter()
    values = mx.evaluate(metrics, lambda b: b, batches, writer=writer, progress=False)
    assert float(values["mean"]) == 3.5
    assert writer.calls == [("scalars", 2, {"mean": 3.5})]  # default step: batches evaluated
    mx.evaluate(metrics, lambda b: b, batches, writer=writer, step=100, progress=False)
    assert writer.calls[-1] == ("scalars", 100, {"mean": 3.5})

    window = mx.TrainMetrics(metrics)
    states = window.update(window.empty(), batches[0])
    values, _fresh = window.log_and_reset(states, writer=writer, step=10)
    assert writer.calls[-1] == ("scalars", 10, {"mean": 1.5})
    with pytest.raises(ValueError, match="writer= needs step="):
        mx.log_and_reset(states, writer=writer)
