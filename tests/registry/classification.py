"""Registry examples for classification and calibration metrics (Accuracy is in statistics.py)."""

import numpy as np

import metrix as mx
from tests.registry import Example

C = 3  # classes / labels


def _present(labels, classes):
    # Rows 0, 2, 3 survive every mask the generic tests use, so each class / label value
    # occurs and ROC AUCs are defined on any example.
    labels[[0, 2, 3]] = classes
    return labels


def _binary(rng, n):
    probs = rng.uniform(size=(n,)).astype(np.float32)
    labels = _present((rng.uniform(size=(n,)) < probs).astype(np.int32), [0, 1, 1])
    return {"preds": probs, "labels": labels}


def _multiclass(rng, n):
    logits = rng.normal(size=(n, C))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return {
        "preds": probs.astype(np.float32),
        "labels": _present(rng.integers(0, C, size=(n,)).astype(np.int32), [0, 1, 2]),
    }


def _multilabel(rng, n):
    probs = rng.uniform(size=(n, C)).astype(np.float32)
    labels = (rng.uniform(size=(n, C)) < probs).astype(np.int32)
    labels[[0, 2, 3]] = [[0, 1, 0], [1, 0, 1], [1, 1, 0]]
    return {"preds": probs, "labels": labels}


_INPUTS = {"binary": _binary, "multiclass": _multiclass, "multilabel": _multilabel}


def _multiclass_logits(rng, n):
    # Kauldron's shapes: logits (n, C) and class indices (n, 1).
    labels = _present(rng.integers(0, C, size=(n,)).astype(np.int32), [0, 1, 2])
    return {"logits": rng.normal(size=(n, C)).astype(np.float32), "labels": labels[:, None]}


def _example(name, cls, task, **config):
    metric = cls(
        preds="preds",
        labels="labels",
        mask="mask",
        task=task,
        num_classes=None if task == "binary" else C,
        **config,
    )
    return Example(f"{name}_{task}", metric, _INPUTS[task], ("preds", "labels"))


# Every public metric at least once, tasks spread over them (each example costs compile time
# in the generic tests); the reference tests cover every task x metric x average.
EXAMPLES = [
    Example(
        "BinaryAccuracy",
        mx.BinaryAccuracy(preds="preds", labels="labels", mask="mask"),
        _binary,
        ("preds", "labels"),
    ),
    _example("Precision", mx.Precision, "binary"),
    _example("Precision", mx.Precision, "multilabel", average="weighted"),
    _example("Recall", mx.Recall, "multiclass", average="micro"),
    _example("F1Score", mx.F1Score, "multiclass"),
    # top-k: another confusion matrix (the label counts as predicted when in the top 2).
    _example("Precision_top2", mx.Precision, "multiclass", top_k=2),
    _example("F1Score_top2", mx.F1Score, "multiclass", top_k=2, average="weighted"),
    _example("FBetaScore", mx.FBetaScore, "multilabel", beta=2.0, average="none"),
    _example("Specificity", mx.Specificity, "binary"),
    _example("BalancedAccuracy", mx.BalancedAccuracy, "multiclass"),
    _example("ConfusionMatrix", mx.ConfusionMatrix, "multiclass"),
    _example("MatthewsCorrCoef", mx.MatthewsCorrCoef, "multilabel"),
    _example("CohenKappa", mx.CohenKappa, "multiclass", weights="quadratic"),
    _example("RocAuc", mx.RocAuc, "binary", capacity=64),
    _example("RocAuc", mx.RocAuc, "multiclass", capacity=64),
    _example("RocAucBinned", mx.RocAuc, "multilabel", thresholds=50),
    _example("RocAuc_ovo", mx.RocAuc, "multiclass", capacity=64, multi_class_mode="ovo"),
    Example(
        "RocAuc_logits_ovo_weighted",
        mx.RocAuc(
            logits="logits",
            labels="labels",
            mask="mask",
            task="multiclass",
            num_classes=C,
            capacity=64,
            multi_class_mode="ovo",
            average="weighted",
        ),
        _multiclass_logits,
        ("logits", "labels"),
    ),
    _example(
        "AveragePrecision", mx.AveragePrecision, "multiclass", capacity=64, average="weighted"
    ),
    _example("AveragePrecisionBinned", mx.AveragePrecision, "binary", thresholds=50),
    # Exact curves have data-dependent lengths: host arrays, computed eagerly.
    _example("RocCurve", mx.RocCurve, "binary", capacity=64),
    _example("RocCurveBinned", mx.RocCurve, "multiclass", thresholds=20),
    _example("PrecisionRecallCurve", mx.PrecisionRecallCurve, "binary", capacity=64),
    _example("PrecisionRecallCurveBinned", mx.PrecisionRecallCurve, "multilabel", thresholds=20),
    _example("LogLoss", mx.LogLoss, "binary"),
    _example("LogLoss", mx.LogLoss, "multiclass"),
    _example("BrierScore", mx.BrierScore, "multiclass"),
    _example("ExpectedCalibrationError", mx.ExpectedCalibrationError, "multiclass", num_bins=5),
    _example(
        "ExpectedCalibrationError",
        mx.ExpectedCalibrationError,
        "multilabel",
        num_bins=5,
        norm="max",
    ),
    _example("ReliabilityDiagram", mx.ReliabilityDiagram, "binary", num_bins=5),
]

# A Collection: Precision / Recall / MCC share one confusion state, Accuracy keeps its own.
# (Its inputs are context entries; members read no mask, so the example has none.)
_scores = {"preds": "preds", "labels": "labels", "task": "multiclass", "num_classes": C}
EXAMPLES.append(
    Example(
        "Collection_multiclass",
        mx.Collection(
            metrics={
                "accuracy": mx.Accuracy(logits="preds", labels="labels"),
                "precision": mx.Precision(**_scores),
                "recall": mx.Recall(**_scores, average="weighted"),
                "mcc": mx.MatthewsCorrCoef(**_scores),
            }
        ),
        _multiclass,
        ("preds", "labels"),
        mask_input=None,
    )
)
