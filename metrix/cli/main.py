"""The ``metrix`` command line.

  metrix demo [--out DIR]                 train a digits MLP, evaluate it on 8 CPU devices
  metrix eval --config F --data D.npz     evaluate stored predictions with a YAML config
  metrix list                             every metric, its keys and a one-line description

Subcommands of optional components (``fid``, ``bertscore``) appear when their modules exist.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

DEMO_DEVICES = 8


class CommandError(Exception):
    """A mistake in a command's arguments or files: printed as one line, without a traceback."""


def one_line_error(command: str, err: BaseException) -> str:
    """``metrix CMD: <what went wrong>`` on one line, pointing to ``--debug`` for the traceback."""
    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, (CommandError, FileNotFoundError)) and type(err).__name__ not in (
        "ConfigError", "CheckpointError", "InputTypeError", "CapacityOverflowError",
    ):
        text = f"{type(err).__name__}: {text}"
    return f"metrix {command}: {text} (run again with --debug for the traceback)"


def run_command(command: str, func, args, *, debug: bool) -> int:
    """``func(args)``; any error becomes one line on stderr (exit 2), or the traceback with --debug."""
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"metrix {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the boundary of the command line: one clear line
        if debug:
            raise
        print(one_line_error(command, err), file=sys.stderr)
        return 2


def _request_cpu_devices(count: int) -> None:
    """Ask XLA for ``count`` simulated CPU devices, if the JAX backend is not running yet.

    Importing jax (and metrix) does not start a backend: the CPU client is created on the
    first ``jax.devices()`` / array, and reads ``XLA_FLAGS`` then. So setting the flag here,
    in ``main()``, works even though ``import metrix`` already imported jax. If a backend
    already runs (``main`` called from a live session) the devices stay as they are.
    """
    try:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return
    except (ImportError, AttributeError):  # private API moved: setting the flag is harmless
        pass
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from metrix.cli.demo import run_demo

    run_demo(
        args.out, steps=args.steps, batch_size=args.batch_size, config=args.config, seed=args.seed
    )
    return 0


# ---------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------


def _nest(flat: dict[str, object]) -> dict:
    """``{"preds.logits": a, "batch/label": b}`` -> ``{"preds": {"logits": a}, "batch": {"label": b}}``."""
    tree: dict = {}
    for name, value in flat.items():
        parts = name.replace("/", ".").split(".")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CommandError(f"{name!r} conflicts with an array named {part!r}")
            node = child
        if parts[-1] in node:
            raise CommandError(f"{name!r} is given twice or conflicts with a group")
        node[parts[-1]] = value
    return tree


def load_arrays(path: str | Path) -> dict:
    """Arrays from an ``.npz`` file or a directory of ``.npy`` files, nested by their names.

    Names are key paths: ``preds.logits`` (or ``preds/logits``, or ``preds/logits.npy`` inside a
    directory) becomes ``context["preds"]["logits"]``. Loaded with ``allow_pickle=False``.
    """
    import numpy as np

    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.npy"))
        if not files:
            raise CommandError(f"no .npy files in {path}")
        flat = {
            f.relative_to(path).with_suffix("").as_posix(): np.load(f, allow_pickle=False)
            for f in files
        }
    elif path.exists():
        with np.load(path, allow_pickle=False) as data:
            flat = {k: data[k] for k in data.files}
    else:
        raise CommandError(f"no such data file {path}")
    return _nest(flat)


def _eval(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from metrix.runtime.config import load_config
    from metrix.runtime.evaluate import evaluate
    from metrix.runtime.report import json_value, table_lines

    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    metrics = load_config(args.config)
    data = load_arrays(args.data)
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(data) if np.ndim(x) >= 1}
    if len(sizes) != 1:
        raise CommandError(
            f"the arrays of {args.data} have different leading sizes {sorted(sizes)}; "
            "every array needs one row per example"
        )
    n = sizes.pop()
    # Uneven last batch instead of padding: metrics without a mask key stay exact (the
    # last batch compiles once more).
    batches = [
        jax.tree.map(lambda x, i=i: x[i : i + args.batch_size], data)
        for i in range(0, n, args.batch_size)
    ]
    writer = None
    if args.logdir is not None:
        from metrix.runtime.writers import TensorBoardWriter

        writer = TensorBoardWriter(args.logdir)
    values = jax.device_get(
        evaluate(
            metrics,
            lambda batch: batch,
            batches,
            progress=False if args.json else None,
            writer=writer,
            step=args.step,
        )
    )
    if writer is not None:
        writer.close()
    if args.json:
        print(json.dumps(json_value(values), indent=1, allow_nan=False))
        return 0
    rows = table_lines(values, metrics)
    width = max(len(name) for name, _ in rows)
    print(f"{n} rows in {len(batches)} batches of {args.batch_size}")
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    if writer is not None:
        print(f"wrote the values to TensorBoard event files in {args.logdir}")
    return 0


