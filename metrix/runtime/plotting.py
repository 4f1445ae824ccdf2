"""PNG plots of computed metric values: scalars, ROC / PR curves, confusion matrices,
reliability diagrams and histograms.

matplotlib is optional: without it every function returns ``None`` after a one-line note on
stderr. Plots are drawn on Agg canvases (no display needed) without pyplot, so neither the
global backend nor pyplot's figure list is touched.

:func:`plot` walks a (nested) dict of values, as ``mx.compute`` or ``mx.evaluate`` return
them, and writes one PNG per plottable entry plus a bar chart of all scalars. An entry is
recognised by its metric when ``metrics=`` is given (``RocCurve``, ``PrecisionRecallCurve``,
``ConfusionMatrix``, ``ReliabilityDiagram``, ``Histogram``), otherwise by its shape: a dict
with ``fpr``/``tpr`` is a ROC curve, ``precision``/``recall`` a PR curve,
``confidence``/``accuracy``/``count``/``edges`` a reliability diagram, a square integer
matrix a confusion matrix.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from metrix.runtime.report import value_kind

__all__ = [
    "lower_is_better",
    "plot",
    "plot_confusion_matrix",
    "plot_histogram",
    "plot_precision_recall",
    "plot_reliability",
    "plot_roc",
    "plot_scalars",
]


class _Figures:
    """Figures drawn on an Agg canvas without pyplot: no global backend switch, no display."""

    def __init__(self, figure_cls, canvas_cls):
        self._figure_cls, self._canvas_cls = figure_cls, canvas_cls

    def subplots(self, nrows=1, ncols=1, *, figsize, **kwargs):
        fig = self._figure_cls(figsize=figsize)
        self._canvas_cls(fig)
        return fig, fig.subplots(nrows, ncols, **kwargs)


def _pyplot():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(
            "metrix: matplotlib is not installed; no plots written (pip install matplotlib)",
            file=sys.stderr,
        )
        return None
    return _Figures(Figure, FigureCanvasAgg)


def _save(fig, plt, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _per_class(x) -> list[np.ndarray]:
    """A curve coordinate as a list of 1-D arrays (one per class for multiclass outputs)."""
    if isinstance(x, (list, tuple)):
        return [np.asarray(c, np.float64) for c in x]
    x = np.asarray(x, np.float64)
    return [x] if x.ndim == 1 else list(x)


def _label(i: int, n: int) -> str | None:
    return f"class {i}" if n > 1 else None


def _bars(ax, names, numbers, *, xlabel, bounded):
    y = np.arange(len(names))[::-1]
    finite = [v if math.isfinite(v) else 0.0 for v in numbers]
    ax.barh(y, finite, color="tab:blue" if bounded else "tab:orange")
    for yi, v, f in zip(y, numbers, finite):
        ax.text(f, yi, f" {v:.4g}", va="center", ha="left" if f >= 0 else "right", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.axvline(0, color="black", lw=0.6)
    if bounded:
        ax.set_xlim(0, 1.18)  # room for the written values
    else:
        lo, hi = min(finite + [0.0]), max(finite + [0.0])
        pad = 0.25 * (hi - lo or 1.0)
        ax.set_xlim(lo - (pad if lo < 0 else 0), hi + pad)
    ax.set_xlabel(xlabel)


# Metrics whose value is a loss, an error or a distance: lower is better, any scale.
_LOWER_IS_BETTER = (
    "LogLoss", "BrierScore", "ExpectedCalibrationError", "FID", "KID", "LPIPS", "MSE", "RMSE",
    "MAE", "MAPE", "SMAPE", "MaxError", "Perplexity",
)
_LOWER_WORDS = ("loss", "error", "distance", "fid", "kid", "mse", "mae", "lpips", "perplexity")


def lower_is_better(name: str, metric: Any = None) -> bool:
    """Losses, errors and distances, by their metric's class when known, else by their name."""
    if metric is not None and not isinstance(metric, dict):
        names = {c.__name__ for c in type(metric).__mro__}
        return any(n.endswith("Loss") for n in names) or bool(names & set(_LOWER_IS_BETTER))
    leaf = name.lower().split(".")[-1]
    return any(word in leaf for word in _LOWER_WORDS)


