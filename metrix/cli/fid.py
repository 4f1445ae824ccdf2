"""``metrix fid``: FID (and KID, IS, precision/recall, density/coverage) between two image
folders, or a folder and saved statistics, from the command line.

    metrix fid DIR_A DIR_B [--mode clean] [--weights FILE] [--batch-size 50] [--save-stats-a A.npz]
    metrix fid --stats-a REF.npz DIR_B          # a fixed reference side
    metrix fid DIR_B REF.npz                    # either side may be saved statistics

Images: PNG / JPEG / BMP / WebP (read with Pillow, converted to RGB; 16-bit and float images
are refused, not clipped) and ``.npy`` arrays (HxWx3 uint8, or HxW grey). Files are read in
sorted order, in batches of ``--batch-size`` images of one size; the last batch is padded and
masked, so every batch runs one compiled program (one compilation per image size). Each
batch goes through the FID InceptionV3 once (``--mode``: ``legacy_pytorch``, pytorch-fid's
bilinear resize, the default; ``clean``, clean-fid's antialiased bicubic), and every metric
is computed from that one pass: FID from the 2048-d pool3 statistics; with two folders also
KID, precision/recall and density/coverage on the pool3 rows, and Inception Score of side B
when the weights carry the output layer (pytorch-fid's ``.pth``; the TorchScript weights do
not). ``--metrics`` picks a subset. Weights from ``--weights`` or
:func:`metrix.backbones.inception.default_weights_path`; never downloaded. Statistics files
are ``.npz`` with keys ``mu`` and ``sigma`` (pytorch-fid / clean-fid layout) and a ``sha256``
of both, checked when present.

Register with ``add_fid_parser(subparsers)`` on the ``metrix`` parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Iterator

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".npy")
METRICS = ("fid", "kid", "is", "pr", "dc")
MODES = ("legacy_pytorch", "clean")

__all__ = [
    "add_fid_parser",
    "folder_batches",
    "folder_features",
    "folder_stats",
    "image_files",
    "read_image",
    "run_fid",
]


def add_fid_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``fid`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "fid",
        help="FID (KID, IS, precision/recall, density/coverage) of two image folders",
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
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="legacy_pytorch",
        help="image pipeline: pytorch-fid's bilinear resize (default) or clean-fid's bicubic",
    )
    parser.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help="comma-separated subset of fid,kid,is,pr,dc (default: all that apply)",
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


# Pillow modes holding more than 8 bits per channel: converting them to RGB clips silently.
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N", "RGB;16", "RGBA;16")


def read_image(path: str) -> np.ndarray:
    """One image as an HxWx3 uint8 array (Pillow for image formats, numpy for ``.npy``)."""
    if path.lower().endswith(".npy"):
        image = np.load(path, allow_pickle=False)
    else:
        try:
            from PIL import Image
        except ImportError as err:  # pragma: no cover - Pillow is optional
            raise ImportError(
                "metrix fid: reading PNG/JPEG needs Pillow; or give .npy images"
            ) from err
        with Image.open(path) as im:
            if im.mode in _WIDE_MODES:
                raise ValueError(
                    f"metrix fid: {path} is a {im.mode} ({'16-bit' if '16' in im.mode else '32-bit'}"
                    ") image; FID's network reads 8-bit pixels and converting would clip it: "
                    "convert the folder to 8-bit RGB first"
                )
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


def _progress(total: int, desc: str, progress: bool):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, unit="img", desc=desc, file=sys.stderr)


@dataclasses.dataclass
class FolderFeatures:
    """What one pass over a folder gives: the FID statistics and the kept feature rows."""

    stats: object  # metrix.generative.ReferenceStats
    rows: dict[str, np.ndarray]  # tap -> (N, d), empty when the rows were not kept


def folder_features(
    metric,
    params,
    files: list[str],
    batch_size: int,
    *,
    taps: tuple[str, ...] = ("2048",),
    keep_rows: bool = True,
    desc: str = "",
    progress: bool = True,
) -> FolderFeatures:
    """One InceptionV3 pass over ``files``: pool3 statistics (Chan-merged in ``metric``'s,
    an :class:`~metrix.FID`, state) and, with ``keep_rows``, the rows of every tap in
    ``taps`` (for KID, IS, precision/recall, density/coverage)."""
    from metrix.backbones.inception import inception_features

    step = _accumulate_step(metric)
    bar = _progress(len(files), desc, progress)
    state = metric.empty()
    kept: dict[str, list[np.ndarray]] = {t: [] for t in taps}
    for images, mask, count in folder_batches(files, batch_size):
        features = inception_features(params, images, taps=taps, mode=metric.mode)
        state = step(state, features["2048"], mask)
        if keep_rows:
            for tap in taps:
                kept[tap].append(np.asarray(features[tap])[:count])
        if bar is not None:
            bar.update(count)
    if bar is not None:
        bar.close()
    rows = {t: np.concatenate(v) for t, v in kept.items()} if keep_rows else {}
    return FolderFeatures(stats=state.real_stats(), rows=rows)


def folder_stats(
    metric, params, files: list[str], batch_size: int, *, desc: str = "", progress: bool = True
):
    """:class:`~metrix.generative.ReferenceStats` (mean, covariance) of the images in ``files``."""
    return folder_features(
        metric, params, files, batch_size, keep_rows=False, desc=desc, progress=progress
    ).stats


def _is_stats_file(path: str) -> bool:
    return str(path).lower().endswith(".npz") and os.path.isfile(path)


def _parse_metrics(text: str) -> tuple[str, ...]:
    chosen = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise SystemExit(f"metrix fid: --metrics takes a subset of {','.join(METRICS)}, got {text!r}")
    return chosen


def _row_metrics(chosen, rows_a, rows_b, n_a: int, n_b: int) -> list[str]:
    """Lines for KID, precision/recall and density/coverage on the pool3 rows of both sides."""
    import metrix as mx

    lines = []
    a, b = rows_a["2048"], rows_b["2048"]
    capacity = max(n_a, n_b)
    if "kid" in chosen:
        size = min(1000, n_a, n_b)
        if size < 2:
            lines.append("KID: n/a (needs at least 2 images per side)")
        else:
            kid_metric = mx.KID(subset_size=size, capacity=capacity)
            kid = kid_metric(real=a, generated=b)
            lines.append(
                f"KID: {float(kid['mean']):.6f} +- {float(kid['std']):.6f} "
                f"({kid_metric.num_subsets} subsets of {size})"
            )
    for name, cls, k in (("pr", mx.PrecisionRecall, 3), ("dc", mx.DensityCoverage, 5)):
        if name not in chosen:
            continue
        if min(n_a, n_b) <= k:
            lines.append(f"{cls.__name__}: n/a (k={k} neighbours need more than {k} images)")
            continue
        values = cls(k=k, capacity=capacity)(real=a, generated=b)
        lines.append(
            ", ".join(f"{key}: {float(v):.6f}" for key, v in values.items()) + f" (k={k})"
        )
    return lines


def run_fid(args: argparse.Namespace) -> int:
    """Run the ``fid`` subcommand; prints ``FID: <value>`` (then the other metrics)."""
    from metrix.generative import FID, InceptionScore, ReferenceStats, frechet_distance

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
    chosen = _parse_metrics(args.metrics)

    cache = {}

    def params_loader():
        if "params" not in cache:
            from metrix.backbones.inception import load_params

            cache["params"] = load_params(args.weights)
        return cache["params"]

    both_folders = not _is_stats_file(path_a) and not _is_stats_file(path_b)
    keep_rows = both_folders and any(m in chosen for m in ("kid", "pr", "dc"))
    metric = FID(num_features=2048, mode=args.mode)
    sides = {}
    for label, path in (("A", path_a), ("B", path_b)):
        if _is_stats_file(path):
            sides[label] = FolderFeatures(stats=ReferenceStats.load(path), rows={})
            continue
        files = image_files(path)
        params = params_loader()
        with_is = label == "B" and "is" in chosen and "fc" in params
        taps = ("2048", "logits") if with_is else ("2048",)
        sides[label] = folder_features(
            metric, params, files, args.batch_size, taps=taps,
            keep_rows=keep_rows or with_is, desc=label, progress=not args.no_progress,
        )  # fmt: skip
    stats_a, stats_b = sides["A"].stats, sides["B"].stats
    for stats, out in ((stats_a, args.save_stats_a), (stats_b, args.save_stats_b)):
        if out:
            written = stats.save(out)
            print(f"wrote {written} (sha256 {stats.sha256[:16]})", file=sys.stderr)
    if stats_a.num_features != stats_b.num_features:
        raise SystemExit(
            f"metrix fid: statistics of {stats_a.num_features} and {stats_b.num_features} features"
        )
    if "fid" in chosen:
        value = frechet_distance(
            stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma, precision=args.precision
        )
        print(f"FID: {float(value):.6f}")
    rows_a, rows_b = sides["A"].rows, sides["B"].rows
    if keep_rows:
        n_a, n_b = len(rows_a["2048"]), len(rows_b["2048"])
        for line in _row_metrics(chosen, rows_a, rows_b, n_a, n_b):
            print(line)
    if "is" in chosen and not _is_stats_file(path_b):
        if "logits" in rows_b:
            splits = min(10, len(rows_b["logits"]))
            score = InceptionScore(splits=splits, capacity=len(rows_b["logits"]))(
                logits=rows_b["logits"]
            )
            print(f"IS (B): {float(score['mean']):.6f} +- {float(score['std']):.6f} "
                  f"({splits} splits)")
        else:
            print("IS (B): n/a (these weights have no output layer: convert pytorch-fid's .pth)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m metrix.cli.fid fid ...``)."""
    parser = argparse.ArgumentParser(prog="metrix")
    add_fid_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
