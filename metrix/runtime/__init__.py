"""Running metrics: evaluation loops, training helpers, checkpoints, configs and plots."""

import importlib

from metrix.runtime.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    read_checkpoint_info,
    restore_states,
    save_states,
)
from metrix.runtime.config import ConfigError, load_config, metric_registry
from metrix.runtime.evaluate import evaluate, evaluate_scan, initial_states, pad_batch
from metrix.runtime.plotting import (
    plot,
    plot_confusion_matrix,
    plot_histogram,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
    plot_scalars,
)
from metrix.runtime.report import flatten, json_value, table_lines, value_kind
from metrix.runtime.training import TrainMetrics, empty_like_states, log_and_reset, window_step
from metrix.runtime.writers import TensorBoardWriter, WandbWriter, write

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("evaluate", "training", "checkpoint", "config", "plotting", "report", "writers")
__all__ = [name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__]
