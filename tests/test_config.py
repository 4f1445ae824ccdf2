"""load_config: every shipped config loads; every kind of mistake is reported with file, entry and field."""

from pathlib import Path

import jax
import pytest

import metrix as mx
from metrix.runtime.config import ConfigError, load_config, metric_registry

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _metrics_of(tree):
    return jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, mx.Metric))


def test_configs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {
        "classification",
        "regression",
        "generative",
        "retrieval",
        "segmentation",
        "demo",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    metrics = load_config(path)
    leaves = _metrics_of(metrics)
    assert leaves and all(isinstance(m, mx.Metric) for m in leaves)
    assert all(type(m).__name__ in metric_registry() for m in leaves)


def test_loads_values_groups_and_types(tmp_path):
    path = _write(
        tmp_path,
        """
acc: {metric: Accuracy, logits: preds.logits, labels: batch.label, top_k: 2}
group:
  inner:
    f1: {metric: F1Score, preds: preds.logits, labels: batch.label, num_classes: 3, from_logits: true, threshold: 1}
""",
    )
    metrics = load_config(path)
    assert metrics["acc"] == mx.Accuracy(logits="preds.logits", labels="batch.label", top_k=2)
    f1 = metrics["group"]["inner"]["f1"]
    assert f1 == mx.F1Score(
        preds="preds.logits", labels="batch.label", num_classes=3, from_logits=True, threshold=1.0
    )
    assert isinstance(f1.threshold, float)  # an int in YAML becomes the declared float


def test_python_dicts_work_the_same(tmp_path):
    acc = mx.Accuracy(logits="a", labels="b")
    metrics = load_config({"acc": acc, "g": {"mean": {"metric": "Average", "values": "preds.x"}}})
    assert metrics["acc"] is acc and metrics["g"]["mean"] == mx.Average(values="preds.x")
    with pytest.raises(
        ConfigError, match=r"<dict>: g.mean: unknown metric 'Averag'\. Did you mean 'Average'"
    ):
        load_config({"g": {"mean": {"metric": "Averag", "values": "x"}}})


def test_tuples_from_yaml_lists(tmp_path):
    registry = metric_registry()
    # Find a metric with a tuple[float, ...] option to exercise list -> tuple conversion.
    import dataclasses

    found = [
        (n, f.name)
        for n, c in registry.items()
        for f in dataclasses.fields(c)
        if f.type == "tuple[float, ...]"
    ]
    if not found:
        pytest.skip("no metric with a tuple[float, ...] option")
    name, field = found[0]
    cls = registry[name]
    required = {f.name: "x.y" for f in dataclasses.fields(cls) if f.default is mx.REQUIRED}
    entry = {"metric": name, **required, field: [0.25, 1]}
    metric = load_config({"m": entry})["m"]
    assert getattr(metric, field) == (0.25, 1.0)
    with pytest.raises(
        ConfigError, match=rf"{field} must be tuple\[float, \.\.\.\], got \['a'\] \(list\)"
    ):
        load_config({"m": {**entry, field: ["a"]}})


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "acc: {metric: Acuracy, logits: a, labels: b}",
            r"c\.yaml: acc: unknown metric 'Acuracy'\. Did you mean 'Accuracy'",
        ),
        (
            "acc: {metric: NoSuchThingAtAll}",
            r"c\.yaml: acc: unknown metric 'NoSuchThingAtAll'\. Run `metrix list`",
        ),
        ("acc: {metric: os.system}", r"unknown metric 'os\.system'"),
        ("acc: {metric: Metric}", r"unknown metric 'Metric'"),
        (
            "acc: {metric: Accuracy, logits: a, labels: b, topk: 2}",
            r"c\.yaml: acc: Accuracy has no option 'topk'\. Did you mean 'top_k'\? Its options are \[",
        ),
        (
            "acc: {metric: Accuracy, logits: a, labels: b, top_k: '2'}",
            r"c\.yaml: acc\.top_k: Accuracy\.top_k must be int, got '2' \(str\)",
        ),
        (
            "acc: {metric: Accuracy, logits: a, labels: b, top_k: true}",
            r"acc\.top_k: Accuracy\.top_k must be int, got True \(bool\)",
        ),
        (
            "acc: {metric: Accuracy, logits: a, labels: b, top_k: 1.5}",
            r"Accuracy\.top_k must be int, got 1\.5 \(float\)",
        ),
        (
            "acc: {metric: Accuracy, logits: 3, labels: b}",
            r"acc\.logits: Accuracy\.logits must be Key \| None, got 3 \(int\)",
        ),
        (
            "acc: {metric: Accuracy, logits: 'a[', labels: b}",
            r"acc\.logits: Accuracy\.logits: 'a\[' is not a valid key path",
        ),
        ("acc: {metric: Accuracy, logits: a.__class__, labels: b}", r"acc\.logits: .*dunder names"),
        (
            "f1: {metric: F1Score, preds: a, labels: b, threshold: [1]}",
            r"f1\.threshold: F1Score\.threshold must be float, got \[1\] \(list\)",
        ),
        (
            "acc: {metric: Accuracy, logits: a}",
            r"c\.yaml: acc: Accuracy requires 'labels' \(e\.g\. labels: preds\.labels\)",
        ),
        (
            "iou: {metric: MeanIoU, targets: t, logits: l}",
            r"c\.yaml: iou: MeanIoU requires 'num_classes'",
        ),
        (
            "g: {inner: {acc: {metric: Accuracy, logits: a, labels: b, bogus: 1}}}",
            r"c\.yaml: g\.inner\.acc: Accuracy has no option 'bogus'",
        ),
        ("g: {acc: 3}", r"c\.yaml: g\.acc: expected a metric entry .* got 3 \(int\)"),
        ("g: {}", r"c\.yaml: g: empty group"),
        ("acc: {metric: 3}", r"c\.yaml: acc: 'metric' must be a metric class name, got 3 \(int\)"),
        ("- a\n- b", r"c\.yaml: a config is a non-empty mapping"),
        ("", r"c\.yaml: a config is a non-empty mapping"),
        ("acc: {metric: Accuracy, logits: a, labels: b\n", r"c\.yaml: not valid YAML"),
        ("acc: !!python/object/apply:os.system ['echo hacked']", r"c\.yaml: not valid YAML"),
        (
            "'1bad': {metric: Accuracy, logits: a, labels: b}",
            r"entry names must be identifiers, got '1bad'",
        ),
    ],
)
def test_errors_name_file_entry_and_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_metric_validation_errors_are_wrapped(tmp_path):
    # A value of the right type that the metric itself rejects (if it validates at construction).
    try:
        mx.MeanIoU(targets="t", logits="l", num_classes=-3)
    except Exception as err:  # noqa: BLE001
        with pytest.raises(ConfigError, match=rf"c\.yaml: iou: MeanIoU: {type(err).__name__}"):
            load_config(
                _write(tmp_path, "iou: {metric: MeanIoU, targets: t, logits: l, num_classes: -3}")
            )
    else:
        pytest.skip("MeanIoU does not validate num_classes at construction")


def test_files_that_are_not_yaml_are_refused(tmp_path):
    script = _write(tmp_path, "import os\nos.system('echo hacked')\n", name="config.py")
    with pytest.raises(ConfigError, match=r"config\.py: configs are YAML files .* never executed"):
        load_config(script)
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_registry_holds_only_exported_metric_classes():
    registry = metric_registry()
    assert "Accuracy" in registry and "FID" in registry and "TripletMarginLoss" in registry
    assert "Metric" not in registry
    assert all(issubclass(c, mx.Metric) and getattr(mx, n) is c for n, c in registry.items())
