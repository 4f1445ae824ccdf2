"""Registry example for COCO box mAP: a few boxes per image, padded, with per-box masks.

The generic tests split, merge, mask and shard whole images (``mask`` masks an image, as a
batch axis element); ``pred_mask`` / ``target_mask`` are the per-box padding, part of each
image's inputs. tests/reference/test_detection.py checks the values against pycocotools.
"""

import numpy as np

from metrix.detection.mean_ap import MeanAveragePrecision
from tests.registry import Example

D, T, C = 5, 4, 3  # detections / targets per image, classes
_KEYS = ("pred_boxes", "pred_scores", "pred_labels", "pred_mask", "target_boxes",
         "target_labels", "target_mask", "target_iscrowd")


def _images(rng, n):
    corner = rng.uniform(0, 100, (n, T, 2))
    size = np.exp(rng.uniform(np.log(4), np.log(300), (n, T, 2)))  # small to large
    targets = np.concatenate([corner, corner + size], -1)  # xyxy
    source = rng.integers(0, T, (n, D))
    near = np.take_along_axis(targets, source[..., None], 1)
    preds = near + rng.normal(0, 4, (n, D, 4))
    preds[..., 2:] = np.maximum(preds[..., 2:], preds[..., :2] + 1)
    target_labels = rng.integers(0, C, (n, T))
    pred_labels = np.where(rng.random((n, D)) < 0.8, np.take_along_axis(target_labels, source, 1),
                           rng.integers(0, C, (n, D)))
    return {
        "pred_boxes": preds.astype(np.float32),
        "pred_scores": np.round(rng.random((n, D)), 1).astype(np.float32),  # ties
        "pred_labels": pred_labels.astype(np.int32),
        "pred_mask": rng.random((n, D)) < 0.8,
        "target_boxes": targets.astype(np.float32),
        "target_labels": target_labels.astype(np.int32),
        "target_mask": rng.random((n, T)) < 0.75,
        "target_iscrowd": rng.random((n, T)) < 0.1,
    }


EXAMPLES = [
    Example(
        "MeanAveragePrecision",
        MeanAveragePrecision(
            **{k: k for k in (*_KEYS, "mask")},
            class_metrics=True,
            capacity=32,  # the distributed tests' 8 devices x 4 images
            detections_per_image=D,
            targets_per_image=T,
        ),
        _images,
        _KEYS,
    ),
]
