"""The metrix CLI end to end: demo, list, eval (subprocesses, as users run them)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metrix.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
acc: {metric: Accuracy, logits: preds.logits, labels: batch.label}
errors:
  mse: {metric: MSE, preds: preds.value, targets: batch.target}
  mae: {metric: MAE, preds: preds.value, targets: batch.target}
cm: {metric: ConfusionMatrix, preds: preds.logits, labels: batch.label, from_logits: true, num_classes: 3}
"""


def _run(*args, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.pop("XLA_FLAGS", None)  # as from a shell: the CLI must ask for its devices itself
    return subprocess.run(
        [sys.executable, "-m", "metrix", *args],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 50
    return {
        "preds.logits": rng.normal(size=(n, 3)).astype(np.float32),
        "batch/label": rng.integers(0, 3, n).astype(np.int32),
        "preds.value": rng.normal(size=n).astype(np.float32),
        "batch.target": rng.normal(size=n).astype(np.float32),
    }


def _expected(data):
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        mean_absolute_error,
        mean_squared_error,
    )

    pred = data["preds.logits"].argmax(-1)
    return {
        "acc": accuracy_score(data["batch/label"], pred),
        "mse": mean_squared_error(data["batch.target"], data["preds.value"]),
        "mae": mean_absolute_error(data["batch.target"], data["preds.value"]),
        "cm": confusion_matrix(data["batch/label"], pred, labels=[0, 1, 2]),
    }


def _check(values, data):
    expected = _expected(data)
    np.testing.assert_allclose(values["acc"], expected["acc"], rtol=1e-6)
    np.testing.assert_allclose(values["errors"]["mse"], expected["mse"], rtol=1e-5)
    np.testing.assert_allclose(values["errors"]["mae"], expected["mae"], rtol=1e-5)
    np.testing.assert_array_equal(values["cm"], expected["cm"])


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = _run("demo", "--out", str(out), "--steps", "150")
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert "each split over 8 CPU devices" in text
    for name in (
        "classification.accuracy",
        "classification.f1_macro",
        "classification.roc_auc",
        "classification.confusion_matrix",
        "calibration.ece",
        "calibration.log_loss",
        "embeddings.triplet",
        "embeddings.contrastive",
        "embeddings.fid_train_vs_test",
    ):
        assert name in text
    report = json.loads((out / "report.json").read_text())
    assert len(report["devices"]) == 8
    values = report["values"]
    assert values["classification"]["accuracy"] > 0.85
    assert (
        sum(map(sum, values["classification"]["confusion_matrix"]))
        == report["train"]["num_test"]
        == 360
    )
    assert sum(values["summaries"]["confidence"]) == 360
    assert values["embeddings"]["fid_train_vs_test"] >= 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "calibration.reliability.png",
        "classification.confusion_matrix.png",
        "curves.precision_recall.png",
        "curves.roc.png",
        "scalars.png",
        "summaries.confidence.png",
    ]
    assert all((out / p).stat().st_size > 5000 for p in pngs)


def test_list():
    result = _run("list")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    acc = lines.index(next(line for line in lines if line.startswith("Accuracy: ")))
    assert "Fraction of correct predictions" in lines[acc]
    assert lines[acc + 1].split() == ["required", "keys:", "labels"]
    assert lines[acc + 2].split() == ["optional", "keys:", "logits,", "preds,", "mask,", "weights"]
    assert lines[acc + 3].strip().startswith("options: top_k=1")
    fid = lines.index(next(line for line in lines if line.startswith("FID: ")))
    assert lines[fid + 1].strip() == "required keys: real or generated"
    names = {line.split(":")[0] for line in lines if line and not line.startswith(" ")}
    assert not names & {"Loss", "Collection", "Metric"}, "base classes are not metrics to list"
    pr = next(line for line in lines if line.startswith("PrecisionRecall: "))
    assert "(Kynkäänniemi et al. 2019)" in pr  # the sentence is not cut at "al."
    rows = cli.describe_metrics()
    assert f"{len(rows)} metrics" in result.stdout
    assert all(row["description"] for row in rows), [
        r["name"] for r in rows if not r["description"]
    ]


