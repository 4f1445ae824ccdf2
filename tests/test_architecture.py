"""Architecture rules of the ``metrix`` package, read from its source (``ast``, no imports).

The layers (docs/architecture.md): ``metrix.core`` (the state algebra) imports nothing
else from metrix; the domain modules and packages build on core; ``metrix.backbones``
(frozen networks) sits beside core and below the domains; ``metrix.runtime`` and
``metrix.cli`` sit on top; the seed-compatible layers re-export. Each test states one
rule and, when it breaks, names the rule and the offending file and line.

Imports are collected at every nesting level (module level, inside functions, ``try``
blocks, ``if TYPE_CHECKING:``), relative imports resolved, and
``importlib.import_module("metrix....")`` with a literal name counted as an import.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "metrix"

MAX_LINES = 800  # per module
MAX_TOP_LEVEL_MODULES = 15  # .py files directly in metrix/ (``__init__`` and ``__main__`` too)

# Every top-level module / package of metrix, by layer: a new one must be placed here.
CORE = ("core",)
DOMAIN = (
    "statistics", "regression", "image", "segmentation", "ranking", "losses", "summaries",
    "classification", "metric_learning", "generative", "perceptual", "text", "audio", "detection",
    "bootstrap",
)  # fmt: skip
BACKBONES = ("backbones",)
RUNTIME = ("runtime",)
CLI = ("cli", "__main__")
SEED_LAYERS = ("stateful", "nnx", "learning", "protocols", "typing")
LAYERS = {
    "core": CORE, "domain": DOMAIN, "backbones": BACKBONES, "runtime": RUNTIME, "cli": CLI,
    "seed layers": SEED_LAYERS,
}  # fmt: skip

# The public names of ``import metrix as mx`` (every name the package had before the
# layered layout, module attributes aside, plus ``broadcast_mask``).
# fmt: off
PUBLIC_NAMES = (
    "Accuracy", "ArcFaceLoss", "AutoState", "AutoStateOutput", "Average", "AveragePrecision",
    "AverageState", "BERTScore", "BERTScoreBufferState", "BERTScoreIdf", "BERTScoreIdfState",
    "BERTScorePairs", "BERTScoreResult", "BERTScoreSums", "BalancedAccuracy", "BatchHardMiner",
    "BinaryAccuracy", "BinnedScoresState", "BrierScore", "BufferState", "CalibrationState",
    "CapacityOverflowError", "CheckpointError", "CircleLoss", "CoMomentState", "CohenKappa",
    "CollectState", "Collection", "ConcordanceCorrCoef", "ConfigError", "ConfusionMatrix",
    "ConfusionState", "ContextKeyError", "ContrastiveLoss", "CosFaceLoss", "CosineSimilarity",
    "DensityCoverage", "Dice", "ExpectedCalibrationError", "ExplainedVariance", "F1Score",
    "FBetaScore", "FID", "HardNegativeMiner", "Histogram", "HistogramState", "HitRate", "Huber",
    "InceptionScore", "InputTypeError", "KID", "Key", "L1", "L2", "LPIPS", "LPIPSDistances",
    "LPIPSFromFeatures", "LPIPSState", "LPIPSWithDistances", "LastState", "LogLoss", "Loss",
    "LossState", "LossTermsState", "MAE", "MAP", "MAPE", "MRR", "MSE", "MS_SSIM_BETAS",
    "MatthewsCorrCoef", "Max", "MaxError", "MaxState", "MeanCovState", "MeanIoU", "MergeError",
    "Metric", "Min", "MinState", "MinedIndices", "MultiScaleSSIM", "MultiSimilarityLoss",
    "NDCG", "NTXentLoss", "NegativeCosineSimilarity", "Norm", "PSNR", "PearsonCorrCoef",
    "Perplexity", "Precision", "PrecisionAtK", "PrecisionRecall", "PrecisionRecallCurve",
    "ProxyAnchorLoss", "ProxyNCALoss", "Quantiles", "R2Score", "REQUIRED", "RMSE", "Recall",
    "RecallAtK", "ReferenceStats", "ReliabilityDiagram", "RocAuc", "RocCurve", "SMAPE", "SSIM",
    "Schedule", "ScoresState", "SemiHardMiner", "ShowConfusionMatrix", "ShowHistogram",
    "ShowImages", "SigmoidBinaryCrossEntropy", "SigmoidFocalLoss", "SoftmaxCrossEntropy",
    "SpearmanCorrCoef", "Specificity", "State", "Stateful", "Std", "Sum", "SumState",
    "SupConLoss", "TrainMetrics", "TripletMarginLoss", "TripletMarginMiner",
    "UndefinedMetricWarning", "WelfordState", "absolute_error", "absolute_percentage_error",
    "allreduce", "apply_colormap", "average_precision", "average_ranks",
    "balanced_accuracy_from_confusion", "binarize", "binary_average_precision",
    "binary_distinct_points", "binary_precision_recall_curve", "binary_roc_auc",
    "binary_roc_curve", "binned_average_precision", "binned_counts",
    "binned_precision_recall_curve", "binned_roc_auc", "binned_roc_curve", "brier_values",
    "broadcast_mask", "calibration_bins", "calibration_error_from_bins", "chan_merge",
    "circle_losses", "cohen_kappa_from_confusion", "compute", "concat_field",
    "concordance_from_moments", "confidence_and_correct", "confusion_counts", "confusion_image",
    "confusion_matrix", "contrastive_terms", "cosine_similarity", "dcg", "density_coverage",
    "dice_from_confusion", "empty_states", "evaluate", "evaluate_scan", "exact_sum_field",
    "explained_variance_from_moments", "frechet_distance", "gaussian_kernel", "get_states",
    "hit_rate", "huber_values", "inception_score", "iou_from_confusion", "kid_subset_indices",
    "l1_values", "l2_values", "load_bert_encoder", "load_config", "log_and_reset",
    "log_loss_values", "margin_softmax_losses", "matthews_corrcoef_from_confusion", "max_field",
    "merge", "merge_stacked", "min_field", "multi_similarity_losses", "multiscale_ssim", "ndcg",
    "negative_cosine_similarity_values", "nested_field", "normalize_images", "ntxent_terms",
    "pad_batch", "pair_masks", "pairwise_distances", "pearson_from_moments", "per_class_counts",
    "plot", "polynomial_mmd", "precision_at_k", "precision_recall", "process_allreduce",
    "proxy_anchor_terms", "proxy_nca_losses", "psnr", "quantiles_from_histogram",
    "r2_from_moments", "ranked_relevance", "read_checkpoint_info", "recall_at_k",
    "reciprocal_rank", "register_allreduce", "restore_states", "save_states",
    "score_from_confusion", "set_typechecking", "sigmoid_binary_cross_entropy_values",
    "sigmoid_focal_values", "softmax_cross_entropy_values", "spearman_corrcoef",
    "squared_error", "ssim", "ssim_and_contrast", "stat_scores", "static_field", "sum_field",
    "supcon_losses", "symmetric_absolute_percentage_error", "threshold_grid", "token_nll",
    "top_k_correct", "total_loss", "tree_norm", "triplet_margin_terms", "truncate_field",
    "typechecking", "window_step",
)
# fmt: on

IMPORTABLE = (
    "metrix.stateful", "metrix.learning", "metrix.protocols", "metrix.nnx", "metrix.typing",
    "metrix.backbones.inception", "metrix.backbones.lpips_nets",
)  # fmt: skip
HELP_COMMANDS = (
    ("-m", "metrix.backbones.inception", "--help"),
    ("-m", "metrix.backbones.lpips_nets", "--help"),
    ("-m", "metrix", "--help"),
)


# ---------------------------------------------------------------------------------------
# Reading the source
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Import:
    """One imported module of one import statement (``from m import a, b``: one per name)."""

    source: str  # the importing module, e.g. "metrix.core.state"
    module: str  # the module the statement names, absolute: "metrix.core" in ``from metrix.core import x``
    name: str | None  # the imported name of a ``from`` import (None for ``import m``)
    bound: str | None  # the name it is bound to (``as``), for ``from`` imports
    line: int
    function_level: bool  # inside a def (runs when called, not at import)
    type_checking: bool  # under ``if TYPE_CHECKING:`` (never runs)

    @property
    def where(self) -> str:
        return f"{path_of(self.source)}:{self.line}"

    @property
    def statement(self) -> str:
        text = (
            f"import {self.module}"
            if self.name is None
            else f"from {self.module} import {self.name}"
        )
        kind = " (in a function)" if self.function_level else ""
        return text + (" (TYPE_CHECKING)" if self.type_checking else kind)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of metrix by dotted name; a package by its own name (its ``__init__``)."""
    found = {}
    for folder, dirs, files in os.walk(SOURCE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        parts = Path(folder).relative_to(REPO).parts
        for file in sorted(files):
            if file.endswith(".py"):
                stem = file[: -len(".py")]
                found[".".join(parts if stem == "__init__" else (*parts, stem))] = (
                    Path(folder) / file
                )
    return found


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def path_of(name: str) -> str:
    return modules()[name].relative_to(REPO).as_posix()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, source: str):
        self.source = source
        self.package = source if is_package(source) else source.rpartition(".")[0]
        self.imports: list[Import] = []
        self.depth = 0  # functions
        self.type_checking = 0

    def _add(self, node: ast.AST, module: str, name=None, bound=None) -> None:
        where = (node.lineno, self.depth > 0, self.type_checking > 0)
        self.imports.append(Import(self.source, module, name, bound, *where))

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_checking += 1
            for child in node.body:
                self.visit(child)
            self.type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "metrix" or alias.name.startswith("metrix."):
                self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative: from the importing module's package, up level - 1
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        if module == "metrix" or module.startswith("metrix."):
            for alias in node.names:
                self._add(node, module, alias.name, alias.asname or alias.name)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            target = node.args[0].value
            if isinstance(target, str) and (target == "metrix" or target.startswith("metrix.")):
                self._add(node, target)
        self.generic_visit(node)


