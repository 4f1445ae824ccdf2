"""Thin renaming shim: calibrax 0.1.1 import names -> metrix (renames only, no maths)."""

from metrix.learning import (
    ArcFaceLoss,
    ContrastiveLoss,
    CosFaceLoss,
    HardNegativeMiner,
    MinedIndices,
    NTXentLoss,
    ProxyAnchorLoss,
    ProxyNCALoss,
    SemiHardMiner,
    TripletMarginLoss,
)
from metrix.stateful import (
    BERTScoreMetric,
    FIDMetric,
    FrozenBackboneMetric,
    InceptionScoreMetric,
    LPIPSMetric,
    LearnedMetric,
)
from metrix.protocols import (
    BatchableDatasetProtocol,
    BenchmarkProtocol,
    DatasetProtocol,
    MetricLearningProtocol,
    MetricProtocol,
    StatefulMetricProtocol,
)

__all__ = [
    "ArcFaceLoss",
    "BERTScoreMetric",
    "BatchableDatasetProtocol",
    "BenchmarkProtocol",
    "ContrastiveLoss",
    "CosFaceLoss",
    "DatasetProtocol",
    "FIDMetric",
    "FrozenBackboneMetric",
    "HardNegativeMiner",
    "InceptionScoreMetric",
    "LPIPSMetric",
    "LearnedMetric",
    "MetricLearningProtocol",
    "MetricProtocol",
    "MinedIndices",
    "NTXentLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "SemiHardMiner",
    "StatefulMetricProtocol",
    "TripletMarginLoss",
]
