"""What the classification metrics share: task names and task checks."""

from __future__ import annotations

_TASKS = ("binary", "multiclass", "multilabel")
_AVERAGES = ("micro", "macro", "weighted", "none")


def _check_task(task: str, num_classes: int | None) -> None:
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
    if task != "binary" and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(
            f"task={task!r} needs num_classes= (a positive int, static), got {num_classes!r}"
        )
    if task == "multiclass" and num_classes < 2:
        raise ValueError(f"multiclass needs num_classes >= 2, got {num_classes}")


def _check_elementwise_shapes(task: str, num_classes: int | None, preds, labels) -> None:
    """Binary and multilabel inputs: one shape for preds and labels, ``(*b, num_classes)``
    for multilabel."""
    if preds.shape != labels.shape:
        raise ValueError(
            f"preds {preds.shape} and labels {labels.shape} must have one shape for task={task!r}"
        )
    if task == "multilabel" and (preds.ndim < 1 or preds.shape[-1] != num_classes):
        raise ValueError(
            f"multilabel preds must have shape (*b, num_classes={num_classes}), got {preds.shape}"
        )


def _check_top_k(top_k, task: str, num_classes: int | None) -> None:
    """``top_k``: an int in ``[1, num_classes]``; above 1 only for multiclass (torchmetrics 1.9
    defines top-k stat scores for multiclass only)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    if top_k == 1:
        return
    if task != "multiclass":
        raise ValueError(
            f"top_k={top_k} is only defined for task='multiclass' (got task={task!r}); "
            "use top_k=1"
        )
    if top_k > num_classes:
        raise ValueError(f"top_k={top_k} must be <= num_classes={num_classes}")
