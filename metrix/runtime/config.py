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
* required keys (``mx.REQUIRED``) left unset;
* enum-like string options (``normalize``, ``weights``, ``padding``, ``tap``, ...): a value
  outside the choices fails at load with the choices and close matches, also for the few
  metrics that check them only at ``compute()`` (:data:`OPTION_CHOICES`);
* in YAML files: a key given twice in one mapping (a metric name, or an option of one entry;
  YAML would silently keep the last), with both line numbers.

Safety: files are read with a ``yaml.SafeLoader`` and nothing in them is executed. Aliases
(``*name``) are allowed but bounded: a document whose aliases expand to more than
``MAX_YAML_NODES`` values (a "billion laughs" bomb) or nest deeper than ``MAX_YAML_DEPTH``
is refused before anything is built, and a recursive alias (an anchor holding itself) is
refused with its line. Metric names
resolve only through a registry of the :class:`~metrix.Metric` subclasses exported by the
``metrix`` package (never ``getattr`` on arbitrary modules, no import paths). Python configs
are dicts passed in directly (entries may then also be metric instances); ``.py`` files are
refused, since loading one would run its code.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metrix.core import annotations as annotation_lib
from metrix.core import keys as keys_lib
from metrix.core.metric import Metric

__all__ = ["OPTION_CHOICES", "ConfigError", "load_config", "metric_registry"]

_METRIC = "metric"

MAX_YAML_NODES = 100_000  # values of a document once its aliases are expanded
MAX_YAML_DEPTH = 64  # nesting of mappings and lists

_INCEPTION_TAPS = "inception taps"  # resolved lazily (flax is imported only when needed)

# Enum-like options that their metric checks only at compute() (or not at all): class name
# (it and its subclasses) -> option -> the accepted values. Every other string option with
# fixed choices is a ``Literal`` or checked in the metric's ``__post_init__`` (see the
# robustness tests, which probe every string option of every exported metric).
OPTION_CHOICES: dict[str, dict[str, Any]] = {
    "ConfusionMatrix": {"normalize": (None, "true", "pred", "all")},  # and ShowConfusionMatrix
    "CohenKappa": {"weights": (None, "linear", "quadratic")},
    "FID": {"tap": _INCEPTION_TAPS},
    "KID": {"tap": _INCEPTION_TAPS},
    "PrecisionRecall": {"tap": _INCEPTION_TAPS},
    "DensityCoverage": {"tap": _INCEPTION_TAPS},
}


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


def _did_you_mean(value: Any, choices) -> str:
    names = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _choices(cls: type, option: str):
    """The accepted values of ``cls.option`` from :data:`OPTION_CHOICES`, or None."""
    for klass in cls.__mro__:
        choices = OPTION_CHOICES.get(klass.__name__, {}).get(option)
        if choices is _INCEPTION_TAPS:
            try:
                from metrix.backbones import inception
            except ImportError:  # without flax no image tap can run; nothing to check against
                return None
            # "pool3" names "2048" for the feature metrics (metrix.generative.features)
            return tuple(dict.fromkeys((*inception.TAPS, "pool3")))
        if choices is not None:
            return choices
    return None