@functools.cache
def imports_of(name: str) -> tuple[Import, ...]:
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"), filename=str(modules()[name]))
    collector = _Collector(name)
    collector.visit(tree)
    return tuple(collector.imports)


def all_imports() -> Iterable[Import]:
    for name in modules():
        yield from imports_of(name)


def _existing(module: str) -> str:
    """``module``, or its nearest ancestor that exists (a name that is no module of metrix)."""
    while module not in modules() and "." in module:
        module = module.rpartition(".")[0]
    return module


def target(imp: Import) -> str:
    """The module an import depends on: ``from metrix.pkg import name`` is ``metrix.pkg.name``
    when that is a submodule, else the package ``metrix.pkg`` itself (its ``__init__``)."""
    if imp.name is not None and f"{imp.module}.{imp.name}" in modules():
        return f"{imp.module}.{imp.name}"
    return _existing(imp.module)


@functools.cache
def reexports(package: str) -> dict[str, tuple[str, str]]:
    """``{bound name: (module, name there)}`` of a package ``__init__``'s ``from`` imports."""
    return {
        imp.bound: (imp.module, imp.name)
        for imp in imports_of(package)
        if imp.name not in (None, "*") and not imp.function_level and not imp.type_checking
    }


def defining_module(imp: Import) -> str:
    """:func:`target`, followed through package ``__init__`` re-exports: ``from metrix import
    Accuracy`` depends on the module that defines ``Accuracy``, not on all of ``metrix``."""
    module, name, seen = imp.module, imp.name, set()
    while name is not None:
        if f"{module}.{name}" in modules():
            return f"{module}.{name}"
        module = _existing(module)
        if not is_package(module) or name not in reexports(module) or (module, name) in seen:
            return module
        seen.add((module, name))
        module, name = reexports(module)[name]
    return _existing(module)