# ---------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------


# A full stop that ends a sentence: not the one of "et al." or "e.g.", followed by a capital.
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)\.\s+(?=[A-Z`(])")


def _first_sentence(doc: str) -> str:
    """The docstring's first paragraph up to its first sentence end (never cut mid-sentence)."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0].rstrip(".") + "." if paragraph else ""


def _is_listed_metric(cls) -> bool:
    """Metrics users configure: not the abstract bases (``Metric``, ``Loss``, ``Collection``)."""
    import inspect

    from metrix.core.collection import Collection
    from metrix.losses import Loss

    if cls in (Loss, Collection) or inspect.isabstract(cls) or getattr(cls, "_abstract", False):
        return False
    return any("get_state" in vars(c) for c in cls.__mro__ if c.__name__ != "Metric")


def _default_text(value) -> str:
    from metrix.core.keys import REQUIRED

    return "required" if value is REQUIRED else repr(value)


def describe_metrics() -> list[dict]:
    """Every configurable metric: name, first sentence, keys (required / optional) and options
    (configuration fields that are not keys) with their defaults."""
    import dataclasses
    import inspect

    from metrix.core.keys import REQUIRED
    from metrix.runtime.config import metric_registry

    rows = []
    for name, cls in sorted(metric_registry().items()):
        if not _is_listed_metric(cls):
            continue
        keys = set(cls.key_fields())
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}

        def default(f):
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return REQUIRED

        required = [k for k in cls.key_fields() if default(fields[k]) is REQUIRED]
        required += [" or ".join(group) for group in cls.required_one_of]
        grouped = {k for group in cls.required_one_of for k in group}
        optional = [k for k in cls.key_fields() if k not in required and k not in grouped]
        options = {
            n: _default_text(default(f)) for n, f in fields.items() if n not in keys and n != "parent"
        }
        rows.append(
            {
                "name": name,
                "description": _first_sentence(inspect.getdoc(cls) or ""),
                "required": required,
                "optional": optional,
                "options": options,
            }
        )
    return rows


def _list(args: argparse.Namespace) -> int:
    rows = describe_metrics()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['name']}: {r['description']}")
        print(f"    required keys: {', '.join(r['required']) or '-'}")
        if r["optional"]:
            print(f"    optional keys: {', '.join(r['optional'])}")
        if r["options"]:
            options = ", ".join(f"{k}={v}" for k, v in r["options"].items())
            print(f"    options: {options}")
    print(f"\n{len(rows)} metrics. Keys are paths into the data (e.g. preds.logits); "
          "options are settings with their defaults.")
    return 0


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


def _optional_subcommands(sub) -> None:
    """Subcommands from optional modules; a missing or broken module leaves the CLI working."""
    import importlib

    for module, function in (
        ("metrix.cli.fid", "add_fid_parser"),
        ("metrix.cli.bertscore", "add_bertscore_parser"),
    ):
        try:
            add_parser = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError):
            continue
        add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="train a small MLP on sklearn digits and evaluate it on 8 CPU devices"
    )
    demo.add_argument(
        "--out",
        default="metrix-demo",
        help="directory for plots and report.json (default ./metrix-demo)",
    )
    demo.add_argument("--steps", type=int, default=300, help="adam training steps (default 300)")
    demo.add_argument(
        "--batch-size", type=int, default=128, help="evaluation batch size (default 128)"
    )
    demo.add_argument("--config", default=None, help="metric config (default configs/demo.yaml)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    ev = sub.add_parser(
        "eval", help="evaluate stored predictions (.npz or a directory of .npy) with a config"
    )
    ev.add_argument("--config", required=True, help="YAML metric config")
    ev.add_argument(
        "--data", required=True, help=".npz file or directory of .npy files; names are key paths"
    )
    ev.add_argument("--batch-size", type=int, default=1024, help="rows per batch (default 1024)")
    ev.add_argument("--json", action="store_true", help="print the values as JSON (NaN as null)")
    ev.add_argument(
        "--logdir",
        default=None,
        help="also write the values as TensorBoard event files into this directory "
        "(needs tensorboardX: pip install 'metrix[tensorboard]')",
    )
    ev.add_argument(
        "--step", type=int, default=None, help="the step the values are logged at (default: batches)"
    )
    ev.set_defaults(func=_eval)

    ls = sub.add_parser("list", help="every metric with its keys and a one-line description")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    _optional_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv[:1] == ["demo"]:
        _request_cpu_devices(DEMO_DEVICES)
    args = build_parser().parse_args(argv)
    return run_command(args.command, args.func, args, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
