"""What the classification metrics share: task names and task checks."""

from __future__ import annotations

import jax.numpy as jnp

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


def integral_labels(labels):
    """``(labels as int32, bad)``: float labels that hold whole numbers are class ids.

    sklearn reads ``[0., 1.]`` labels as binary, so float labels are accepted when every
    element is a whole number; a fractional or NaN float label (``0.7``) is flagged ``bad``
    (an invalid label: refused eagerly, counted under jit) and stored as ``-1``. Integer and
    boolean labels pass unchanged (``bad`` all false).
    """
    labels = jnp.asarray(labels)
    if labels.dtype == jnp.bool_:
        return labels.astype(jnp.int32), jnp.zeros(labels.shape, bool)
    if not jnp.issubdtype(labels.dtype, jnp.floating):
        return labels, jnp.zeros(labels.shape, bool)
    wide = labels.astype(jnp.float32)
    bad = ~(jnp.isfinite(wide) & (wide == jnp.round(wide))) | (jnp.abs(wide) > 2**30)
    return jnp.where(bad, -1, wide).astype(jnp.int32), bad


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


def infer_task(preds_shape, labels_shape, num_classes: int | None = None):
    """``(task, num_classes)`` read from the input shapes, for a metric built without ``task``.

    The rule (sklearn's ``type_of_target`` reading of a score matrix, Kauldron's shapes):

    * ``labels`` of the shape of ``preds``: ``"multilabel"`` over the last axis when ``preds``
      has at least 2 axes and the last has at least 2 entries (an indicator matrix), else
      ``"binary"`` (every element one decision);
    * ``labels`` of shape ``preds.shape[:-1]`` or ``preds.shape[:-1] + (1,)`` (class indices,
      Kauldron's trailing 1) with at least 2 classes: ``"multiclass"``, ``preds.shape[-1]``
      classes.

    Anything else raises; so does a ``num_classes`` that disagrees with the shapes.
    """
    preds_shape, labels_shape = tuple(preds_shape), tuple(labels_shape)
    if labels_shape == preds_shape:
        multilabel = len(preds_shape) >= 2 and preds_shape[-1] >= 2
        task, classes = ("multilabel", preds_shape[-1]) if multilabel else ("binary", None)
    elif preds_shape and labels_shape in (preds_shape[:-1], preds_shape[:-1] + (1,)):
        if preds_shape[-1] < 2:
            raise ValueError(
                f"preds {preds_shape} has one score per example: give labels of the same shape "
                "(binary) or one score per class"
            )
        task, classes = "multiclass", preds_shape[-1]
    else:
        raise ValueError(
            f"cannot infer the task from preds {preds_shape} and labels {labels_shape}: give "
            "labels of the shape of preds (binary / multilabel) or of preds.shape[:-1] (class "
            "indices, multiclass), or set task= and num_classes="
        )
    if num_classes is not None and classes is not None and classes != num_classes:
        raise ValueError(
            f"the inputs have {classes} classes (preds {preds_shape}) but num_classes={num_classes}"
        )
    return task, classes
