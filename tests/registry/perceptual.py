"""Registry examples for the perceptual metrics (LPIPS), small and offline.

``LPIPS`` runs a random-weight AlexNet trunk on 32x32 images (the smallest size the trunk
accepts); the backbone parameters and calibration are unbatched pytree inputs. Generic tests
slice every batched input along axis 0, so ``LPIPSFromFeatures`` is registered through a
subclass that takes its layers stacked on axis 1 (``(n, L, h, w, c)``) and unstacks them.
"""

import functools
from typing import Any

import numpy as np
from jaxtyping import Array, Float, Shaped

from metrix.backbones.lpips_nets import params_shapes
from metrix.perceptual import lpips_math as lpips_core
from metrix.perceptual.lpips import LPIPS, LPIPSFromFeatures
from tests.registry import Example

SIZE = 32


@functools.cache
def _alex_weights():
    rng = np.random.default_rng(1234)
    backbone = {
        k: {
            name: rng.normal(0, 0.05, leaf.shape).astype(np.float32) for name, leaf in layer.items()
        }
        for k, layer in params_shapes("alex").items()
    }
    calibration = {
        f"lin{k}": rng.uniform(0, 1, c).astype(np.float32)
        for k, c in enumerate(lpips_core.LPIPS_CHANNELS["alex"])
    }
    return backbone, calibration


def _images(rng, n):
    backbone, calibration = _alex_weights()
    a = rng.uniform(-1, 1, size=(n, SIZE, SIZE, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.3, size=a.shape), -1, 1).astype(np.float32)
    return {"img_a": a, "img_b": b, "backbone_params": backbone, "calibration": calibration}


class StackedLPIPSFromFeatures(LPIPSFromFeatures):
    """``LPIPSFromFeatures`` with equal-shaped layers stacked on axis 1 (for generic slicing)."""

    def get_state(
        self,
        features_a: Float[Array, "n l h w c"],
        features_b: Float[Array, "n l h w c"],
        calibration: Any,
        mask: Shaped[Array, "n"] | None = None,
    ):
        layers = features_a.shape[1]
        return super().get_state(
            [features_a[:, i] for i in range(layers)],
            [features_b[:, i] for i in range(layers)],
            calibration,
            mask=mask,
        )


def _features(rng, n):
    shape = (n, 3, 4, 5, 6)  # 3 layers of 4x5 maps with 6 channels
    return {
        "features_a": np.maximum(rng.normal(size=shape), 0).astype(np.float32),
        "features_b": np.maximum(rng.normal(size=shape), 0).astype(np.float32),
        "calibration": {
            f"lin{k}": np.linspace(0.1, 1.0, 6, dtype=np.float32) * (k + 1) for k in range(3)
        },
    }


IMAGES = ("img_a", "img_b")
FEATURES = ("features_a", "features_b")

EXAMPLES = [
    # one image example (a backbone per example is the costly part); spatial mode is
    # exercised on features below and against lpips in tests/reference/test_lpips_metric.py
    Example("LPIPS", LPIPS(net="alex", capacity=40), _images, IMAGES, rtol=1e-4, atol=1e-6),
    Example(
        "LPIPSFromFeatures",
        StackedLPIPSFromFeatures(capacity=40),
        _features,
        FEATURES,
        rtol=1e-5,
        atol=1e-6,
    ),
    Example(
        "LPIPSFromFeatures_spatial",
        StackedLPIPSFromFeatures(spatial=True, image_size=(8, 10)),
        _features,
        FEATURES,
        rtol=1e-5,
        atol=1e-6,
    ),
]
