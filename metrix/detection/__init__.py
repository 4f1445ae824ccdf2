"""Object detection metrics: COCO box mAP (:mod:`~metrix.detection.mean_ap`), its host-side
evaluation (:mod:`~metrix.detection.coco`) and box formats / IoU (:mod:`~metrix.detection.boxes`).
"""

import importlib

from metrix.detection.boxes import BOX_FORMATS, box_sizes, check_box_format, coco_box_iou, to_xywh
from metrix.detection.coco import (
    AREA_NAMES,
    AREA_RANGES,
    DEFAULT_IOU_THRESHOLDS,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_REC_THRESHOLDS,
    Boxes,
    CocoResult,
    evaluate,
    match,
    per_class,
    summarize,
)
from metrix.detection.mean_ap import DetectionBuffer, MeanAveragePrecision, pack_rows

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("boxes", "coco", "mean_ap")
__all__ = [
    name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__
]
