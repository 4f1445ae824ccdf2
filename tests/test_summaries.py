"""Summaries: images, histograms and confusion-matrix images against numpy / sklearn /
matplotlib references; merges in and out of jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx

# -- ShowImages ------------------------------------------------------------------------------


def _nchw(rng, n, c=3, h=4, w=5):
    return rng.normal(size=(n, c, h, w)).astype(np.float32)


def test_show_images_keeps_the_first_images_across_merges_in_jit():
    rng = np.random.default_rng(0)
    metric = mx.ShowImages(
        images="x", num_images=4, rearrange="b c h w -> b h w c", in_vrange=(-2.0, 2.0),
        image_shape=(4, 5, 3),
    )
    batches = [_nchw(rng, n) for n in (3, 2, 4)]
    masks = [np.array([True, False, True]), np.array([True, True]), np.ones(4, bool)]

    @jax.jit
    def window(batches, masks):
        state = metric.empty()
        for x, m in zip(batches, masks):
            state = state.merge(metric.get_state(x, mask=m))
        return state

    state = window(batches, masks)
    kept = np.concatenate([x[m] for x, m in zip(batches, masks)])[:4]  # boolean indexing
    expected = np.clip((kept.transpose(0, 2, 3, 1) + 2.0) / 4.0, 0, 1)
    images = state.compute()
    assert images.shape == (4, 4, 5, 3) and images.dtype == jnp.float32
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-7)
    assert int(state.count) == 4 and state.overflowed  # truncated, not an error
    # compute under jit too (same shapes: the buffer is full).
    np.testing.assert_allclose(jax.jit(lambda s: s.compute())(state), expected, rtol=1e-6, atol=1e-7)


def test_show_images_partial_buffer_eager_trims_jit_pads():
    rng = np.random.default_rng(1)
    metric = mx.ShowImages(images="x", num_images=5, rearrange="b c h w -> b h w c")
    x = _nchw(rng, 2)
    state = metric.get_state(x)
    eager = state.compute()
    assert eager.shape == (2, 4, 5, 3)
    # Per-image min-max scaling when no range is given.
    hwc = x.transpose(0, 2, 3, 1)
    lo = hwc.min(axis=(1, 2, 3), keepdims=True)
    hi = hwc.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(eager, (hwc - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    padded = jax.jit(lambda s: s.compute())(state)
    assert padded.shape == (5, 4, 5, 3)
    np.testing.assert_allclose(padded[:2], eager, rtol=1e-6)
    assert np.all(np.asarray(padded[2:]) == 0)


def test_show_images_uint8_grayscale_and_rearrange_kwargs():
    rng = np.random.default_rng(2)
    flat = rng.uniform(0, 16, size=(3, 64)).astype(np.float32)  # sklearn digits layout
    metric = mx.ShowImages(
        images="x", num_images=2, rearrange="b (h w) -> b h w", rearrange_kwargs=(("h", 8),),
        in_vrange=(0.0, 16.0), uint8=True,
    )
    images = metric(flat)
    assert images.shape == (2, 8, 8, 1) and images.dtype == jnp.uint8
    expected = np.round(flat[:2].reshape(2, 8, 8, 1) / 16.0 * 255).astype(np.uint8)
    np.testing.assert_array_equal(images, expected)


def test_show_images_colormap_matches_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(2, 6, 7)).astype(np.float32)
    for cmap in ("viridis", "magma", "gray"):
        metric = mx.ShowImages(images="x", num_images=2, in_vrange=(0.0, 1.0), cmap=cmap)
        images = np.asarray(metric(x))
        assert images.shape == (2, 6, 7, 3)
        reference = matplotlib.colormaps[cmap](x)[..., :3]
        np.testing.assert_allclose(images, reference, atol=0.021)  # 17-sample table
    # Colormaps only apply to single-channel images.
    rgb = mx.ShowImages(images="x", num_images=1, in_vrange=(0.0, 1.0), cmap="viridis")
    out = rgb(rng.uniform(size=(1, 3, 3, 3)).astype(np.float32))
    assert out.shape == (1, 3, 3, 3)


def test_apply_colormap_edges_and_nan():
    out = np.asarray(mx.apply_colormap(jnp.array([-1.0, 0.0, 1.0, 2.0, jnp.nan]), "gray"))
    np.testing.assert_allclose(out, [[0, 0, 0], [0, 0, 0], [1, 1, 1], [1, 1, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match="colormap"):
        mx.ShowImages(images="x", cmap="jet")


def test_show_images_bad_layout_and_empty():
    metric = mx.ShowImages(images="x", num_images=2)
    with pytest.raises(ValueError, match="rearrange"):
        metric.get_state(np.zeros((2, 3, 4, 5, 6), np.float32))
    with pytest.raises(ValueError, match="shape"):
        metric.empty()  # needs image_shape
    sized = mx.ShowImages(images="x", num_images=2, image_shape=(4, 5, 3))
    empty = sized.empty()
    assert empty.images.shape == (2, 4, 5, 3) and empty.images.dtype == jnp.float32
    assert sized.empty().compute().shape == (0, 4, 5, 3)
    real = sized.get_state(np.ones((1, 4, 5, 3), np.uint8))  # ints are stored as float32
    assert real.images.dtype == empty.images.dtype
    np.testing.assert_array_equal(empty.merge(real).compute(), real.compute())


# -- ShowHistogram ---------------------------------------------------------------------------


def test_show_histogram_matches_numpy_over_merged_batches():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(50, 3)).astype(np.float32) * 1.5
    values[3, 1] = np.nan
    mask = rng.random(50) < 0.8
    metric = mx.ShowHistogram(values="v", mask="m", low=-2.0, high=2.0, num_bins=7)

    @jax.jit
    def merged(values, mask):
        parts = [metric.get_state(values[a:b], mask=mask[a:b]) for a, b in ((0, 11), (11, 12), (12, 50))]
        return mx.merge(*parts)

    out = merged(values, mask).compute()
    kept = values[mask].reshape(-1)
    finite = kept[~np.isnan(kept)]
    counts, edges = np.histogram(finite, bins=7, range=(-2.0, 2.0))
    np.testing.assert_array_equal(out["counts"], counts)
    np.testing.assert_allclose(out["edges"], edges, rtol=1e-6)
    assert float(out["below"]) == np.sum(finite < -2.0)
    assert float(out["above"]) == np.sum(finite > 2.0)
    assert float(out["nan"]) == np.isnan(kept).sum()
    ctx = {"v": values, "m": mask}
    np.testing.assert_array_equal(metric.get_state_from_context(ctx).compute()["counts"], counts)
    assert metric.empty().compute()["counts"].shape == (7,)
    with pytest.raises(ValueError, match="low < high"):
        mx.ShowHistogram(values="v", low=1.0, high=1.0)


# -- ShowConfusionMatrix ---------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["true", "pred", "all", None])
def test_show_confusion_matrix_matches_sklearn(normalize):
    metrics_lib = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    n, k = 60, 4
    labels = rng.integers(0, k, size=n).astype(np.int32)
    labels[labels == 3] = 2  # class 3 never occurs: an empty row
    logits = rng.normal(size=(n, k)).astype(np.float32)
    mask = rng.random(n) < 0.75
    metric = mx.ShowConfusionMatrix(
        labels="y", preds="l", mask="m", num_classes=k, normalize=normalize, cmap="gray", cell_size=3
    )
    parts = [
        metric.get_state(labels=labels[a:b], preds=logits[a:b], mask=mask[a:b])
        for a, b in ((0, 7), (7, 40), (40, n))
    ]
    state = mx.merge(*parts)
    preds = logits.argmax(-1)
    counts = metrics_lib.confusion_matrix(labels[mask], preds[mask], labels=range(k))
    np.testing.assert_array_equal(state.counts(), counts)
    with np.errstate(invalid="ignore"):
        if normalize is None:
            cells = counts / counts.max()
        else:
            cells = np.nan_to_num(
                metrics_lib.confusion_matrix(labels[mask], preds[mask], labels=range(k), normalize=normalize)
            )
    image = np.asarray(state.compute())
    assert image.shape == (k * 3, k * 3, 3)
    np.testing.assert_allclose(image[::3, ::3, 0], cells, rtol=1e-6, atol=1e-7)  # gray: value itself
    np.testing.assert_allclose(image[1::3, 2::3, 1], cells, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.jit(lambda s: s.compute())(state), image, rtol=1e-6, atol=1e-7)


def test_show_confusion_matrix_preds_uint8_and_errors():
    labels = np.array([0, 1, 1, 2, 2], np.int32)
    preds = np.array([0, 1, 0, 2, 1], np.int32)  # predicted labels rather than scores
    metric = mx.ShowConfusionMatrix(labels="y", preds="p", num_classes=3, uint8=True, cell_size=1)
    state = metric.get_state(labels=labels, preds=preds)
    np.testing.assert_array_equal(state.counts(), [[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    image = state.compute()
    assert image.shape == (3, 3, 3) and image.dtype == jnp.uint8
    assert isinstance(metric, mx.ConfusionMatrix)  # the same exact counts state
    assert metric.empty().counts().shape == (3, 3)
    with pytest.raises(ValueError, match="num_classes"):
        mx.ShowConfusionMatrix(labels="y", preds="p")
    with pytest.raises(ValueError, match="multilabel"):
        mx.ShowConfusionMatrix(labels="y", preds="p", task="multilabel", num_classes=3)
    with pytest.raises(ValueError, match="colormap"):
        mx.ShowConfusionMatrix(labels="y", preds="p", num_classes=3, cmap="jet")
    with pytest.raises(ValueError, match="label"):
        metric.get_state(labels=np.array([0, 5], np.int32), preds=np.array([0, 1], np.int32))
    binary = mx.ShowConfusionMatrix(labels="y", preds="p", task="binary", cell_size=2)
    image = binary(labels=np.array([0, 1, 1], np.int32), preds=np.array([0.2, 0.9, 0.1], np.float32))
    assert image.shape == (4, 4, 3)
