"""FID statistics files: pytorch-fid / clean-fid layout, a recorded checksum, and refusals for
files that cannot be a covariance (a non-PSD sigma used to print ``FID: 0.000000``)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from metrix.cli.fid import add_fid_parser, read_image
from metrix.generative import ReferenceStats, frechet_distance


def _stats(seed=0, d=6, n=20):
    rows = np.random.default_rng(seed).normal(size=(n, d))
    return rows.mean(0), np.cov(rows, rowvar=False)


def test_round_trip_is_the_pytorch_fid_layout_with_a_checksum(tmp_path):
    mu, sigma = _stats()
    path = ReferenceStats(mu, sigma).save(tmp_path / "ref.npz")
    with np.load(path) as data:  # what pytorch-fid and clean-fid read
        np.testing.assert_array_equal(data["mu"], mu)
        np.testing.assert_array_equal(data["sigma"], sigma)
        assert len(str(data["sha256"])) == 64
    loaded = ReferenceStats.load(path)
    assert loaded == ReferenceStats(mu, sigma)
    assert loaded.sha256 == str(np.load(path)["sha256"])


def test_files_of_other_tools_have_no_checksum_and_load(tmp_path):
    mu, sigma = _stats()
    np.savez(tmp_path / "theirs.npz", mu=mu, sigma=sigma)
    np.testing.assert_array_equal(ReferenceStats.load(tmp_path / "theirs.npz").sigma, sigma)


def test_edited_file_is_refused(tmp_path):
    mu, sigma = _stats()
    path = ReferenceStats(mu, sigma).save(tmp_path / "ref.npz")
    with np.load(path) as data:
        np.savez(path, mu=data["mu"] + 1e-3, sigma=data["sigma"], sha256=data["sha256"])
    with pytest.raises(ValueError, match=r"ref\.npz.*sha256"):
        ReferenceStats.load(path)


def test_non_psd_and_asymmetric_sigma_are_refused(tmp_path):
    mu, sigma = _stats()
    bad = sigma - 2 * np.eye(len(mu)) * np.linalg.eigvalsh(sigma).max()
    np.savez(tmp_path / "neg.npz", mu=mu, sigma=bad)
    with pytest.raises(ValueError, match=r"neg\.npz.*negative eigenvalue"):
        ReferenceStats.load(tmp_path / "neg.npz")
    skew = sigma.copy()
    skew[0, 1] += 1.0
    np.savez(tmp_path / "skew.npz", mu=mu, sigma=skew)
    with pytest.raises(ValueError, match=r"skew\.npz.*not symmetric"):
        ReferenceStats.load(tmp_path / "skew.npz")
    np.savez(tmp_path / "nan.npz", mu=mu * np.nan, sigma=sigma)
    with pytest.raises(ValueError, match=r"nan\.npz.*finite"):
        ReferenceStats.load(tmp_path / "nan.npz")


def test_cli_compares_two_stats_files(tmp_path, capsys):
    (mu1, s1), (mu2, s2) = _stats(0), _stats(1)
    a = ReferenceStats(mu1, s1).save(tmp_path / "a.npz")
    b = ReferenceStats(mu2, s2).save(tmp_path / "b.npz")
    parser = argparse.ArgumentParser(prog="metrix")
    add_fid_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fid", a, b])
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip()
    # scipy's sqrtm formula as pytorch-fid computes it, on full-rank 6x6 covariances
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert out == f"FID: {float(frechet_distance(mu1, s1, mu2, s2)):.6f}"
    assert float(out.split()[1]) == pytest.approx(expected, rel=1e-6)


def test_sixteen_bit_png_is_refused_not_clipped(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    pixels = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    PIL.fromarray(pixels).save(tmp_path / "deep.png")  # Pillow picks mode I;16
    with pytest.raises(ValueError, match=r"deep\.png.*16-bit.*8-bit"):
        read_image(str(tmp_path / "deep.png"))
