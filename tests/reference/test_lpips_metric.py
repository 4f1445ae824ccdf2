"""``mx.LPIPS`` (through the metric: states, merges, masks, jit) against the ``lpips`` package.

The reference is ``lpips.LPIPS(net, pretrained=True, pnet_rand=True, version="0.1")``: a
random torchvision trunk (no download: torch.hub is blocked while it is built) and the real
calibration shipped inside the lpips package. Its state dict goes through metrix's converter;
metrix reads the calibration with :meth:`LPIPS.load_weights`-style loading from the same
shipped file. Per-pair distances come back through ``capacity=`` buffers, so every pair is
compared, not only the mean. Images are small (32x40; non-square to catch H/W swaps).
"""

from __future__ import annotations

import itertools
import sys
import types

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
for _name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_name, types.ModuleType(_name))
pytest.importorskip("torchvision")
lpips = pytest.importorskip("lpips")

from metrix.backbones.lpips_nets import convert_torchvision_state_dict
from metrix.perceptual import lpips_math as lpips_core
from metrix.perceptual.lpips import LPIPS

# Absolute tolerance on distances (float32 on both sides; values ~0.1-2). The core reaches ~1e-6.
ATOL = 1e-5
SIZE = (32, 40)
BATCHES = (2, 1, 2)  # uneven batches, merged in order (few shapes: few compiles)
N = sum(BATCHES)

_MODELS: dict[str, object] = {}


def _model(net: str):
    """lpips model with a random trunk and the shipped calibration; downloads are forbidden."""
    if net not in _MODELS:

        def no_download(*args, **kwargs):
            raise AssertionError(f"lpips tried to download: {args}")

        saved = torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file
        torch.hub.load_state_dict_from_url = torch.hub.download_url_to_file = no_download
        try:
            torch.manual_seed(0)
            model = lpips.LPIPS(
                net=net, pretrained=True, pnet_rand=True, version="0.1", verbose=False
            )
        finally:
            torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file = saved
        backbone = convert_torchvision_state_dict(net, model.state_dict())
        calibration = lpips_core.load_calibration(net)  # the shipped weights/v0.1/NET.pth
        _MODELS[net] = (model, backbone, calibration)
    return _MODELS[net]


def _pairs(seed: int, n: int = N, low: float = -1.0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, *SIZE, generator=gen) * (1 - low) + low
    b = torch.rand(n, 3, *SIZE, generator=gen) * (1 - low) + low
    return a, b


def _nhwc(t) -> np.ndarray:
    return np.ascontiguousarray(t.numpy().transpose(0, 2, 3, 1))


def _reference(model, a, b, spatial: bool, normalize: bool = False) -> np.ndarray:
    """Per-pair lpips distances; in spatial mode the mean of each pair's map."""
    model.spatial = spatial
    try:
        with torch.no_grad():
            out = model(a, b, normalize=normalize).numpy()
    finally:
        model.spatial = False
    return out.mean(axis=(1, 2, 3)) if spatial else out.reshape(-1)


def _batches(*arrays):
    edges = np.cumsum((0, *BATCHES))
    for start, stop in itertools.pairwise(edges):
        yield tuple(x[start:stop] for x in arrays)


@pytest.mark.parametrize("spatial", [False, True], ids=["scalar", "spatial"])
@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_merged_uneven_batches_match_lpips(net, spatial):
    model, backbone, calibration = _model(net)
    a, b = _pairs(seed=1)
    expected = _reference(model, a, b, spatial)
    metric = LPIPS(net=net, spatial=spatial, capacity=8)
    states = [
        metric.get_state(x, y, backbone, calibration) for x, y in _batches(_nhwc(a), _nhwc(b))
    ]
    state = states[0].merge(states[1]).merge(states[2])
    out = state.compute()
    np.testing.assert_allclose(np.asarray(out["per_image"][:N]), expected, atol=ATOL, rtol=0)
    assert np.isnan(np.asarray(out["per_image"][N:])).all()
    np.testing.assert_allclose(float(out["lpips"]), expected.mean(), atol=ATOL, rtol=0)
    # the plain mean state (no buffer) agrees, merged in another association
    plain = LPIPS(net=net, spatial=spatial)
    plain_states = [
        plain.get_state(x, y, backbone, calibration) for x, y in _batches(_nhwc(a), _nhwc(b))
    ]
    merged = plain_states[0].merge(plain_states[1].merge(plain_states[2]))
    np.testing.assert_allclose(float(merged.compute()), expected.mean(), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "net,spatial",
    [("alex", False), ("alex", True), ("vgg", False), ("squeeze", True)],
    ids=["alex-scalar", "alex-spatial", "vgg-scalar", "squeeze-spatial"],
)
def test_jit_with_mask_matches_lpips_on_kept_pairs(net, spatial):
    model, backbone, calibration = _model(net)
    a, b = _pairs(seed=2)
    keep = np.array([True, False, True, True, False])
    expected = _reference(model, a[keep], b[keep], spatial)
    metric = LPIPS(net=net, spatial=spatial, capacity=8)
    weights = {
        "backbone_params": jax.device_put(backbone),
        "calibration": jax.device_put(calibration),
    }

    @jax.jit
    def step(state, x, y, mask, weights):
        return state.merge(metric.get_state(x, y, mask=mask, **weights))

    state = step(metric.empty(), _nhwc(a), _nhwc(b), keep, weights)
    out = state.compute()
    assert int(state.pairs.count) == keep.sum()
    np.testing.assert_allclose(
        np.asarray(out["per_image"][: keep.sum()]), expected, atol=ATOL, rtol=0
    )
    np.testing.assert_allclose(float(out["lpips"]), expected.mean(), atol=ATOL, rtol=0)


def test_normalize_inputs_in_unit_range_match_lpips():
    model, backbone, calibration = _model("alex")
    a, b = _pairs(seed=3, n=2, low=0.0)  # [0, 1] images
    expected = _reference(model, a, b, spatial=False, normalize=True)
    metric = LPIPS(net="alex", normalize=True, capacity=2)
    out = metric.get_state(_nhwc(a), _nhwc(b), backbone, calibration).compute()
    np.testing.assert_allclose(np.asarray(out["per_image"]), expected, atol=ATOL, rtol=0)


def test_grad_wrt_calibration_matches_torch_autograd():
    """d mean_n LPIPS / d w_l: jax.grad through the metric vs torch autograd through lpips."""
    model, backbone, calibration = _model("alex")
    a, b = _pairs(seed=4, n=3)
    lins = [getattr(model, f"lin{k}").model[1].weight for k in range(5)]
    for w in lins:
        w.grad = None
        w.requires_grad_(True)
    model(a, b).mean().backward()
    expected = {f"lin{k}": w.grad.numpy().reshape(-1) for k, w in enumerate(lins)}
    for w in lins:
        w.grad = None

    metric = LPIPS(net="alex")
    grads = jax.jit(
        jax.grad(lambda cal: metric.get_state(_nhwc(a), _nhwc(b), backbone, cal).compute())
    )(jax.device_put(calibration))
    for key, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(np.asarray(grads[key]), value, atol=1e-5 * scale, rtol=0)
