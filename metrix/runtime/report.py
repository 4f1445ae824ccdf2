"""Computed values as text and plain data: named scalars (:func:`flatten`), the ``metrix eval``
table and JSON.

Values come as ``mx.compute`` / ``mx.evaluate`` return them: nested dicts of scalars, arrays
(per-class values, confusion matrices) and a few structured outputs (curves, reliability
diagrams, histograms). What an entry *is* is read from the metric that produced it when the
metric tree is given (:func:`value_kind`), and from its shape only when it is not: a group of
metrics named ``precision`` and ``recall`` is not a precision-recall curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["flatten", "json_value", "table_lines", "value_kind"]

# Metric class name -> the kind of its computed value (structured outputs only).
_KIND_OF_METRIC = {
    "RocCurve": "roc",
    "PrecisionRecallCurve": "pr",
    "ConfusionMatrix": "confusion",
    "ShowConfusionMatrix": "image",
    "ShowImages": "image",
    "ReliabilityDiagram": "reliability",
    "Histogram": "histogram",
    "ShowHistogram": "histogram",
}


def value_kind(value: Any, metric: Any = None) -> str | None:
    """``"roc"``, ``"pr"``, ``"reliability"``, ``"confusion"``, ``"histogram"``, ``"image"`` or
    ``None`` (plain values: scalars, arrays, groups).

    With a metric, its class decides (its subclasses too); without one, only the full key set
    of a curve (``fpr``, ``tpr``, ``thresholds`` / ``precision``, ``recall``, ``thresholds``)
    or of a reliability diagram, or a square integer matrix, are recognised.
    """
    if metric is not None and not isinstance(metric, Mapping):
        for cls in type(metric).__mro__:
            if cls.__name__ in _KIND_OF_METRIC:
                return _KIND_OF_METRIC[cls.__name__]
        return None
    if isinstance(value, Mapping):
        keys = set(value)
        if {"fpr", "tpr", "thresholds"} <= keys:
            return "roc"
        if {"precision", "recall", "thresholds"} <= keys:
            return "pr"
        if {"confidence", "accuracy", "count", "edges"} <= keys:
            return "reliability"
        return None
    if isinstance(value, (list, tuple)):
        return None
    array = np.asarray(value)
    square = array.ndim == 2 and array.shape[0] == array.shape[1] > 1
    if square and np.issubdtype(array.dtype, np.integer):
        return "confusion"
    return None


def _scalar(x) -> float:
    return float(np.asarray(x, np.float64))


def _element_names(n: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None and len(class_names) == n:
        return [str(c) for c in class_names]
    return [str(i) for i in range(n)]


def flatten(
    values: Any, sep: str = "/", class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Named scalars from a (nested) tree of computed values, for loggers.

    Nested dict keys are joined by ``sep``; an array gives one scalar per element, named by its
    index along each axis, or by ``class_names`` along an axis of that length::

        mx.flatten({"f1": {"per_class": [0.5, 0.75]}}, class_names=["cat", "dog"])
        # {"f1/per_class/cat": 0.5, "f1/per_class/dog": 0.75}

    Lists and tuples are arrays of their elements (per-class curve lists give one entry per
    class and point). Values are Python floats (NaN stays NaN; integers become floats);
    ``None`` entries are dropped. A bare scalar is returned under the key ``"value"``.
    """
    out: dict[str, float] = {}

    def walk(node, name):
        if node is None:
            return
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(child, f"{name}{sep}{key}" if name else str(key))
            return
        if isinstance(node, (list, tuple)):
            for label, child in zip(_element_names(len(node), class_names), node):
                walk(child, f"{name}{sep}{label}" if name else label)
            return
        array = np.asarray(node)
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool
        ):
            raise TypeError(f"mx.flatten: {name or 'the value'} is not numeric: {type(node).__name__}")
        if array.ndim == 0:
            out[name or "value"] = _scalar(array)
            return
        for label, row in zip(_element_names(array.shape[0], class_names), array):
            walk(row, f"{name}{sep}{label}" if name else label)

    walk(values, "")
    return out


def json_value(value: Any) -> Any:
    """Plain JSON data: dicts, lists, numbers; NaN and infinities become ``None`` (JSON null);
    arrays and curves become (nested) lists of their points."""
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if value is None:
        return None
    array = np.asarray(value)
    if array.ndim == 0:
        x = array.item()
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x
    return [json_value(v) for v in array]


# -- the table --------------------------------------------------------------------------------


def _number(x) -> str:
    """At least 4 significant digits (6 shown); integers in full."""
    array = np.asarray(x)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return str(int(array))
    return f"{float(array):.6g}"


def _curve_summary(kind: str, value: Mapping) -> str:
    first = value["fpr"] if kind == "roc" else value["precision"]
    per_class = isinstance(first, (list, tuple)) or np.ndim(first) == 2
    points = [len(c) for c in first] if per_class else [len(first)]
    what = "ROC curve" if kind == "roc" else "precision-recall curve"
    sizes = f"{len(points)} classes, {min(points)}-{max(points)} points" if per_class else (
        f"{points[0]} points"
    )
    return f"{what}, {sizes} (the points: --json; the plot: metrix demo / mx.plot)"


def table_lines(values: Any, metrics: Any = None, *, class_names=None) -> list[tuple[str, str]]:
    """``(name, text)`` rows: every value ``json_value`` holds, one row per scalar, per element of
    a 1-D array and per row of a 2-D array; curves are summarised (their points are in JSON)."""
    rows: list[tuple[str, str]] = []

    def walk(node, metric, name):
        kind = value_kind(node, metric)
        if kind in ("roc", "pr"):
            rows.append((name, _curve_summary(kind, node)))
        elif kind == "image":
            rows.append((name, f"image {list(np.shape(node))}"))
        elif isinstance(node, Mapping):
            for key, child in node.items():
                child_metric = metric.get(key) if isinstance(metric, Mapping) else None
                walk(child, child_metric, f"{name}.{key}" if name else str(key))
        elif isinstance(node, (list, tuple)):
            for i, child in enumerate(node):
                walk(child, None, f"{name}[{i}]")
        else:
            array = np.asarray(node)
            if array.ndim == 0:
                rows.append((name or "value", _number(array)))
            elif array.ndim == 1:
                for label, x in zip(_element_names(len(array), class_names), array):
                    rows.append((f"{name}[{label}]", _number(x)))
            else:
                for i, row in enumerate(array.reshape(array.shape[0], -1)):
                    rows.append((f"{name}[{i}]", " ".join(_number(x) for x in row)))

    walk(values, metrics, "")
    return rows
