"""Classification: accuracy, confusion-count scores, ROC/PR curves and their areas, calibration.

One module per family, each a pure function beside a short metric class:

* :mod:`~metrix.classification.accuracy`: ``Accuracy``, ``BinaryAccuracy``.
* :mod:`~metrix.classification.confusion`: ``Precision``, ``Recall``, ``F1Score``, ``FBetaScore``,
  ``Specificity``, ``BalancedAccuracy``, ``MatthewsCorrCoef``, ``CohenKappa``, ``ConfusionMatrix``,
  all on one exact :class:`ConfusionState`.
* :mod:`~metrix.classification.curves`: ``RocAuc``, ``AveragePrecision``, ``RocCurve``,
  ``PrecisionRecallCurve`` (exact score buffers, or binned counts with ``thresholds=N``).
* :mod:`~metrix.classification.calibration`: ``LogLoss``, ``BrierScore``,
  ``ExpectedCalibrationError``, ``ReliabilityDiagram``.
"""

import importlib

from metrix.classification.accuracy import Accuracy, BinaryAccuracy, binarize, top_k_correct
from metrix.classification.calibration import (
    BrierScore,
    CalibrationState,
    ExpectedCalibrationError,
    LogLoss,
    ReliabilityDiagram,
    brier_values,
    calibration_bins,
    calibration_error_from_bins,
    confidence_and_correct,
    log_loss_values,
)
from metrix.classification.confusion import (
    BalancedAccuracy,
    CohenKappa,
    ConfusionMatrix,
    ConfusionState,
    F1Score,
    FBetaScore,
    MatthewsCorrCoef,
    Precision,
    Recall,
    Specificity,
    balanced_accuracy_from_confusion,
    cohen_kappa_from_confusion,
    confusion_counts,
    matthews_corrcoef_from_confusion,
    score_from_confusion,
    stat_scores,
)
from metrix.classification.curves import (
    AveragePrecision,
    BinnedScoresState,
    PrecisionRecallCurve,
    RocAuc,
    RocCurve,
    ScoresState,
    UndefinedMetricWarning,
    binary_average_precision,
    binary_distinct_points,
    binary_precision_recall_curve,
    binary_roc_auc,
    binary_roc_curve,
    binned_average_precision,
    binned_counts,
    binned_precision_recall_curve,
    binned_roc_auc,
    binned_roc_curve,
    multiclass_ovo_roc_auc,
    threshold_grid,
)

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("accuracy", "confusion", "curves", "calibration",)
__all__ = [name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__]
