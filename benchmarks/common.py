"""Shared harness of the benchmarks: the row format, interleaved medians, the machine line and
the RESULTS.md writer.

A benchmark's ``main(argv)`` prints its table and may return rows: a list of dicts made by
``row(name, value, unit, **extra)`` (``value`` None means "not measured", with a ``note`` that
says why, e.g. "not installed"). ``write_results`` renders each section's rows as a markdown
table when it has them and always keeps the printed output (ratios, targets, verdicts) as a
code block beside it, so a module that returns None is still fully reported.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Pause before each timed call of a benchmark that interleaves metrix with a torch peer.
# torch's OpenMP workers (libgomp) spin-wait a few milliseconds after each parallel region;
# a call timed right after a torch call shares the two cores with them (measured: metrix's
# contrastive loss at N=512 took 1.4-1.9x its time right after a torch call, and its own
# time again after a 5 ms pause). The pause lets either side's idle threads go to sleep, so
# every contender is timed from the same quiet start.
SETTLE_S = 0.01


def settle() -> None:
    """Sleep ``SETTLE_S`` (see there): call it before each timed call of an interleaved run."""
    time.sleep(SETTLE_S)


def row(name: str, value: float | None, unit: str = "s", **extra) -> dict:
    """One result: ``name`` (``"section/case"``), ``value`` in ``unit`` (None: not measured)."""
    return {"name": name, "value": value, "unit": unit, **extra}


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each callable over ``repeats`` rounds; in each round every callable
    runs once, in an order rotated round by round, so that load bursts on a shared machine
    fall on all of them alike. Call them once beforehand to warm up (compile)."""
    return _rotated_medians(runs, repeats, dict.fromkeys(runs, 1))


def _rotated_medians(runs, repeats: int, calls: dict[str, int]) -> dict[str, float]:
    """Median per-call time over ``repeats`` rotated rounds, each sample ``calls[name]``
    back-to-back calls of one callable."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn, n = runs[name], calls[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(ts) for name, ts in times.items()}


def interleaved_batch_medians(
    runs: dict[str, Callable[[], object]], repeats: int, batch_s: float = 5e-3
) -> dict[str, float]:
    """Per-call median wall time, each sample a batch of back-to-back calls lasting about
    ``batch_s`` (at least one call), in :func:`interleaved_medians`' rotated rounds.

    For calls of tens of microseconds, one ``perf_counter`` pair per call measures mostly the
    scheduler: a single call takes 25 us or 100 us depending on whether the runtime's worker
    thread was awake, so medians of 30 single calls moved by 2x between runs. Batches average
    that out; every callable gets the same treatment. A batch's size comes from the fastest
    of three calls (the first call after another callable's batch can take 3x its steady time,
    which would make batches too short). Call them once beforehand (compile).
    """
    sizes = {}
    for name, fn in runs.items():
        single = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            single.append(time.perf_counter() - start)
        sizes[name] = max(1, min(2000, int(batch_s / max(min(single), 1e-7))))
    return _rotated_medians(runs, repeats, sizes)


def machine() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    return (f"{platform.system()} {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} devices)")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def machine_line() -> str:
    return f"machine: {machine()}; load average (1/5/15 min) {load()}"


def peer_status() -> dict[str, str]:
    """Which peer packages import here (version) and which do not ("not installed")."""
    import importlib

    modules = {
        "flax (nnx)": "flax", "google-metrax": "metrax", "clu": "clu.metrics", "kauldron": "kauldron.metrics",
        "torch": "torch", "torchmetrics": "torchmetrics", "pytorch-metric-learning": "pytorch_metric_learning",
        "scipy": "scipy", "lpips": "lpips", "bert-score": "bert_score",
    }
    from importlib import metadata

    torchvision_shim()
    status = {}
    for package, module in modules.items():
        try:
            importlib.import_module(module)
            try:
                version = metadata.version(package.split()[0])
            except metadata.PackageNotFoundError:
                version = ""
            status[package] = f"installed {version}".strip()
        except Exception as err:  # noqa: BLE001 - missing, or broken against this jax: both "not installed" here
            status[package] = f"not installed ({type(err).__name__})"
    return status


def torchvision_shim() -> None:
    """torchvision's compiled ops do not load on every CPU torch (here: ``torchvision::nms does not
    exist``), and torchmetrics imports torchvision when it is present; its pure-Python parts load
    once these two registration modules are stubbed."""
    import sys
    import types

    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rows_table(rows: list[dict]) -> list[str]:
    """A markdown table of rows (columns: the union of their keys, in first-seen order)."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = ["—" if r.get(c) is None else _fmt(r.get(c)).replace("|", "/") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _ratio_lines(text: str, pattern: str) -> list[tuple[str, float]]:
    import re

    return [(" ".join(m.group(1).split()), float(m.group(2))) for m in re.finditer(pattern, text, re.MULTILINE)]


