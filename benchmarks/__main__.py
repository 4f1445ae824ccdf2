"""Run every benchmark (or the ones named) and optionally regenerate benchmarks/RESULTS.md.

    python -m benchmarks                      # all, printed
    python -m benchmarks overhead auc         # some
    python -m benchmarks --write-results      # all, and rewrite benchmarks/RESULTS.md
    python -m benchmarks overhead --steps 200 # options after the names go to every named module
    python -m benchmarks --quick              # tiny sizes (QUICK below), a smoke run of the harness

Each benchmark module has a ``main(argv)`` that prints medians after warm-up and ratios
against the peers measured in the same run; this runner captures what each one prints and
writes it, with the date, the machine and its load, into RESULTS.md (never typed by hand).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ORDER = [
    "overhead", "collection", "distributed", "auc", "fid", "metric_learning", "lpips", "bertscore",
    "text_bleu", "text_rouge_wer", "audio", "detection", "manifold_memory", "oneshot",
]
HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return [name for name in ORDER if (HERE / f"{name}.py").exists()]


# Tiny per-module sizes for `--quick` (the options each module's argparse accepts).
QUICK: dict[str, list[str]] = {
    "overhead": ["--steps", "20", "--repeats", "1"],
    "collection": ["--steps", "10", "--repeats", "1"],
    "distributed": ["2"],  # main(repeats) takes no argv
    "auc": ["--repeats", "1"],
    "fid": ["--repeats", "1", "--rows", "2000"],
    "metric_learning": ["--sizes", "32"],
    "lpips": ["--repeats", "1", "--cases", "alex64"],
    "detection": ["--images", "40", "--detections", "10", "--targets", "5", "--batch", "20", "--repeats", "1"],
    "audio": ["--batch", "4", "--samples", "1000", "--repeats", "1"],
    "text_bleu": ["--pairs", "200", "--repeats", "1", "--batches", "2"],
    "text_rouge_wer": ["--pairs", "200", "--repeats", "1", "--batches", "2"],
    "oneshot": ["--sizes", "256", "--repeats", "3", "--steps", "5"],
    "manifold_memory": ["--sizes", "200", "600", "--dim", "32", "--run-max", "600", "--chunk-size", "128", "--repeats", "1"],
    "bertscore": ["--pairs", "8", "--num-layers", "1", "--batch-size", "8", "--repeats", "1", "--skip-functional"],
}


def call_main(module, argv: list[str]):
    """``main(argv)`` for argparse modules; ``main(int)`` / ``main()`` for those that take a count."""
    params = list(inspect.signature(module.main).parameters.values())
    if not params or params[0].name in ("argv", "args"):
        return module.main(argv) if params else module.main()
    if argv and params[0].annotation in (int, "int"):
        return module.main(int(argv[0]))
    return module.main()


# Benchmarks that need simulated devices run in an interpreter of their own: XLA_FLAGS must be
# set before jax loads, and forcing 8 host devices on every benchmark would slow the
# single-device programs of the others (measured ~1.5x more CPU time for a contrastive loss).
OWN_PROCESS = {"distributed": "--xla_force_host_platform_device_count=8"}


def run_in_own_process(name: str, argv: list[str]) -> dict:
    start = time.perf_counter()
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + OWN_PROCESS[name]).strip())
    code = f"import sys; from benchmarks import __main__ as r, {name} as m; r.call_main(m, sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, cwd=HERE.parent, capture_output=True, text=True
    )
    text = proc.stdout + (proc.stderr if proc.returncode else "")
    print(text, end="")
    return {"name": name, "text": text, "seconds": time.perf_counter() - start, "ok": proc.returncode == 0, "rows": None}


def run_one(name: str, argv: list[str]) -> dict:
    if name in OWN_PROCESS:
        return run_in_own_process(name, argv)
    buffer = io.StringIO()
    start = time.perf_counter()
    ok, rows = True, None
    with contextlib.redirect_stdout(buffer):
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            rows = call_main(module, argv)
        except SystemExit as exit_:  # argparse errors, or a module saying why it cannot run
            ok = exit_.code in (None, 0)
            print(f"exited: {exit_.code}")
        except Exception:  # noqa: BLE001 - a broken benchmark is reported, the others still run
            ok = False
            traceback.print_exc(file=buffer)
    text = buffer.getvalue()
    print(text, end="")
    return {"name": name, "text": text, "seconds": time.perf_counter() - start, "ok": ok, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", usage="%(prog)s [NAME ...] [--write-results] [--quick] [module options]",
        description=f"{__doc__.splitlines()[0]} NAMEs: {available()} (default: all).",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    # leading words are benchmark names; everything from the first option on is ours or theirs
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    parser.add_argument("--write-results", action="store_true", help="rewrite benchmarks/RESULTS.md")
    parser.add_argument("--results-path", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, not a measurement)")
    args, rest = parser.parse_known_args(argv[split:])
    names = argv[:split] or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    sections = []
    for name in names:
        print(f"== {name}", flush=True)
        sections.append(run_one(name, QUICK.get(name, []) + rest if args.quick else rest))
    if args.write_results:
        from benchmarks.common import write_results

        print(f"wrote {write_results(sections, args.results_path)}")
    return 0 if all(section["ok"] for section in sections) else 1


if __name__ == "__main__":
    sys.exit(main())
