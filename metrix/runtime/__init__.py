"""Running metrics: evaluation loops, training helpers, checkpoints, configs and plots."""

from metrix.runtime.checkpoint import (
    CheckpointError,
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
from metrix.runtime.training import TrainMetrics, empty_like_states, log_and_reset, window_step

__all__ = [
    "evaluate",
    "evaluate_scan",
    "initial_states",
    "pad_batch",
    "TrainMetrics",
    "empty_like_states",
    "log_and_reset",
    "window_step",
    "CheckpointError",
    "read_checkpoint_info",
    "restore_states",
    "save_states",
    "ConfigError",
    "load_config",
    "metric_registry",
    "plot",
    "plot_confusion_matrix",
    "plot_histogram",
    "plot_precision_recall",
    "plot_reliability",
    "plot_roc",
    "plot_scalars",
]
