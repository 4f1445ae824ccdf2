"""Kauldron -> metrix renaming shim for Kauldron's own metric tests (v1.4.2).

Renames only: every name below is a metrix name (or a marker that fails when used, for a
name metrix does not provide). No maths here.
"""
import types

import metrix as mx
from metrix.typing import Float

__all__ = ["Float", "auto_state", "base", "base_state", "kd", "kontext", "lpips", "metrics", "stats"]


class _Missing:
    """A Kauldron name metrix lacks: fails when used, naming it."""

    def __init__(self, name):
        self._name = name

    def __call__(self, *a, **k):
        raise AttributeError(f"metrix has no {self._name}")

    def __getattr__(self, attr):
        raise AttributeError(f"metrix has no {self._name}")

    def __mro_entries__(self, bases):
        raise AttributeError(f"metrix has no {self._name}")


def _get(name, mx_name=None):
    return getattr(mx, mx_name or name, None) or _Missing(mx_name or name)


_AUTO = dict(
    AutoState=_get("AutoState"),
    sum_field=_get("sum_field"),
    min_field=_get("min_field"),
    max_field=_get("max_field"),
    concat_field=_get("concat_field"),
    truncate_field=_get("truncate_field"),
    state_field=_get("nested_field"),
    static_field=_get("static_field"),
)
_BASE_STATE = dict(
    State=_get("State"),
    AverageState=_get("AverageState"),
    EmptyState=_get("EmptyState"),
    CollectFirstState=_get("CollectFirstState"),
    CollectingState=_get("CollectingState"),
    EMPTY=_get("EMPTY"),
)
_BASE = dict(
    Metric=_get("Metric"),
    NoopMetric=_get("NoopMetric"),
    TreeMap=_get("TreeMap"),
    TreeReduce=_get("TreeReduce"),
    SkipIfMissing=_get("SkipIfMissing"),
)

auto_state = types.SimpleNamespace(**_AUTO)
base_state = types.SimpleNamespace(**_BASE_STATE)
base = types.SimpleNamespace(**_BASE)
kontext = types.SimpleNamespace(Key=mx.Key, REQUIRED=mx.REQUIRED)
stats = types.SimpleNamespace(Norm=_get("Norm"))
lpips = types.SimpleNamespace(LpipsVgg=mx.LpipsVgg)
metrics = types.SimpleNamespace(
    **_AUTO, **_BASE_STATE, **_BASE,
    RocAuc=_get("RocAuc"), Norm=_get("Norm"), LpipsVgg=lpips.LpipsVgg,
    Accuracy=_get("Accuracy"),
)
kd = types.SimpleNamespace(metrics=metrics, kontext=kontext)
