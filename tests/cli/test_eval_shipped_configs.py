"""`metrix eval` on every shipped config, with data shaped as the config's comment says: the
table prints every value that --json reports, and the values equal sklearn's."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as sk

from metrix.cli import main as cli
from metrix.runtime.report import flatten

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
N, C = 200, 10


def _classification(rng):
    logits = rng.normal(size=(N, C)).astype(np.float32)
    labels = rng.integers(0, C, size=N).astype(np.int32)
    logits[np.arange(N), labels] += 1.5  # better than chance
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return {"preds.logits": logits, "preds.probs": probs.astype(np.float32),
            "batch.label": labels, "batch.mask": np.ones(N, bool)}


def _regression(rng):
    target = rng.normal(size=N).astype(np.float32)
    return {"preds.value": (target + 0.5 * rng.normal(size=N)).astype(np.float32),
            "batch.target": target, "batch.mask": np.ones(N, bool)}


def _segmentation(rng):
    seg = rng.integers(0, 21, size=(N // 20, 8, 8)).astype(np.int32)
    seg[:, 0, 0] = 255
    return {"preds.logits": rng.normal(size=(N // 20, 8, 8, 21)).astype(np.float32),
            "batch.segmentation": seg, "batch.mask": np.ones(N // 20, bool)}


def _retrieval(rng):
    return {"preds.embedding": rng.normal(size=(N, 8)).astype(np.float32),
            "batch.label": rng.integers(0, 5, size=N).astype(np.int32),
            "preds.scores": rng.normal(size=(N, 20)).astype(np.float32),
            "batch.relevance": (rng.random((N, 20)) < 0.2).astype(np.float32),
            "batch.mask": np.ones(N, bool)}


def _generative(rng):
    n = 1000  # KID's subset_size
    return {"feats.real": rng.normal(size=(n, 2048)).astype(np.float32),
            "feats.generated": (rng.normal(size=(n, 2048)) + 0.1).astype(np.float32),
            "preds.class_logits": rng.normal(size=(n, 1008)).astype(np.float32),
            "batch.mask": np.ones(n, bool)}


def _demo(rng):
    data = _classification(rng)
    data["preds.confidence"] = data["preds.probs"].max(-1)
    data["preds.embedding"] = rng.normal(size=(N, 32)).astype(np.float32)
    test = rng.random(N) < 0.5
    data.update({"mask.test": test, "mask.train": ~test})
    return data


def _audio(rng):
    target = rng.normal(size=(N, 400)).astype(np.float32)
    return {"batch.audio": target,
            "preds.audio": (target + 0.3 * rng.normal(size=target.shape)).astype(np.float32),
            "batch.mask": np.ones(N, bool)}


def _detection(rng):
    n, d, t = 40, 10, 6
    xy = rng.uniform(0, 300, (n, t, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(200), (n, t, 2)))
    targets = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    source = rng.integers(0, t, (n, d))
    boxes = np.take_along_axis(targets, source[..., None], 1) + rng.normal(0, 3, (n, d, 4))
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2] + 1)
    labels = rng.integers(0, 5, (n, t)).astype(np.int32)
    return {"preds.boxes": boxes.astype(np.float32), "preds.scores": rng.random((n, d)).astype(np.float32),
            "preds.labels": np.take_along_axis(labels, source, 1), "preds.box_mask": rng.random((n, d)) < 0.9,
            "batch.boxes": targets, "batch.labels": labels, "batch.box_mask": rng.random((n, t)) < 0.8,
            "batch.iscrowd": rng.random((n, t)) < 0.05, "batch.mask": np.ones(n, bool)}


def _text_generation(rng):
    n, length, refs, vocab = 40, 12, 2, 30
    words = rng.integers(0, vocab, (n, length)).astype(np.int32)
    references = np.where(rng.random((n, refs, length)) < 0.6, words[:, None], rng.integers(0, vocab, (n, refs, length)))
    chars = rng.integers(97, 110, (n, 3 * length)).astype(np.int32)
    ref_chars = np.where(rng.random((n, refs, 3 * length)) < 0.7, chars[:, None], 98).astype(np.int32)
    return {"preds.word_ids": words, "preds.word_mask": np.arange(length) < rng.integers(4, length + 1, (n, 1)),
            "batch.reference_word_ids": references.astype(np.int32),
            "batch.reference_word_mask": np.ones((n, refs, length), bool),
            "batch.reference_present": np.stack([np.ones(n, bool), rng.random(n) < 0.5], axis=1),
            "preds.char_ids": chars, "preds.char_mask": np.ones((n, 3 * length), bool),
            "batch.reference_char_ids": ref_chars, "batch.reference_char_mask": np.ones((n, refs, 3 * length), bool),
            "batch.mask": np.ones(n, bool)}


DATA = {"audio": _audio, "text_generation": _text_generation, "detection": _detection, "classification": _classification, "regression": _regression,
        "segmentation": _segmentation, "retrieval": _retrieval, "demo": _demo,
        "generative": _generative}


def test_every_shipped_config_has_data_here():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(DATA), (
        "a new config in configs/: add its data maker to DATA"
    )


def _eval(tmp_path, name, data, capsys, *extra):
    np.savez(tmp_path / "d.npz", **data)
    argv = ["eval", "--config", str(CONFIGS / f"{name}.yaml"), "--data", str(tmp_path / "d.npz"),
            "--batch-size", "64", *extra]
    assert cli.main(argv) == 0
    return capsys.readouterr().out


def _table(text):
    rows = {}
    for line in text.splitlines()[1:]:
        name, _, value = line.partition("  ")
        rows[name.strip()] = value.strip()
    return rows


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "generative" else n for n in DATA]
)
def test_table_prints_every_value_the_json_reports(tmp_path, name, capsys):
    data = DATA[name](np.random.default_rng(0))
    values = json.loads(_eval(tmp_path, name, data, capsys, "--json"))
    rows = _table(_eval(tmp_path, name, data, capsys))
    for key, value in flatten(_no_curves(values), sep=".").items():
        parts = key.split(".")
        # Array elements print as name[i] (rows of matrices as name[i] with the row's values).
        candidates = [key] + [
            ".".join(parts[:i]) + "".join(f"[{p}]" for p in parts[i:j])
            for i in range(1, len(parts)) for j in range(i + 1, len(parts) + 1)
        ]
        found = [rows[c] for c in candidates if c in rows]
        assert found, f"{key} is in --json but not in the table"
        printed = [float(x) if x != "nan" else math.nan for x in found[0].split()]
        assert any(
            (math.isnan(value) and math.isnan(p)) or p == pytest.approx(value, rel=1e-5, abs=1e-9)
            for p in printed
        ), (key, value, found[0])


def _no_curves(values):
    if isinstance(values, dict):
        if {"thresholds"} <= set(values):
            return {}
        return {k: _no_curves(v) for k, v in values.items()}
    return None if values is None else values


def test_classification_values_equal_sklearn(tmp_path, capsys):
    data = _classification(np.random.default_rng(1))
    rows = _table(_eval(tmp_path, "classification", data, capsys))
    y, logits, probs = data["batch.label"], data["preds.logits"], data["preds.probs"]
    pred = logits.argmax(-1)
    expected = {
        "accuracy": sk.accuracy_score(y, pred),
        "top5_accuracy": sk.top_k_accuracy_score(y, logits, k=5, labels=range(C)),
        "balanced_accuracy": sk.balanced_accuracy_score(y, pred),
        "precision": sk.precision_score(y, pred, average="macro", zero_division=0),
        "recall": sk.recall_score(y, pred, average="macro", zero_division=0),
        "f1": sk.f1_score(y, pred, average="macro", zero_division=0),
        "mcc": sk.matthews_corrcoef(y, pred),
        "roc_auc": sk.roc_auc_score(y, probs, multi_class="ovr", labels=range(C)),
        "calibration.log_loss": sk.log_loss(y, probs, labels=range(C)),
        "calibration.brier": np.mean(np.sum((probs - np.eye(C)[y]) ** 2, axis=1)),
    }
    for name, value in expected.items():
        assert float(rows[name]) == pytest.approx(value, rel=1e-4), name
    matrix = sk.confusion_matrix(y, pred, labels=range(C))
    for i in range(C):
        assert [int(x) for x in rows[f"confusion_matrix[{i}]"].split()] == list(matrix[i])


def test_regression_values_equal_sklearn(tmp_path, capsys):
    from scipy import stats

    data = _regression(np.random.default_rng(2))
    rows = _table(_eval(tmp_path, "regression", data, capsys))
    p, t = data["preds.value"].astype(np.float64), data["batch.target"].astype(np.float64)
    expected = {
        "mse": sk.mean_squared_error(t, p), "rmse": np.sqrt(sk.mean_squared_error(t, p)),
        "mae": sk.mean_absolute_error(t, p), "r2": sk.r2_score(t, p),
        "explained_variance": sk.explained_variance_score(t, p),
        "pearson": stats.pearsonr(p, t)[0], "spearman": stats.spearmanr(p, t)[0],
    }
    for name, value in expected.items():
        assert float(rows[name]) == pytest.approx(value, rel=1e-4), name


def test_logdir_writes_tensorboard_event_files(tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = _regression(np.random.default_rng(3))
    out = _eval(tmp_path, "regression", data, capsys, "--logdir", str(tmp_path / "tb"))
    assert "TensorBoard event files" in out
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    (mse,) = events.Scalars("mse")
    assert mse.step == 4  # 200 rows in batches of 64
    assert mse.value == pytest.approx(float(_table(out)["mse"]), rel=1e-5)


def test_audio_values_equal_the_closed_forms(tmp_path, capsys):
    data = _audio(np.random.default_rng(4))
    rows = _table(_eval(tmp_path, "audio", data, capsys))
    p, t = data["preds.audio"].astype(np.float64), data["batch.audio"].astype(np.float64)
    snr = 10 * np.log10((t**2).sum(-1) / ((p - t) ** 2).sum(-1))
    pz, tz = p - p.mean(-1, keepdims=True), t - t.mean(-1, keepdims=True)
    scaled = (pz * tz).sum(-1, keepdims=True) / (tz**2).sum(-1, keepdims=True) * tz
    si_snr = 10 * np.log10((scaled**2).sum(-1) / ((pz - scaled) ** 2).sum(-1))
    assert float(rows["snr"]) == pytest.approx(snr.mean(), rel=1e-5)
    assert float(rows["si_snr"]) == pytest.approx(si_snr.mean(), rel=1e-5)
