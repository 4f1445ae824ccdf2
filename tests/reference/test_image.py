"""PSNR, SSIM and MS-SSIM against scikit-image and torchmetrics over merged uneven batches."""

import functools
import sys
import types

import numpy as np
import pytest

import metrix as mx
from tests import helpers

skimage_metrics = pytest.importorskip("skimage.metrics")
SPLITS = (0, 1, 4, 6)  # images per batch: 1, 3, 2


merged = functools.partial(helpers.merged, splits=SPLITS)


def images(seed=0, n=6, h=32, w=27, c=3, scale=1.0, noise=0.15):
    rng = np.random.default_rng(seed)
    # Smooth-ish targets (so SSIM is far from 0) and noisy predictions.
    base = rng.uniform(size=(n, h // 4 + 1, w // 4 + 1, c))
    targets = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)[:, :h, :w] + 0.1 * rng.uniform(size=(n, h, w, c))
    targets = np.clip(targets, 0, 1)
    preds = np.clip(targets + noise * rng.normal(size=targets.shape), 0, 1)
    mask = np.array([True, False, True, True, False, True])[:n]
    return (preds * scale).astype(np.float32), (targets * scale).astype(np.float32), mask


def torch_metrics():
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    torch = pytest.importorskip("torch")
    image = pytest.importorskip("torchmetrics.functional.image")
    return torch, image


def nchw(torch, x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("masked, jit", [(False, False), (True, True)])
def test_psnr_and_ssim_match_skimage(masked, jit):
    preds, targets, mask = images(scale=255.0)
    keep = np.flatnonzero(mask if masked else np.ones_like(mask))
    m = mask if masked else None
    psnr = merged(mx.PSNR(data_range=255.0), jit=jit, preds=preds, targets=targets, mask=m)
    want = np.mean([skimage_metrics.peak_signal_noise_ratio(targets[i], preds[i], data_range=255.0) for i in keep])
    np.testing.assert_allclose(psnr, want, rtol=1e-5)
    ssim = merged(mx.SSIM(data_range=255.0), jit=jit, preds=preds, targets=targets, mask=m)
    want = np.mean([
        skimage_metrics.structural_similarity(
            targets[i].astype(np.float64), preds[i].astype(np.float64), channel_axis=-1,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0,
        )
        for i in keep
    ])
    np.testing.assert_allclose(ssim, want, rtol=1e-5)


def test_ssim_reflect_matches_torchmetrics():
    torch, image = torch_metrics()
    preds, targets, mask = images(seed=1)
    got = merged(mx.SSIM(padding="reflect"), jit=True, preds=preds, targets=targets, mask=mask)
    want = image.structural_similarity_index_measure(
        nchw(torch, preds[mask]), nchw(torch, targets[mask]), data_range=1.0
    )
    np.testing.assert_allclose(got, float(want), rtol=1e-5)
    psnr = image.peak_signal_noise_ratio(nchw(torch, preds[mask]), nchw(torch, targets[mask]), data_range=1.0,
                                         dim=(1, 2, 3))
    np.testing.assert_allclose(merged(mx.PSNR(), preds=preds, targets=targets, mask=mask), float(psnr), rtol=1e-5)


@pytest.mark.parametrize("normalize", ["relu", None])
def test_multiscale_ssim_matches_torchmetrics(normalize):
    torch, image = torch_metrics()
    preds, targets, mask = images(seed=2, n=4, h=180, w=177, c=1, noise=0.3)
    splits = (0, 1, 3, 4)
    metric = mx.MultiScaleSSIM(padding="reflect", normalize=normalize)
    # jit only: eager MS-SSIM compiles every op of 5 scales per batch shape (slow on CPU).
    got = merged(metric, jit=True, splits=splits, preds=preds, targets=targets, mask=mask[:4])
    want = image.multiscale_structural_similarity_index_measure(
        nchw(torch, preds[mask[:4]]), nchw(torch, targets[mask[:4]]), data_range=1.0, normalize=normalize
    )
    np.testing.assert_allclose(got, float(want), rtol=1e-5)
    # The default ('valid', Wang et al.) differs from torchmetrics only in its last SSIM term.
    valid = merged(mx.MultiScaleSSIM(normalize=normalize), jit=True, splits=splits, preds=preds, targets=targets, mask=mask[:4])
    assert abs(float(valid) - float(want)) < 0.05


def test_edge_cases_and_errors():
    preds, targets, mask = images(seed=3)
    np.testing.assert_allclose(mx.SSIM()(targets, targets), 1.0, rtol=1e-6)
    assert float(mx.PSNR()(targets, targets)) == np.inf  # identical images
    assert np.isnan(mx.SSIM()(preds, targets, mask=np.zeros_like(mask)))  # no images
    with pytest.raises(ValueError, match="window"):
        mx.SSIM()(preds[:, :8, :8], targets[:, :8, :8])
    with pytest.raises(ValueError, match="176x176"):
        mx.MultiScaleSSIM()(preds, targets)
    with pytest.raises(ValueError, match="normalize"):
        mx.MultiScaleSSIM(normalize="clip")
    with pytest.raises(TypeError):
        mx.SSIM()(preds, targets[:, :-1])


def test_banded_filter_equals_the_convolution(monkeypatch):
    """The banded-matrix filtering (images up to 2048 px a side) and the convolution used
    beyond give the same local moments, and SSIM the same value either way."""
    import jax.numpy as jnp

    from metrix import image

    rng = np.random.default_rng(0)
    maps = jnp.asarray(rng.random((4, 23, 37)).astype(np.float32))
    window = image.gaussian_kernel(11, 1.5)
    banded = np.asarray(image._filter_valid(maps, window))
    monkeypatch.setattr(image, "_BANDED_MAX_SIDE", 0)
    conv = np.asarray(image._filter_valid(maps, window))
    assert banded.shape == conv.shape == (4, 13, 27)
    np.testing.assert_allclose(banded, conv, rtol=1e-5, atol=1e-6)