def plot_scalars(
    values: dict[str, float], path, *, title: str = "metrics", lower_better: set[str] | None = None
) -> Path | None:
    """Horizontal bars, one per named scalar, with the value written beside it.

    Two panels, each with its own x axis: scores (higher is better; a fixed ``[0, 1]`` axis
    when they all lie in it) and losses, errors and distances (lower is better), so neither
    squashes the other. ``lower_better`` names the second group (default: by name, see
    :func:`lower_is_better`).
    """
    plt = _pyplot()
    if plt is None:
        return None
    if lower_better is None:
        lower_better = {n for n in values if lower_is_better(n)}
    items = [(n, float(values[n])) for n in values]
    scores = [(n, v) for n, v in items if n not in lower_better]
    losses = [(n, v) for n, v in items if n in lower_better]
    panels = []
    if scores:
        unit = all(0.0 <= v <= 1.0 for _, v in scores)
        panels.append((scores, unit, "scores (higher is better)"))
    if losses:
        panels.append((losses, False, "losses, errors, distances (lower is better)"))
    heights = [len(g) for g, _, _ in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7, 0.4 * sum(heights) + 1.5 * len(panels)),
        height_ratios=heights, squeeze=False,
    )
    for ax, (group, bounded, label) in zip(axes[:, 0], panels):
        names, numbers = [n for n, _ in group], [v for _, v in group]
        _bars(ax, names, numbers, xlabel=f"value: {label}", bounded=bounded)
    axes[0, 0].set_title(title)
    return _save(fig, plt, path)


def _step_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """Average precision of a PR curve, ``sum_n (R_n - R_{n-1}) P_n`` over its points in the
    order of decreasing recall (thresholds ascending, as the metric and sklearn give them)."""
    if len(recall) < 2:
        return float("nan")
    if recall[0] < recall[-1]:  # given in increasing recall: walk it the other way
        recall, precision = recall[::-1], precision[::-1]
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def plot_roc(curve: dict, path, *, title: str = "ROC curve") -> Path | None:
    """``RocCurve`` output (``fpr``, ``tpr``; per-class lists for multiclass) with the chance line."""
    plt = _pyplot()
    if plt is None:
        return None
    fpr, tpr = _per_class(curve["fpr"]), _per_class(curve["tpr"])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, (x, y) in enumerate(zip(fpr, tpr)):
        auc = float(np.trapezoid(y, x)) if len(x) > 1 else float("nan")
        label = f"{_label(i, len(fpr))} (AUC {auc:.3f})" if len(fpr) > 1 else f"AUC {auc:.3f}"
        ax.plot(x, y, lw=1.2, label=label, drawstyle="default")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, plt, path)


def plot_precision_recall(
    curve: dict, path, *, title: str = "precision-recall curve"
) -> Path | None:
    """``PrecisionRecallCurve`` output (``precision``, ``recall``; per-class lists for multiclass).

    Each curve's legend entry gives its average precision (the step area under it). Beside the
    full ``[0, 1]`` view, a second panel zooms on the region where the curves leave
    precision 1 and before they reach recall 1: good classifiers' curves otherwise hug the
    top-right corner.
    """
    plt = _pyplot()
    if plt is None:
        return None
    precision, recall = _per_class(curve["precision"]), _per_class(curve["recall"])
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(11, 5))
    for i, (p, r) in enumerate(zip(precision, recall)):
        ap = _step_area(r, p)
        name = _label(i, len(precision))
        label = f"{name} (AP {ap:.3f})" if name else f"AP {ap:.3f}"
        order = np.argsort(r, kind="stable")
        for ax in (full, zoom):
            ax.plot(r[order], p[order], lw=1.2, label=label, drawstyle="steps-pre")
    full.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1.01), ylim=(0, 1.01))
    # The zoom: recall from where the first curve drops below precision 1, precision down to
    # the lowest value reached before recall 1 (the last point, precision = prevalence, aside).
    left = min((float(r[p < 0.999].min()) for p, r in zip(precision, recall) if (p < 0.999).any()), default=0.0)
    low = min((float(p[r < 0.999].min()) for p, r in zip(precision, recall) if (r < 0.999).any()), default=0.0)
    left, low = max(0.0, math.floor((left - 0.02) * 20) / 20), max(0.0, math.floor((low - 0.02) * 20) / 20)
    zoom.set(xlabel="recall", ylabel="precision", title="zoom", xlim=(left, 1.005), ylim=(low, 1.005))
    for ax in (full, zoom):
        ax.grid(alpha=0.3)
    full.legend(fontsize=7, loc="lower left", ncol=2 if len(precision) > 5 else 1)
    return _save(fig, plt, path)


def plot_confusion_matrix(matrix, path, *, title: str = "confusion matrix") -> Path | None:
    """A confusion matrix (rows true, columns predicted) as a heat map with the counts written in."""
    plt = _pyplot()
    if plt is None:
        return None
    m = np.asarray(matrix)
    n = m.shape[0]
    fig, ax = plt.subplots(figsize=(0.45 * n + 2.5, 0.45 * n + 2))
    image = ax.imshow(m, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if n <= 30:
        threshold = m.max() / 2 if m.size else 0
        for i in range(n):
            for j in range(m.shape[1]):
                text = f"{m[i, j]:.2g}" if np.issubdtype(m.dtype, np.floating) else str(m[i, j])
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[i, j] > threshold else "black",
                )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(n))
    return _save(fig, plt, path)


