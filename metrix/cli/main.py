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
import sys
from pathlib import Path

DEMO_DEVICES = 8


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
                raise SystemExit(f"metrix eval: {name!r} conflicts with an array named {part!r}")
            node = child
        if parts[-1] in node:
            raise SystemExit(f"metrix eval: {name!r} is given twice or conflicts with a group")
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
            raise SystemExit(f"metrix eval: no .npy files in {path}")
        flat = {
            f.relative_to(path).with_suffix("").as_posix(): np.load(f, allow_pickle=False)
            for f in files
        }
    elif path.exists():
        with np.load(path, allow_pickle=False) as data:
            flat = {k: data[k] for k in data.files}
    else:
        raise SystemExit(f"metrix eval: no such data file {path}")
    return _nest(flat)


def _eval(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from metrix.cli.demo import _flatten, _json_value, summarize
    from metrix.runtime.config import ConfigError, load_config
    from metrix.runtime.evaluate import evaluate

    try:
        metrics = load_config(args.config)
    except ConfigError as err:
        print(f"metrix eval: {err}", file=sys.stderr)
        return 2
    data = load_arrays(args.data)
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(data) if np.ndim(x) >= 1}
    if len(sizes) != 1:
        raise SystemExit(f"metrix eval: arrays have different leading sizes {sorted(sizes)}")
    n = sizes.pop()
    # Uneven last batch instead of padding: metrics without a mask key stay exact (the
    # last batch compiles once more).
    batches = [
        jax.tree.map(lambda x, i=i: x[i : i + args.batch_size], data)
        for i in range(0, n, args.batch_size)
    ]
    values = jax.device_get(
        evaluate(metrics, lambda batch: batch, batches, progress=False if args.json else None)
    )
    if args.json:
        print(json.dumps(_json_value(values), indent=1))
    else:
        flat = _flatten(values)
        width = max(len(k) for k in flat)
        print(f"{n} rows in {len(batches)} batches of {args.batch_size}")
        for name, value in flat.items():
            print(f"{name:<{width}}  {summarize(name, value)}")
    return 0


# ---------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------


def describe_metrics() -> list[dict]:
    """Name, one-line description and keys (required ones first) of every registered metric."""
    import inspect

    from metrix.core.keys import REQUIRED
    from metrix.runtime.config import metric_registry

    rows = []
    for name, cls in metric_registry().items():
        doc = inspect.getdoc(cls) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        defaults = {f: cls.__dataclass_fields__[f].default for f in cls.key_fields()}
        required = [k for k, d in defaults.items() if d is REQUIRED]
        optional = [k for k in defaults if k not in required]
        rows.append(
            {"name": name, "description": first, "required": required, "optional": optional}
        )
    return rows


def _list(args: argparse.Namespace) -> int:
    rows = describe_metrics()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        keys = ", ".join(r["required"]) + (
            " [" + ", ".join(r["optional"]) + "]" if r["optional"] else ""
        )
        print(f"{r['name']:<{width}}  {r['description']}")
        print(f"{'':<{width}}    keys: {keys}")
    print(f"\n{len(rows)} metrics; keys in [brackets] are optional.")
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
    ev.add_argument("--batch-size", type=int, default=1024)
    ev.add_argument("--json", action="store_true", help="print the values as JSON")
    ev.set_defaults(func=_eval)

    ls = sub.add_parser("list", help="every metric with its keys and a one-line description")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    _optional_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        _request_cpu_devices(DEMO_DEVICES)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