def top(name: str) -> str:
    """The top-level module / package of metrix that ``name`` belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def within(name: str, tops: Iterable[str]) -> bool:
    return top(name) in tuple(tops)


def descends(name: str, package: str) -> bool:
    return name.startswith(package + ".")


# ---------------------------------------------------------------------------------------
# The dependency graph
# ---------------------------------------------------------------------------------------


def graph(*, for_cycles: bool) -> dict[str, dict[str, Import]]:
    """``{module: {module it imports: the first such import}}`` over module- and
    function-level imports (``TYPE_CHECKING`` imports never run, so they are left out).

    ``for_cycles``: names are followed through re-exports to their defining module, and a
    package ``__init__`` importing (re-exporting) its own submodules is no edge, so a cycle
    through a package's namespace (e.g. a lazy ``import metrix`` used as a registry) is not
    one. Otherwise every module that really runs is an edge (``__init__`` re-exports too).
    """
    edges: dict[str, dict[str, Import]] = {name: {} for name in modules()}
    for imp in all_imports():
        if imp.type_checking:
            continue
        dest = defining_module(imp) if for_cycles else target(imp)
        if dest == imp.source:
            continue
        if for_cycles and is_package(imp.source) and descends(dest, imp.source):
            continue
        edges[imp.source].setdefault(dest, imp)
    return edges


def strongly_connected(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def shortest_path(edges, start: str, goal: Iterable[str], allowed=None) -> list[str] | None:
    """The shortest import chain from ``start`` to any module in ``goal`` (BFS)."""
    goal, parent, frontier = set(goal), {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w in parent or (allowed is not None and w not in allowed):
                    continue
                parent[w] = v
                if w in goal:
                    chain = [w]
                    while parent[chain[-1]] is not None:
                        chain.append(parent[chain[-1]])
                    return chain[::-1]
                following.append(w)
        frontier = following
    return None


def describe(edges, chain: list[str]) -> str:
    steps = [chain[0]]
    for a, b in itertools.pairwise(chain):
        imp = edges[a][b]
        steps.append(f"  -> {b}    [{imp.where}: {imp.statement}]")
    return "\n".join(steps)


# ---------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------


def test_every_top_level_module_has_a_layer():
    placed = {t for tops in LAYERS.values() for t in tops}
    unplaced = sorted({top(m) for m in modules()} - placed - {"__init__"})
    assert not unplaced, (
        f"rule 'every top-level module of metrix has a layer' broken: {unplaced} are in no layer "
        "of tests/test_architecture.py (add each to CORE / DOMAIN / ... so the layer rules see it)"
    )


def test_core_imports_nothing_outside_core():
    broken = [
        f"{imp.where}: {imp.statement}  (depends on {target(imp)})"
        for imp in all_imports()
        if within(imp.source, CORE) and not within(target(imp), CORE)
    ]
    assert not broken, (
        "rule 'metrix.core imports nothing from metrix outside metrix.core' broken:\n"
        + "\n".join(broken)
    )


def test_no_import_cycles_except_through_package_namespaces():
    edges = graph(for_cycles=True)
    reports = []
    for component in strongly_connected(edges):
        start = component[0]  # the chain from it back to a module that imports it, closed
        importers = [v for v in component if start in edges[v]]
        chain = [*shortest_path(edges, start, importers, set(component)), start]
        reports.append(f"cycle among {component}:\n{describe(edges, chain)}")
    assert not reports, "rule 'no import cycle between metrix modules' broken:\n" + "\n\n".join(
        reports
    )


def _names(tops: Iterable[str]) -> str:
    return ", ".join("metrix (its __init__)" if t == "__init__" else f"metrix.{t}" for t in tops)


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        # The seed layers and the metrix namespace import the domains: also forbidden.
        ("backbones", DOMAIN + CLI + RUNTIME + SEED_LAYERS + ("__init__",)),
        ("domain", CLI),
    ],
    ids=["backbones", "domain"],
)
def test_layers_import_nothing_above_them(layer, forbidden):
    """Direct imports, and the chain of imports that really runs (``__init__``s included)."""
    forbidden_names = _names(forbidden)
    sources = [m for m in modules() if within(m, LAYERS[layer])]
    direct = [
        f"{imp.where}: {imp.statement}  (depends on {target(imp)})"
        for m in sources
        for imp in imports_of(m)
        if within(target(imp), forbidden)
    ]
    assert not direct, (
        f"rule '{layer} imports nothing from {forbidden_names}' broken:\n" + "\n".join(direct)
    )
    edges = graph(for_cycles=False)
    goal = [m for m in modules() if within(m, forbidden)]
    chains = [describe(edges, c) for m in sources if (c := shortest_path(edges, m, goal))]
    assert not chains, (
        f"rule '{layer} depends (even indirectly) on nothing in {forbidden_names}' broken:\n"
        + "\n\n".join(chains)
    )


def test_no_module_is_too_long():
    long = {}
    for name, path in modules().items():
        with path.open(encoding="utf-8") as f:
            long[path_of(name)] = sum(1 for _ in f)
    broken = [f"{p}: {n} lines" for p, n in sorted(long.items()) if n > MAX_LINES]
    assert not broken, (
        f"rule 'no module of metrix is longer than {MAX_LINES} lines' broken:\n" + "\n".join(broken)
    )


def test_top_level_holds_few_modules():
    files = sorted(p.name for p in SOURCE.glob("*.py"))
    assert len(files) <= MAX_TOP_LEVEL_MODULES, (
        f"rule 'metrix/ holds at most {MAX_TOP_LEVEL_MODULES} .py modules' broken: "
        f"{len(files)} in metrix/: {files}"
    )


def test_package_init_has_no_star_import():
    tree = ast.parse((SOURCE / "__init__.py").read_text(encoding="utf-8"))
    from_imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    lines = sorted(n.lineno for n in from_imports if any(a.name == "*" for a in n.names))
    assert not lines, (
        f"rule 'metrix/__init__.py has no star import' broken at metrix/__init__.py lines {lines}"
    )


# ---------------------------------------------------------------------------------------
# The public surface (these import metrix)
# ---------------------------------------------------------------------------------------


def test_public_names_are_attributes_of_metrix():
    import metrix

    missing = [name for name in PUBLIC_NAMES if not hasattr(metrix, name)]
    assert not missing, f"rule 'the public surface of metrix stays' broken: metrix lacks {missing}"


@pytest.mark.parametrize("module", IMPORTABLE)
def test_module_imports(module):
    try:
        importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - the rule is "it imports"
        pytest.fail(f"rule '{module} imports' broken: {type(error).__name__}: {error}")


@pytest.mark.parametrize("argv", HELP_COMMANDS, ids=lambda argv: " ".join(argv))
def test_command_line_help_exits_zero(argv):
    command = [sys.executable, *argv]
    try:
        done = subprocess.run(
            command, check=False, cwd=REPO, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"rule '{' '.join(['python', *argv])} exits 0' broken: no exit within 120 s")
    assert done.returncode == 0, (
        f"rule '{' '.join(['python', *argv])} exits 0' broken: exit {done.returncode}\n"
        f"stderr (tail):\n{done.stderr[-3000:]}"
    )
