"""``metrix fid``: FID between two image folders (or saved statistics) from the command line.

    metrix fid DIR_A DIR_B [--weights FILE] [--batch-size 50] [--save-stats-a A.npz] ...
    metrix fid --stats-a REF.npz DIR_B          # a fixed reference side
    metrix fid A.npz B.npz                      # either side may be saved statistics

Images: PNG / JPEG / BMP / WebP (read with Pillow, converted to RGB) and ``.npy`` arrays
(HxWx3 uint8, or HxW grey). Files are read in sorted order, in batches of
``--batch-size`` images of one size; the last batch is padded and masked, so every batch
runs one compiled program (one compilation per image size). Features are the FID
InceptionV3's 2048-d pool3 (weights from ``--weights`` or
:func:`metrix.backbones.inception.default_weights_path`; never downloaded). Statistics files
are ``.npz`` with keys ``mu`` and ``sigma`` (pytorch-fid / clean-fid layout).

Register with ``add_fid_parser(subparsers)`` on the ``metrix`` parser.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Iterator

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".npy")

__all__ = [
    "add_fid_parser",
    "folder_batches",
    "folder_stats",
    "image_files",
    "read_image",
    "run_fid",
]


def add_fid_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``fid`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "fid",
        help="FID between two image folders (or .npz statistics)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="DIR_A DIR_B (each an image folder or an .npz with mu/sigma); only DIR_B with --stats-a",
    )
    parser.add_argument(
        "--stats-a", metavar="NPZ", help="statistics (mu, sigma) of side A instead of DIR_A"
    )
    parser.add_argument(
        "--weights", metavar="FILE", help="converted FID InceptionV3 params (.safetensors/.npz)"
    )
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument(
        "--save-stats-a", metavar="NPZ", help="write side A's mu/sigma to this .npz"
    )
    parser.add_argument(
        "--save-stats-b", metavar="NPZ", help="write side B's mu/sigma to this .npz"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float64",
        help="precision of the final formula (float64 runs on the host; default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_fid)
    return parser


def image_files(folder: str) -> list[str]:
    """Image files directly in ``folder`` (sorted); raises if there are none."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"metrix fid: {folder} is not a directory")
    files = sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        raise FileNotFoundError(
            f"metrix fid: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}"
        )
    return files


def read_image(path: str) -> np.ndarray:
    """One image as an HxWx3 uint8 array (Pillow for image formats, numpy for ``.npy``)."""
    if path.lower().endswith(".npy"):
        image = np.load(path)
    else:
        try:
            from PIL import Image
        except ImportError as err:  # pragma: no cover - Pillow is optional
            raise ImportError(
                "metrix fid: reading PNG/JPEG needs Pillow; or give .npy images"
            ) from err
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"metrix fid: {path} is not an HxWx3 (or HxW) image: shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"metrix fid: {path} has dtype {image.dtype}; expected uint8 pixels")
    return image


def folder_batches(
    files: list[str], batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """``(images, mask, num_images)`` batches of ``batch_size`` same-sized images.

    A batch ends early when the image size changes; short batches are padded with zeros
    and masked, so each image size compiles once.
    """
    pending: list[np.ndarray] = []

    def flush():
        images = np.zeros((batch_size, *pending[0].shape), np.uint8)
        images[: len(pending)] = np.stack(pending)
        mask = np.arange(batch_size) < len(pending)
        return images, mask, len(pending)

    for path in files:
        image = read_image(path)
        if pending and image.shape != pending[0].shape:
            yield flush()
            pending = []
        pending.append(image)
        if len(pending) == batch_size:
            yield flush()
            pending = []
    if pending:
        yield flush()


@functools.cache
def _accumulate_step(metric):
    """One jitted merge for every folder: the metric's real side takes a batch of features."""
    import jax

    @jax.jit
    def step(state, features, mask):
        return state.merge(metric.get_state(real=features, real_mask=mask))

    return step


def folder_stats(
    metric, params, files: list[str], batch_size: int, *, desc: str = "", progress: bool = True
):
    """:class:`~metrix.generative.ReferenceStats` (mean, covariance) of the images in ``files``.

    Features come from :func:`~metrix.backbones.inception.inception_features` (one compiled
    network per image size, shared by every folder and caller) and are accumulated batch by
    batch in ``metric``'s (an :class:`~metrix.FID`) Chan-merged state.
    """
    from metrix.backbones.inception import inception_features

    step = _accumulate_step(metric)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(files), unit="img", desc=desc, file=sys.stderr)
        except ImportError:  # pragma: no cover - tqdm is optional
            bar = None
    state = metric.empty()
    for images, mask, count in folder_batches(files, batch_size):
        features = inception_features(params, images, taps=(metric.tap,))[metric.tap]
        state = step(state, features, mask)
        if bar is not None:
            bar.update(count)
    if bar is not None:
        bar.close()
    return state.real_stats()


def _side_stats(path_or_dir, metric, params_loader, desc, args):
    """``ReferenceStats`` of one side: read from an ``.npz`` or computed from a folder."""
    from metrix.generative import ReferenceStats

    if str(path_or_dir).lower().endswith(".npz") and os.path.isfile(path_or_dir):
        return ReferenceStats.load(path_or_dir)
    files = image_files(path_or_dir)
    return folder_stats(
        metric, params_loader(), files, args.batch_size, desc=desc, progress=not args.no_progress
    )


def run_fid(args: argparse.Namespace) -> int:
    """Run the ``fid`` subcommand; prints ``FID: <value>`` and returns the exit code."""
    from metrix.generative import FID, frechet_distance

    if args.stats_a:
        if len(args.paths) != 1:
            raise SystemExit("metrix fid: with --stats-a give exactly one path (DIR_B)")
        path_a, path_b = args.stats_a, args.paths[0]
    else:
        if len(args.paths) != 2:
            raise SystemExit("metrix fid: give two paths (DIR_A DIR_B), or --stats-a NPZ DIR_B")
        path_a, path_b = args.paths
    if args.batch_size < 1:
        raise SystemExit("metrix fid: --batch-size must be positive")

    cache = {}

    def params_loader():
        if "params" not in cache:
            from metrix.backbones.inception import load_params

            cache["params"] = load_params(args.weights)
        return cache["params"]

    metric = FID(num_features=2048)
    stats_a = _side_stats(path_a, metric, params_loader, "A", args)
    stats_b = _side_stats(path_b, metric, params_loader, "B", args)
    for stats, out in ((stats_a, args.save_stats_a), (stats_b, args.save_stats_b)):
        if out:
            print(f"wrote {stats.save(out)}", file=sys.stderr)
    if stats_a.num_features != stats_b.num_features:
        raise SystemExit(
            f"metrix fid: statistics of {stats_a.num_features} and {stats_b.num_features} features"
        )
    value = frechet_distance(
        stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma, precision=args.precision
    )
    print(f"FID: {float(value):.6f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m metrix.cli.fid fid ...``)."""
    parser = argparse.ArgumentParser(prog="metrix")
    add_fid_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