def _with_close_matches(message: str, kwargs: Mapping[str, Any]) -> str:
    """A metric's own "must be one of (...)" message, plus close matches of the bad value.

    The candidates are the quoted words of the message (the metric lists its choices)."""
    quoted = re.findall(r"'([^']*)'", message)
    for value in kwargs.values():
        if isinstance(value, str) and repr(value) in message:
            hint = _did_you_mean(value, [q for q in quoted if q != value])
            if hint:
                return message.rstrip() + ("" if message.rstrip().endswith(".") else ".") + hint
    return message


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
            literal = [
                a for a in _flat_args(hints[option]) if typing.get_origin(a) is typing.Literal
            ]
            hint = _did_you_mean(value, [c for a in literal for c in typing.get_args(a)])
            raise ConfigError(
                f"{where}.{option}: {name}.{option} must be {annotation}, got {_describe(value)}"
                + (f".{hint}" if hint else "")
            )
        choices = _choices(cls, option)
        if choices is not None and converted not in choices:
            raise ConfigError(
                f"{where}.{option}: {name}.{option} must be one of "
                f"{', '.join(repr(c) for c in choices)}; got {converted!r}."
                f"{_did_you_mean(converted, choices)}"
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
        message = _with_close_matches(str(err), kwargs)
        raise ConfigError(f"{where}: {name}: {type(err).__name__}: {message}") from None


def _flat_args(hint: Any) -> tuple:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


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
        data = _read_yaml(path.read_text(), label)
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{label}: a config is a non-empty mapping of names to metric entries")
    out = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{label}: entry names must be identifiers, got {name!r}")
        try:
            out[name] = _build_tree(entry, f"{label}: {name}", registry)
        except RecursionError:  # a Python dict that holds itself (YAML is checked on reading)
            raise ConfigError(
                f"{label}: {name}: the config nests too deeply or holds itself (a recursive dict)"
            ) from None
    return out


# ---------------------------------------------------------------------------------------
# YAML: a SafeLoader, and a check of the node graph before anything is constructed
# ---------------------------------------------------------------------------------------


def _read_yaml(text: str, label: str) -> Any:
    """The document of ``text``, after :func:`_check_yaml_nodes` (duplicates, aliases)."""
    import yaml

    class Loader(yaml.SafeLoader):
        """Records anchor names, for the messages about aliases."""

        def compose_node(self, parent, index):
            event = self.peek_event()
            anchor = None if isinstance(event, yaml.AliasEvent) else event.anchor
            node = super().compose_node(parent, index)
            if anchor is not None:
                self.anchor_names[id(node)] = anchor
            return node

    loader = Loader(text)
    loader.anchor_names = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node, label, loader.anchor_names)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(f"{label}: not valid YAML: {err}") from None
    except RecursionError:  # the composer recurses per nesting level
        raise ConfigError(
            f"{label}: not valid YAML: nested deeper than Python's recursion limit"
        ) from None
    finally:
        loader.dispose()


def _check_yaml_nodes(root: Any, label: str, anchors: Mapping[int, str]) -> None:
    """Refuse duplicate keys, recursive aliases, and alias expansion past the limits.

    Aliases make the composed document a graph whose nodes may be shared; the expanded size
    of each node is counted once (memoised), so a bomb is measured without expanding it.
    """
    import yaml

    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def line(node) -> int:
        return node.start_mark.line + 1

    def visit(node, path: str, depth: int) -> int:
        key = id(node)
        if key in on_path:
            anchor = anchors.get(key)
            name = f"&{anchor}" if anchor else "an anchor"
            raise ConfigError(
                f"{label}:{line(node)}: {path or '<top>'}: recursive alias: {name} (anchored at "
                f"line {line(node)}) holds an alias to itself; a config must be a finite tree"
            )
        if key in sizes:
            return sizes[key]
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(
                f"{label}:{line(node)}: {path}: nested deeper than {MAX_YAML_DEPTH} levels"
            )
        on_path.add(key)
        size = 1
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, path, label)
            for k, v in node.value:
                child = f"{path}.{k.value}" if path else str(k.value)
                if not isinstance(k, yaml.ScalarNode):
                    child = f"{path}.<key>"
                size += visit(k, child, depth + 1) + visit(v, child, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                size += visit(v, f"{path}[{i}]", depth + 1)
        on_path.discard(key)
        sizes[key] = size
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{label}:{line(node)}: {path or '<top>'}: expands to more than "
                f"{MAX_YAML_NODES:,} values through YAML aliases (an alias bomb?); write the "
                "values out, or use fewer aliases"
            )
        return size

    visit(root, "", 0)


def _check_duplicate_keys(node: Any, path: str, label: str) -> None:
    import yaml

    keys = [k for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
    is_entry = any(k.value == _METRIC for k in keys)
    first: dict[tuple[str, str], Any] = {}
    for k in keys:
        if k.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` then `option: x` overrides the merged value on purpose
        earlier = first.setdefault((k.tag, k.value), k)
        if earlier is not k:
            what = f"option {k.value!r} in entry {path}" if is_entry else f"metric name {k.value!r}"
            where = f" in group {path}" if path and not is_entry else ""
            raise ConfigError(
                f"{label}:{k.start_mark.line + 1}: duplicate {what}{where} (first at line "
                f"{earlier.start_mark.line + 1}); YAML would keep only the last one: remove or "
                "rename one of them"
            )
