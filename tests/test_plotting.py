"""Plots: every kind writes a non-empty PNG; plot() walks a values tree; no matplotlib -> None."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import metrix as mx
from metrix.runtime import plotting

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 2000


def _values():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=60).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    metrics = {
        "acc": mx.Accuracy(logits="p", labels="y"),
        "curves": {
            "roc": mx.RocCurve(
                preds="p", labels="y", task="multiclass", num_classes=3, capacity=64
            ),
            "pr": mx.PrecisionRecallCurve(
                preds="p", labels="y", task="multiclass", num_classes=3, capacity=64
            ),
        },
        "cm": mx.ConfusionMatrix(preds="p", labels="y", num_classes=3),
        "rel": mx.ReliabilityDiagram(
            preds="p", labels="y", task="multiclass", num_classes=3, num_bins=5
        ),
        "hist": mx.Histogram(values="c", num_bins=8, low=0.0, high=1.0),
    }
    context = {"p": probs, "y": labels, "c": probs.max(-1)}
    return metrics, mx.compute(mx.get_states(metrics, context))


def test_plot_writes_one_png_per_plottable_entry(tmp_path):
    metrics, values = _values()
    paths = plotting.plot(values, tmp_path, metrics=metrics)
    names = sorted(p.name for p in paths)
    assert names == [
        "cm.png",
        "curves.pr.png",
        "curves.roc.png",
        "hist.png",
        "rel.png",
        "scalars.png",
    ]
    assert all(_is_png(p) for p in paths)


def test_plot_recognises_entries_without_metrics(tmp_path):
    _, values = _values()
    paths = plotting.plot(values, tmp_path, prefix="run1_")
    names = sorted(p.name for p in paths)
    # Histograms are plain count vectors: only known as such through their metric.
    assert names == [
        "run1_cm.png",
        "run1_curves.pr.png",
        "run1_curves.roc.png",
        "run1_rel.png",
        "run1_scalars.png",
    ]


def test_single_plots(tmp_path):
    rng = np.random.default_rng(1)
    binary = mx.RocCurve(preds="p", labels="y", capacity=64)(rng.random(40), rng.integers(0, 2, 40))
    assert _is_png(plotting.plot_roc(binary, tmp_path / "roc.png"))
    pr = mx.PrecisionRecallCurve(preds="p", labels="y", capacity=64)(
        rng.random(40), rng.integers(0, 2, 40)
    )
    assert _is_png(plotting.plot_precision_recall(pr, tmp_path / "pr.png"))
    assert _is_png(
        plotting.plot_confusion_matrix(np.array([[0.5, 0.5], [0.1, 0.9]]), tmp_path / "cm.png")
    )
    assert _is_png(
        plotting.plot_histogram(np.array([1, 5, 2]), tmp_path / "h.png", edges=[0, 1, 2, 4])
    )
    assert _is_png(
        plotting.plot_scalars({"a": 0.5, "b": -1.0, "c": float("nan")}, tmp_path / "sub" / "s.png")
    )


def test_no_matplotlib_gives_none_and_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    assert plotting.plot({"a": 1.0}, tmp_path) is None
    assert plotting.plot_scalars({"a": 1.0}, tmp_path / "s.png") is None
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