def test_eval_npz_json(tmp_path, data):
    np.savez(tmp_path / "preds.npz", **data)
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = _run(
        "eval",
        "--config",
        str(tmp_path / "c.yaml"),
        "--data",
        str(tmp_path / "preds.npz"),
        "--batch-size",
        "16",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _check(json.loads(result.stdout), data)


def test_eval_npy_directory_table(tmp_path, data, capsys):
    for name, array in data.items():
        path = tmp_path / "d" / (name.replace(".", "/") + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array)
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert (
        cli.main(
            [
                "eval",
                "--config",
                str(tmp_path / "c.yaml"),
                "--data",
                str(tmp_path / "d"),
                "--batch-size",
                "7",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "50 rows in 8 batches of 7" in text
    assert any(
        line.split() == ["acc", f"{_expected(data)['acc']:.6g}"] for line in text.splitlines()
    )
    matrix = _expected(data)["cm"]
    for i in range(3):
        assert any(line.split() == [f"cm[{i}]", *map(str, matrix[i])] for line in text.splitlines())
    assert "errors.mse" in text


def test_eval_reports_config_errors(tmp_path, data, capsys):
    np.savez(tmp_path / "p.npz", **data)
    (tmp_path / "bad.yaml").write_text(
        "acc: {metric: Acuracy, logits: preds.logits, labels: batch.label}"
    )
    assert (
        cli.main(
            ["eval", "--config", str(tmp_path / "bad.yaml"), "--data", str(tmp_path / "p.npz")]
        )
        == 2
    )
    assert (
        "bad.yaml: acc: unknown metric 'Acuracy'. Did you mean 'Accuracy'"
        in capsys.readouterr().err
    )


def test_nest_names():
    tree = cli._nest({"preds.logits": 1, "preds/probs": 2, "label": 3})
    assert tree == {"preds": {"logits": 1, "probs": 2}, "label": 3}
    with pytest.raises(cli.CommandError, match="conflicts"):
        cli._nest({"preds": 1, "preds.logits": 2})


def test_errors_are_one_line_with_debug_for_the_traceback(tmp_path, data, capsys):
    np.savez(tmp_path / "p.npz", **data)
    (tmp_path / "c.yaml").write_text(CONFIG)
    args = ["eval", "--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "p.npz")]
    assert cli.main([*args, "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["metrix eval: --batch-size must be >= 1, got 0 (run again with --debug for the traceback)"]
    assert cli.main(["eval", "--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "no.npz")]) == 2
    assert "no such data file" in capsys.readouterr().err
    with pytest.raises(cli.CommandError, match="batch-size"):
        cli.main([*args, "--batch-size", "0", "--debug"])


def test_eval_table_is_not_fooled_by_metrics_named_precision_and_recall(tmp_path, data, capsys):
    """A group holding `precision` and `recall` metrics is two values, not a PR curve."""
    np.savez(tmp_path / "p.npz", **data)
    (tmp_path / "c.yaml").write_text(
        "scores:\n"
        "  precision: {metric: Precision, preds: preds.logits, labels: batch.label, num_classes: 3,"
        " from_logits: true, average: macro}\n"
        "  recall: {metric: Recall, preds: preds.logits, labels: batch.label, num_classes: 3,"
        " from_logits: true, average: macro}\n"
    )
    assert cli.main(["eval", "--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "p.npz")]) == 0
    text = capsys.readouterr().out
    from sklearn.metrics import precision_score, recall_score

    pred, y = data["preds.logits"].argmax(-1), data["batch/label"]
    for name, fn in (("precision", precision_score), ("recall", recall_score)):
        line = next(line for line in text.splitlines() if line.startswith(f"scores.{name} "))
        assert float(line.split()[1]) == pytest.approx(fn(y, pred, average="macro"), rel=1e-5)
    assert "curve" not in text


def _png_folder(path, count=2):
    from PIL import Image

    path.mkdir()
    for i in range(count):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(path / f"{i}.png")
    return path


def test_fid_bertscore_and_convert_errors_are_one_line(tmp_path, capsys):
    a, b = _png_folder(tmp_path / "a"), _png_folder(tmp_path / "b")
    missing = tmp_path / "inception.safetensors"
    assert cli.main(["fid", str(a), str(b), "--weights", str(missing), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metrix fid: ") and "--debug" in err[0], err
    assert "inception.safetensors" in err[0]

    (tmp_path / "c.txt").write_text("a cat\n")
    (tmp_path / "r.txt").write_text("a dog\n")
    args = ["bertscore", "--cands", str(tmp_path / "c.txt"), "--refs", str(tmp_path / "r.txt")]
    assert cli.main([*args, "--model", str(tmp_path / "no_model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metrix bertscore: ") and "no_model" in err[0], err

    from metrix.backbones import inception

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert inception.main(["convert", str(bad), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "convert:" in err[0] and "--debug" in err[0], err
