"""Tables, JSON and plot helpers of metrix.runtime: values named by their metric, not by keys."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve

import metrix as mx
from metrix.runtime import plotting
from metrix.runtime.report import json_value, table_lines, value_kind


def test_kind_comes_from_the_metric_not_from_the_keys():
    group = {"precision": np.float32(0.5), "recall": np.float32(0.25)}
    metrics = {"precision": mx.Precision(preds="p", labels="y", num_classes=3),
               "recall": mx.Recall(preds="p", labels="y", num_classes=3)}
    assert value_kind(group, metrics) is None
    assert table_lines(group, metrics) == [("precision", "0.5"), ("recall", "0.25")]
    curve = {"precision": np.ones(3), "recall": np.ones(3), "thresholds": np.ones(3)}
    assert value_kind(curve, mx.PrecisionRecallCurve(preds="p", labels="y")) == "pr"
    assert value_kind(curve) == "pr"  # full key set, no metric: recognised by its structure


def test_json_has_null_for_nan_and_points_for_curves():
    values = {"a": np.float32("nan"), "b": np.array([1.0, np.inf]), "c": {"fpr": np.array([0, 1])}}
    text = json.dumps(json_value(values), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"fpr": [0, 1]}}


def test_table_rows_for_arrays_and_matrices():
    rows = dict(table_lines({"f1": np.array([0.5, 0.123456789]), "cm": np.array([[1, 2], [3, 4]])}))
    assert rows == {"f1[0]": "0.5", "f1[1]": "0.123457", "cm[0]": "1 2", "cm[1]": "3 4"}


def test_step_area_in_the_pr_legend_is_sklearns_average_precision():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    scores = rng.random(200) + 0.3 * y
    precision, recall, _ = precision_recall_curve(y, scores)
    assert plotting._step_area(recall, precision) == pytest.approx(average_precision_score(y, scores))


def test_losses_and_distances_go_to_their_own_panel():
    assert plotting.lower_is_better("x", mx.TripletMarginLoss(embeddings="e", labels="l"))
    assert plotting.lower_is_better("x", mx.LogLoss(preds="p", labels="y"))
    assert not plotting.lower_is_better("x", mx.Accuracy(logits="a", labels="b"))
    assert plotting.lower_is_better("calibration.log_loss") and not plotting.lower_is_better("acc")
