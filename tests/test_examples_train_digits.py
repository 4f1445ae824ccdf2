"""The digits example trains to > 90 % test accuracy and its windowed train loss falls."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("optax")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("train_digits_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_digits_learns_and_logs(capsys):
    example = _load_example()
    result = example.main(["--steps", "400", "--log-every", "100", "--eval-every", "200"])
    out = capsys.readouterr().out
    assert "test   accuracy=" in out and "train  " in out

    assert result["test_accuracy"] > 0.9
    train = result["history"]["train"]
    assert len(train) == 4 and len(result["history"]["eval"]) == 2
    assert train[-1]["loss"]["xent"] < train[0]["loss"]["xent"]  # windowed loss fell
    assert train[-1]["accuracy"] > train[0]["accuracy"]

    confusion = np.asarray(result["summaries"]["confusion"])
    assert confusion.shape == (80, 80, 3) and 0.0 <= confusion.min() and confusion.max() <= 1.0
    images = np.asarray(result["summaries"]["images"])
    assert images.shape == (8, 8, 8, 3) and 0.0 <= images.min() and images.max() <= 1.0