def targets(sections: list[dict]) -> list[str]:
    """The issue's targets, each with the figure this run measured and met / MISSED; a target
    whose benchmark did not run (or printed nothing to judge) says so."""
    by_name = {s["name"]: s for s in sections}
    out = ["| target | measured | verdict |", "|---|---|---|"]

    def add(target, measured, ok):
        out.append(f"| {target} | {measured} | {'not measured' if ok is None else _verdict(ok)} |")

    rows = by_name.get("overhead", {}).get("rows") or []
    ratio = next((r.get("ratio") for r in rows if isinstance(r, dict) and r.get("name") == "metrix"), None)
    add("overhead: metrix per step <= 1.05x hand-written jnp", "—" if ratio is None else f"x{ratio:.3f}",
        None if ratio is None else ratio <= 1.05)
    rows = by_name.get("collection", {}).get("rows") or []
    for workload, title in (("two", "{Accuracy, Average}"), ("ten", "10-metric collection")):
        mine = [r for r in rows if r["name"].startswith(f"{workload}/")]
        for variant in ("metrix", "metrix Collection"):
            ours = next((r for r in mine if r["name"] == f"{workload}/{variant}"), None)
            if ours is None and variant != "metrix":
                continue
            add(f"{title}: {variant} per step <= 1.05x hand-written jnp",
                "—" if ours is None else f"x{ours['ratio_to_hand']:.3f}",
                None if ours is None else ours["ratio_to_hand"] <= 1.05)
        measured = [
            r for r in mine
            if r["value"] is not None and not r["name"].split("/", 1)[1].startswith(("metrix", "hand-written"))
        ]
        slowest = min(measured, key=lambda r: r["metrix_speedup"], default=None)
        add(f"{title}: metrix ahead of every peer",
            "—" if slowest is None else f"closest {slowest['name'].split('/', 1)[1]}: peer/metrix x{slowest['metrix_speedup']:.2f}",
            None if slowest is None else slowest["metrix_speedup"] > 1)
    text = by_name.get("fid", {}).get("text", "")
    fid = dict(_ratio_lines(text, r"^\s+(.+?)\s+[\d.]+ ms\s+x\s*([\d.]+) vs metrix\s"))
    for peer, key, want in (("scipy sqrtm", "scipy", 30), ("torchmetrics", "torchmetrics", 2)):
        got = next((v for k, v in fid.items() if k.startswith(key)), None)
        add(f"FID compute >= {want}x {peer}", "—" if got is None else f"x{got:.1f}", None if got is None else got >= want)
    text = by_name.get("metric_learning", {}).get("text", "")
    # The target names Triplet, Contrastive and NT-Xent (the other losses are extras).
    ml = [(case, ratio) for case, ratio in _ratio_lines(text, r"^(\w+\s+\d+)\s.*\s([\d.]+)x\s*$")
          if case.split()[0].lower() in ("triplet", "contrastive", "ntxent")]
    worst = min(ml, key=lambda kv: kv[1], default=None)
    add("metric learning (triplet, contrastive, NT-Xent) >= 2x pytorch-metric-learning", "—" if worst is None else f"slowest case {worst[0]}: x{worst[1]:.1f}",
        None if worst is None else worst[1] >= 2)
    results = by_name.get("lpips", {}).get("rows")
    speedups = []
    if isinstance(results, dict):
        for case, r in results.items():
            speedups += [(f"{case} vs {k}", r["metrix"] / v) for k, v in r.items()
                         if k.startswith("lpips") and isinstance(v, float) and v > 0]
    worst = min(speedups, key=lambda kv: kv[1], default=None)
    add("LPIPS >= 1x the lpips package", "—" if worst is None else f"slowest {worst[0]}: x{worst[1]:.2f}",
        None if worst is None else worst[1] >= 1)
    text = by_name.get("bertscore", {}).get("text", "")
    bs = _ratio_lines(text, r"^TARGET metrix / (bert_score\.\S+) pairs/s \(>= 1x\): x([\d.]+)")
    worst = min(bs, key=lambda kv: kv[1], default=None)
    add("BERTScore >= 1x bert-score",
        "—" if worst is None else f"{worst[0]}: x{worst[1]:.2f}", None if worst is None else worst[1] >= 1)
    return out


