"""``metrix fid`` end to end: random InceptionV3 weights written with the real weight I/O,
small random PNG / .npy image folders, statistics files, and the value checked against a
float64 numpy FID (exact low-rank formula) on features computed directly with the backbone."""

import argparse

import numpy as np
import pytest

from metrix.backbones import inception, weights
from metrix.cli.fid import add_fid_parser

PIL = pytest.importorskip("PIL.Image")


def _random_params(seed=0):
    """Random params of the FID InceptionV3's shapes (abstract init: no forward pass).

    Kernels are He-scaled and BatchNorm statistics are non-trivial, so features are finite
    and vary with the image.
    """
    rng = np.random.default_rng(seed)
    flat = {}
    for name, shape in inception._param_shapes().items():
        leaf = name.rsplit("/", 1)[-1]
        if leaf == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            flat[name] = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        elif leaf == "var":
            flat[name] = rng.uniform(0.5, 1.5, shape)
        elif leaf == "scale":
            flat[name] = rng.uniform(0.8, 1.2, shape)
        else:  # bias, mean
            flat[name] = rng.normal(0, 0.1, shape)
    return weights.unflatten({k: v.astype(np.float32) for k, v in flat.items()})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    weights_path = weights.save(_random_params(), root / "inception_random.safetensors")
    rng = np.random.default_rng(1)
    images = {}
    for side, offset in (("a", 0), ("b", 60)):
        folder = root / side
        folder.mkdir()
        pixels = rng.integers(0, 196, (3, 64, 64, 3)) + offset
        images[side] = pixels.astype(np.uint8)
        for i, image in enumerate(images[side]):
            if side == "b" and i == 2:
                np.save(folder / f"img{i}.npy", image)  # .npy images are read too
            else:
                PIL.fromarray(image).save(folder / f"img{i}.png")
    return root, str(weights_path), images


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="metrix")
    add_fid_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("FID: ")]
    return float(line.split("FID:")[-1])


def _fid_from_rows(x, y):
    """FID of two row sets in float64, exact for any rank: tr sqrt(S_x S_y) is the nuclear
    norm of Xc Yc^T / sqrt((n-1)(m-1)) (the non-zero eigenvalues of S_x S_y are the squared
    singular values of that n x m matrix), so no 2048-d sqrtm is needed for 3 rows."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, m = len(x), len(y)
    nuclear = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (xc * xc).sum() / (n - 1) + (yc * yc).sum() / (m - 1) - 2 * nuclear)


def test_fid_cli_end_to_end(setup, capsys, tmp_path):
    """3 images per folder in batches of 2: one full batch and one padded, masked batch."""
    root, weights_path, images = setup
    stats_a, stats_b = tmp_path / "a.npz", tmp_path / "b.npz"
    argv = ["fid", str(root / "a"), str(root / "b"), "--weights", weights_path]
    argv += ["--batch-size", "2", "--save-stats-a", str(stats_a), "--save-stats-b", str(stats_b)]
    value = _run([*argv, "--no-progress"], capsys)
    # Reference: features straight from the backbone (batches of the shape the CLI compiled,
    # so no second compilation), float64 numpy FID of the rows.
    params = inception.load_params(weights_path)
    rows = []
    for side, saved in (("a", stats_a), ("b", stats_b)):
        padded = np.concatenate([images[side], np.zeros_like(images[side][:1])])
        feats = np.concatenate(
            [
                np.asarray(inception.inception_features(params, padded[i : i + 2])["2048"])
                for i in (0, 2)
            ]
        )[:3].astype(np.float64)
        mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
        with np.load(saved) as data:
            np.testing.assert_allclose(data["mu"], mu, rtol=1e-4, atol=1e-5 * np.abs(mu).max())
            np.testing.assert_allclose(
                data["sigma"], sigma, rtol=1e-3, atol=1e-4 * np.abs(sigma).max()
            )
        rows.append(feats)
    expected = _fid_from_rows(*rows)
    assert value > 0
    np.testing.assert_allclose(value, expected, rtol=1e-3)

    # Saved statistics stand in for folders (--stats-a, or .npz paths): the same value.
    assert _run(["fid", "--stats-a", str(stats_a), str(stats_b)], capsys) == pytest.approx(
        value, rel=1e-5
    )
    assert _run(["fid", str(stats_a), str(stats_b)], capsys) == pytest.approx(value, rel=1e-5)


def test_fid_cli_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        _run(["fid", str(tmp_path / "empty"), str(tmp_path / "empty")], capsys)
    with pytest.raises(SystemExit, match="two paths"):
        _run(["fid", str(tmp_path / "empty")], capsys)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        _run(["fid", str(tmp_path / "nope"), str(tmp_path / "empty")], capsys)
