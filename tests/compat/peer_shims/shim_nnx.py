"""Thin shim: flax.nnx for the Module machinery, metric classes from metrix.nnx (renames only)."""
import types

from flax import nnx as _flax_nnx

import metrix.nnx as _mnnx

metrics = types.SimpleNamespace(
    Average=_mnnx.Average,
    Accuracy=_mnnx.Accuracy,
    Welford=_mnnx.Welford,
    MultiMetric=_mnnx.MultiMetric,
    Metric=_mnnx.Metric,
    Statistics=_mnnx.Statistics,
    MetricState=_mnnx.MetricState,
)


class _Nnx(types.ModuleType):
    def __getattr__(self, name):
        return getattr(_flax_nnx, name)


nnx = _Nnx("nnx")
nnx.metrics = metrics
nnx.MultiMetric = _mnnx.MultiMetric
nnx.Metric = _mnnx.Metric
