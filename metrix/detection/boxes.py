"""Box formats and COCO's box IoU (host numpy, float64, crowd-aware).

Formats (the last axis holds 4 numbers):

* ``"xyxy"``: corners ``(x1, y1, x2, y2)``;
* ``"xywh"``: top-left corner and size ``(x, y, w, h)``, COCO's own format;
* ``"cxcywh"``: centre and size ``(cx, cy, w, h)``.

COCO evaluates on ``xywh`` boxes in float64, so every box is converted to ``xywh`` first
(:func:`to_xywh`) and the IoU then follows COCO's arithmetic exactly (:func:`coco_box_iou`):
for a detection ``d`` and a target ``g``,

    w = min(d_x + d_w, g_x + g_w) - max(d_x, g_x)        (0 when w <= 0; same for h)
    IoU = w h / (d_w d_h + g_w g_h - w h)                 (a regular target)
    IoU = w h / (d_w d_h)                                 (a crowd target)

A crowd target is a region of many objects: a detection inside it counts as covered, so
its overlap is measured against the detection's own area.
"""

from __future__ import annotations

import numpy as np

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def check_box_format(box_format: str) -> str:
    """``box_format`` when it is one of :data:`BOX_FORMATS`; a ``ValueError`` otherwise."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    return box_format


def to_xywh(boxes, box_format: str) -> np.ndarray:
    """``(..., 4)`` boxes in ``box_format`` as float64 ``xywh`` (COCO's format), host numpy.

    ``xyxy``: ``w = x2 - x1``; ``cxcywh``: ``x = cx - w / 2``; computed in float64 from the
    given values, as a user converting for pycocotools would.
    """
    b = np.asarray(boxes, np.float64)
    check_box_format(box_format)
    if box_format == "xywh":
        return b.copy()
    if box_format == "xyxy":
        return np.stack([b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], -1)
    w, h = b[..., 2], b[..., 3]
    return np.stack([b[..., 0] - w / 2, b[..., 1] - h / 2, w, h], -1)


def box_sizes(boxes, box_format: str):
    """Width and height of ``(..., 4)`` boxes in ``box_format`` (numpy or jax arrays).

    Only their signs are used on device (a negative size is an invalid box), so the
    float32 difference is enough there.
    """
    if box_format == "xyxy":
        return boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return boxes[..., 2], boxes[..., 3]


def coco_box_iou(detections, targets, crowd=None) -> np.ndarray:
    """COCO's IoU between ``xywh`` boxes: ``(..., D, 4)`` and ``(..., G, 4)`` -> ``(..., D, G)``.

    float64 host numpy, in the order of operations of pycocotools' ``bbIou`` (the module
    docstring), so values are bit-equal to it. ``crowd`` (``(..., G)`` bool): those targets
    divide by the detection's area instead of the union. Leading axes broadcast.
    """
    d = np.asarray(detections, np.float64)[..., :, None, :]
    g = np.asarray(targets, np.float64)[..., None, :, :]
    w = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    overlap = (w > 0) & (h > 0)
    inter = np.where(overlap, w * h, 0.0)
    det_area = d[..., 2] * d[..., 3]
    union = det_area + g[..., 2] * g[..., 3] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[..., None, :], det_area, union)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


__all__ = [
    "BOX_FORMATS",
    "box_sizes",
    "check_box_format",
    "coco_box_iou",
    "to_xywh",
]
