"""Declarative metric configs: YAML files (or dicts) of named metrics, validated at load.

A config maps names to metric entries; an entry names the metric class and sets its keys
and options, and a mapping without ``metric`` is a group (nested to any depth)::

    # configs/classification.yaml
    accuracy: {metric: Accuracy, logits: preds.logits, labels: batch.label, mask: batch.mask}
    calibration:
      ece: {metric: ExpectedCalibrationError, preds: preds.probs, labels: batch.label,
            task: multiclass, num_classes: 10}

``load_config(path)`` returns the same tree with metric objects (a dict name -> metric, nested
dicts for groups), ready for ``mx.get_states`` / ``mx.evaluate``. Everything is checked
before any metric is built, and every error names the file, the entry and the field:

* unknown metric names (with close matches), unknown options (with close matches);
* wrong types, checked against the dataclass field annotations (``int``, ``float``, ``str``,
  ``bool``, ``None``, ``Key`` paths, ``Literal[...]``, ``tuple[...]`` and unions of them;
  a YAML list becomes a tuple);
* required keys (``mx.REQUIRED``) left unset.

Safety: files are read with ``yaml.safe_load`` and nothing in them is executed. Metric names
resolve only through a registry of the :class:`~metrix.Metric` subclasses exported by the
``metrix`` package (never ``getattr`` on arbitrary modules, no import paths). Python configs
are dicts passed in directly (entries may then also be metric instances); ``.py`` files are
refused, since loading one would run its code.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metrix.core import annotations as annotation_lib
from metrix.core import keys as keys_lib
from metrix.core.metric import Metric

__all__ = ["ConfigError", "load_config", "metric_registry"]

_METRIC = "metric"


class ConfigError(ValueError):
    """A config entry is invalid; the message names the file, the entry and the field."""


def metric_registry() -> dict[str, type[Metric]]:
    """Name -> class for every public :class:`Metric` subclass exported by ``metrix``."""
    import metrix  # the package namespace is the registry

    return {
        name: obj
        for name, obj in sorted(vars(metrix).items())
        if isinstance(obj, type)
        and issubclass(obj, Metric)
        and obj is not Metric
        and not name.startswith("_")
    }


# ---------------------------------------------------------------------------------------
# Field types, from the resolved annotations (metrix.core.annotations)
# ---------------------------------------------------------------------------------------


class _Unsupported(Exception):
    pass


def _check_one(hint: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the single type ``hint``; returns (ok, converted value)."""
    if hint is type(None) or hint is None:
        return value is None, value
    if keys_lib.is_key_annotation(hint):
        if not isinstance(value, str):
            return False, value
        keys_lib.parse_path(value)  # ValueError for a malformed path, reported by the caller
        return True, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return value in args and not isinstance(value, bool), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        inner = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(inner) != len(value):
            return False, value
        out = []
        for t, v in zip(inner, value):
            ok, v = _check_type(t, v)
            if not ok:
                return False, value
            out.append(v)
        return True, tuple(out)
    raise _Unsupported(hint)


def _check_type(hint: Any, value: Any) -> tuple[bool, Any]:
    """Check ``value`` against a (union) type; types a config cannot express never match."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    for alt in typing.get_args(hint) if union else (hint,):
        try:
            ok, converted = _check_one(alt, value)
        except _Unsupported:
            continue  # e.g. ReferenceStats: built in Python, never from a config
        if ok:
            return True, converted
    return False, value


def _describe(value: Any) -> str:
    kind = "list" if isinstance(value, (list, tuple)) else type(value).__name__
    return f"{value!r} ({kind})"


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def _build_metric(entry: Mapping, where: str, registry: dict[str, type[Metric]]) -> Metric:
    name = entry[_METRIC]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'metric' must be a metric class name, got {_describe(name)}")
    cls = registry.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, registry, n=3, cutoff=0.6)
        hint = (
            f" Did you mean {', '.join(repr(c) for c in close)}?"
            if close
            else " Run `metrix list` to see them."
        )
        raise ConfigError(f"{where}: unknown metric {name!r}.{hint}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = annotation_lib.field_hints(cls)
    options = {k: v for k, v in entry.items() if k != _METRIC}
    kwargs = {}
    for option, value in options.items():
        if not isinstance(option, str) or option not in fields:
            close = difflib.get_close_matches(str(option), fields, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"{where}: {name} has no option {option!r}.{hint} Its options are {sorted(fields)}."
            )
        annotation = annotation_lib.annotation_text(fields[option].type)
        try:
            ok, converted = _check_type(hints[option], value)
        except ValueError as err:  # a malformed key path
            raise ConfigError(f"{where}.{option}: {name}.{option}: {err}") from None
        if not ok:
            raise ConfigError(
                f"{where}.{option}: {name}.{option} must be {annotation}, got {_describe(value)}"
            )
        kwargs[option] = converted
    missing = [
        f for f, spec in fields.items() if spec.default is keys_lib.REQUIRED and f not in kwargs
    ]
    if missing:
        raise ConfigError(
            f"{where}: {name} requires {', '.join(repr(m) for m in missing)} "
            f"(e.g. {missing[0]}: preds.{missing[0]})"
            if all(keys_lib.is_key_annotation(hints[m]) for m in missing)
            else f"{where}: {name} requires {', '.join(repr(m) for m in missing)}"
        )
    try:
        return cls(**kwargs)
    except Exception as err:  # noqa: BLE001 - the metric's own validation, whatever it raises
        raise ConfigError(f"{where}: {name}: {type(err).__name__}: {err}") from None


def _build_tree(node: Any, where: str, registry) -> Any:
    if isinstance(node, Metric):
        return node  # Python configs may hold metric instances directly
    if not isinstance(node, Mapping):
        raise ConfigError(
            f"{where}: expected a metric entry (a mapping with 'metric: <Name>') or a group of "
            f"entries, got {_describe(node)}"
        )
    if _METRIC in node:
        return _build_metric(node, where, registry)
    if not node:
        raise ConfigError(f"{where}: empty group (an entry needs 'metric: <Name>')")
    out = {}
    for name, child in node.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{where}: entry names must be identifiers, got {name!r}")
        out[name] = _build_tree(child, f"{where}.{name}", registry)
    return out


def load_config(source: str | os.PathLike | Mapping) -> dict[str, Any]:
    """Metric objects from a YAML file (``.yaml``/``.yml``) or a Python dict.

    Returns a dict name -> metric (groups become nested dicts). Raises :class:`ConfigError`
    naming the file, the entry and the field for anything invalid (see the module docstring).
    """
    registry = metric_registry()
    if isinstance(source, Mapping):
        label = "<dict>"
        data = source
    else:
        path = Path(source)
        label = str(path)
        if path.suffix not in (".yaml", ".yml"):
            raise ConfigError(
                f"{label}: configs are YAML files (.yaml/.yml); Python configs are dicts passed to "
                "load_config directly (a .py file is never executed)"
            )
        if not path.exists():
            raise ConfigError(f"{label}: no such config file")
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{label}: not valid YAML: {err}") from None
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{label}: a config is a non-empty mapping of names to metric entries")
    out = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{label}: entry names must be identifiers, got {name!r}")
        out[name] = _build_tree(entry, f"{label}: {name}", registry)
    return out