def plot_reliability(diagram: dict, path, *, title: str = "reliability diagram") -> Path | None:
    """``ReliabilityDiagram`` output: accuracy per confidence bin against the diagonal, counts below."""
    plt = _pyplot()
    if plt is None:
        return None
    edges = np.asarray(diagram["edges"], np.float64)
    accuracy = np.asarray(diagram["accuracy"], np.float64)
    confidence = np.asarray(diagram["confidence"], np.float64)
    count = np.asarray(diagram["count"], np.float64)
    width = np.diff(edges)
    filled = count > 0
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5.5, 6), height_ratios=[3, 1], sharex=True)
    ax.bar(
        edges[:-1][filled],
        accuracy[filled],
        width=width[filled],
        align="edge",
        edgecolor="black",
        color="tab:blue",
        label="accuracy",
    )
    # Mean confidence per bin as a marker: the gap to the bar's top is the bin's calibration error.
    centres = (edges[:-1] + edges[1:]) / 2
    ax.plot(
        centres[filled], confidence[filled], "D", color="tab:red", ms=5, label="mean confidence"
    )
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(ylabel="accuracy", title=title, xlim=(edges[0], edges[-1]), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    ax_count.bar(edges[:-1], count, width=width, align="edge", color="tab:gray", edgecolor="black")
    ax_count.set(xlabel="confidence", ylabel="count")
    return _save(fig, plt, path)


def plot_histogram(
    counts,
    path,
    *,
    edges=None,
    low: float = 0.0,
    high: float = 1.0,
    title: str = "histogram",
    xlabel: str = "value",
) -> Path | None:
    """Bin counts (``Histogram`` output) as bars over ``edges`` (or equal bins on [low, high])."""
    plt = _pyplot()
    if plt is None:
        return None
    counts = np.asarray(counts, np.float64)
    edges = np.linspace(low, high, counts.shape[-1] + 1) if edges is None else np.asarray(edges)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(
        edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue", edgecolor="black"
    )
    ax.set(xlabel=xlabel, ylabel="count", title=title)
    return _save(fig, plt, path)


# ---------------------------------------------------------------------------------------
# plot(): a whole tree of values
# ---------------------------------------------------------------------------------------


def _is_scalar(value) -> bool:
    if isinstance(value, (dict, list, tuple)):
        return False
    try:
        return np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number)
    except TypeError:
        return False


def plot(values: Any, out_dir, *, metrics: Any = None, prefix: str = "") -> list[Path] | None:
    """Write PNGs for a nested dict of computed values into ``out_dir``; returns their paths.

    One file per curve, confusion matrix, reliability diagram and histogram (named by the
    entry's path, e.g. ``curves.roc.png``) and ``scalars.png`` with every scalar. ``metrics``
    (the same tree of metric objects) identifies entries by metric type and gives histograms
    their ranges. Returns ``None`` (after a one-line note) when matplotlib is missing.
    """
    if _pyplot() is None:
        return None
    out_dir = Path(out_dir)
    paths: list[Path] = []
    scalars: dict[str, float] = {}
    lower: set[str] = set()

    def walk(node, metric, name):
        kind = value_kind(node, metric)
        file = out_dir / f"{prefix}{name or 'value'}.png"
        title = name or "value"
        if kind == "roc":
            paths.append(plot_roc(node, file, title=f"{title}: ROC"))
        elif kind == "pr":
            paths.append(plot_precision_recall(node, file, title=f"{title}: precision-recall"))
        elif kind == "reliability":
            paths.append(plot_reliability(node, file, title=f"{title}: reliability"))
        elif kind == "confusion":
            paths.append(plot_confusion_matrix(node, file, title=f"{title}: confusion matrix"))
        elif kind == "histogram":
            low, high = getattr(metric, "low", 0.0), getattr(metric, "high", 1.0)
            counts, edges = node, None
            if isinstance(node, dict):  # ShowHistogram: counts with their edges
                counts, edges = node["counts"], node["edges"]
            xlabel = (name or "value").split(".")[-1]  # what was binned, e.g. "confidence"
            paths.append(
                plot_histogram(
                    counts, file, edges=edges, low=low, high=high, title=title, xlabel=xlabel
                )
            )
        elif isinstance(node, dict):
            for key, child in node.items():
                child_metric = metric.get(key) if isinstance(metric, dict) else None
                walk(child, child_metric, f"{name}.{key}" if name else str(key))
        elif _is_scalar(node):
            scalars[name or "value"] = float(np.asarray(node))
            if lower_is_better(name or "value", metric):
                lower.add(name or "value")

    walk(values, metrics, "")
    if scalars:
        paths.append(plot_scalars(scalars, out_dir / f"{prefix}scalars.png", lower_better=lower))
    return paths