KEPT_MARKER = "<!-- hand-written from here on: kept by --write-results -->"


def kept_measurements(path: Path) -> list[str]:
    """The hand-written tail of an existing RESULTS.md (from ``KEPT_MARKER`` on), or nothing.

    It records measurements behind implementation choices (kernels, layouts), which no
    benchmark re-runs: docstrings point there instead of quoting machine-specific timings.
    """
    if not path.exists():
        return []
    text = path.read_text()
    start = text.find(KEPT_MARKER)
    return [] if start < 0 else text[start:].rstrip("\n").split("\n")


def write_results(sections: list[dict], path: Path | None = None) -> Path:
    """Write RESULTS.md. Each section: ``{"name", "text", "seconds", "ok", "rows"}`` where
    ``rows`` is what the module's ``main`` returned (a list of rows, or anything else / None)."""
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks --write-results`; do not edit by hand.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        f"- load average at the end (1/5/15 min): {load()}",
        "",
        "Ratios compare libraries measured in the same process, on the same data, with",
        "interleaved or back-to-back repeats; absolute times depend on the machine and its load,",
        "ratios much less. Targets and whether they are met are printed by each benchmark.",
        "",
        "## Peer libraries in this environment",
        "",
        "| package | status |",
        "|---|---|",
    ]
    lines += [f"| {package} | {status} |" for package, status in peer_status().items()]
    lines += ["", "## Targets", ""] + targets(sections) + [""]
    gpu = HERE / "RESULTS_GPU.md"
    lines += [
        "## GPU",
        "",
        f"GPU figures for FID and LPIPS: see `{gpu.name}` (written by `python -m benchmarks.gpu --out "
        f"benchmarks/{gpu.name}` on a GPU machine)." if gpu.exists() else
        "GPU figures for FID and LPIPS: not measured (no GPU was available for this run; "
        "`python -m benchmarks.gpu --out benchmarks/RESULTS_GPU.md` measures them where one is).",
        "",
    ]
    for section in sections:
        status = "" if section.get("ok", True) else " (FAILED: see the traceback)"
        lines += [f"## {section['name']}{status}", "", f"run time {section.get('seconds', 0):.0f} s", ""]
        rows = section.get("rows")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) and "name" in r for r in rows):
            lines += rows_table(rows) + [""]
        lines += ["```", section.get("text", "").rstrip(), "```", ""]
    path = path or HERE / "RESULTS.md"
    lines += kept_measurements(path)
    path.write_text("\n".join(lines))
    return path
