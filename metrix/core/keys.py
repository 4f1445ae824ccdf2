"""Keys: metric fields that name where an input lives in a context.

A key is a path such as ``"preds.logits"``, ``"batch.label"``, ``"batch['image']"`` or
``"preds.x[..., 0]"``. Paths are parsed with :mod:`ast` into a list of accessors (names,
string/int keys, and array indices made of ints, slices, ``...`` and ``None``); nothing in a
path is ever evaluated. Failures name the metric, the key and the closest existing paths.

Glob parts, as in Kauldron's kontext paths: ``*`` matches every entry of one level,
``**`` any number of levels (zero included). A path with globs resolves to the *subtree* of
the matching entries, with the structure of the context kept and the entries that do not
match left out: ``"batch.**.d"`` on ``{"batch": {"d": x, "b": {"c": y, "d": z}}}`` gives
``{"d": x, "b": {"d": z}}`` (what :class:`metrix.TreeMap` / :class:`metrix.TreeReduce`
apply their metric to). Globs step into mappings, lists and tuples; a glob path that matches
nothing is a :class:`MissingPathError`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np


class _KeyTag:
    """Marker carried by :data:`Key` annotations."""


Key = Annotated[str, _KeyTag]
"""Type of a metric field holding a path into the context (``"preds.logits"``)."""


class _Required:
    def __repr__(self):
        return "REQUIRED"

    def __reduce__(self):
        return (_required, ())


def _required():
    return REQUIRED


REQUIRED: Any = _Required()
"""Default of a key that must be set before the metric reads a context."""


class ContextKeyError(KeyError):
    """A key is unset, malformed, or names a path the context does not have."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MissingPathError(ContextKeyError):
    """A key's path is not in the context (the input is missing, the key itself is fine):
    what :class:`metrix.SkipIfMissing` skips."""


# -- parsing -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Attr:
    name: str


@dataclasses.dataclass(frozen=True)
class _Item:
    key: Any  # str, int, or a tuple/slice/Ellipsis index


@dataclasses.dataclass(frozen=True)
class _Glob:
    pattern: str  # "*" (one level) or "**" (any number of levels)


# A glob part stands alone between dots (or at the start / end, or before an index).
_GLOB_PART = re.compile(r"(?:(?<=^)|(?<=\.))(\*\*|\*)(?=\.|\[|$)")
_GLOB_NAMES = {"**": "_metrix_glob_any_", "*": "_metrix_glob_one_"}
_GLOB_OF_NAME = {name: _Glob(pattern) for pattern, name in _GLOB_NAMES.items()}


def _index_value(node: ast.AST):
    """Turn an index expression node into a Python index (ints, slices, ..., None only)."""
    if isinstance(node, ast.Constant) and (node.value is None or node.value is Ellipsis or isinstance(node.value, (int, str))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int):
        return -node.operand.value
    if isinstance(node, ast.Slice):
        parts = [None if p is None else _index_value(p) for p in (node.lower, node.upper, node.step)]
        if not all(p is None or isinstance(p, int) for p in parts):
            raise ValueError("slice bounds must be integers")
        return slice(*parts)
    if isinstance(node, ast.Tuple):
        return tuple(_index_value(e) for e in node.elts)
    raise ValueError(f"unsupported index expression {ast.dump(node)}")


@functools.lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[Any, ...]:
    """``"preds.x[..., 0]"`` -> (_Attr('preds'), _Attr('x'), _Item((Ellipsis, 0)))."""
    text = _GLOB_PART.sub(lambda m: _GLOB_NAMES[m.group(1)], path.strip())
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"{path!r} is not a valid key path") from err
    parts: list[Any] = []
    node = tree
    while True:
        if isinstance(node, ast.Name):
            parts.append(_Attr(node.id))
            break
        if isinstance(node, ast.Attribute):
            parts.append(_Attr(node.attr))
            node = node.value
        elif isinstance(node, ast.Subscript):
            parts.append(_Item(_index_value(node.slice)))
            node = node.value
        else:
            raise ValueError(
                f"{path!r} is not a valid key path: use names, '.attr', ['key'] and array "
                "indices such as [..., 0]"
            )
    parts = tuple(_GLOB_OF_NAME.get(p.name, p) if isinstance(p, _Attr) else p for p in reversed(parts))
    for p in parts:
        if isinstance(p, _Attr) and p.name.startswith("__"):
            raise ValueError(f"{path!r}: dunder names such as {p.name!r} are not allowed in key paths")
    return parts


def _render(parts: Sequence[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, _Glob):
            out += ("." if out else "") + p.pattern
        elif isinstance(p, _Attr):
            out += ("." if out else "") + p.name
        else:
            out += f"[{p.key!r}]"
    return out


# -- resolving ------------------------------------------------------------------------------


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _step(node: Any, part: Any):
    if isinstance(part, _Attr):
        if isinstance(node, Mapping):
            return node[part.name]
        return getattr(node, part.name)
    key = part.key
    if isinstance(key, str):
        if isinstance(node, Mapping):
            return node[key]
        return getattr(node, key)
    if _is_array(node):
        _check_in_bounds(node.shape, key)
        return node[key]
    if isinstance(node, (Sequence, Mapping)):
        return node[key]
    raise TypeError(f"cannot index {type(node).__name__} with {key!r}")


def _check_in_bounds(shape: tuple[int, ...], key: Any) -> None:
    """Raise IndexError for an integer index outside its axis, as numpy does.

    JAX arrays clamp out-of-bounds indices (``x[..., 10]`` on 3 columns reads column 2), so
    a key path would read plausible wrong data; checked on the static shape, so it holds for
    every array type, eagerly and under ``jit``. Slices clamp in numpy too and stay allowed.
    """
    index = key if isinstance(key, tuple) else (key,)
    consumed = sum(1 for k in index if k is not None and k is not Ellipsis)
    if consumed > len(shape):
        raise IndexError(
            f"too many indices: {consumed} for an array of {len(shape)} dimension(s) {tuple(shape)}"
        )
    axis = 0
    for k in index:
        if k is Ellipsis:
            axis += len(shape) - consumed
        elif k is None:
            continue
        else:
            if isinstance(k, int) and not -shape[axis] <= k < shape[axis]:
                raise IndexError(
                    f"index {k} is out of bounds for axis {axis} of size {shape[axis]} "
                    f"(array shape {tuple(shape)})"
                )
            axis += 1


def _children(node: Any):
    if isinstance(node, Mapping):
        return [(str(k), v) for k, v in node.items()]
    if _is_array(node) or isinstance(node, (str, bytes, int, float, complex, np.generic)) or node is None:
        return []
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [(f.name, getattr(node, f.name, None)) for f in dataclasses.fields(node)]
    if hasattr(node, "_asdict"):
        return list(node._asdict().items())
    if hasattr(node, "__dict__") and not callable(node):
        return [(k, v) for k, v in vars(node).items() if not k.startswith("_")]
    return []


def available_paths(context: Any, max_depth: int = 6) -> list[str]:
    """Every dotted path in ``context`` (dicts, dataclasses, namedtuples, objects)."""
    paths: list[str] = []

    def walk(node, prefix, depth):
        if depth > max_depth:
            return
        for name, child in _children(node):
            path = f"{prefix}.{name}" if prefix else name
            paths.append(path)
            walk(child, path, depth + 1)

    walk(context, "", 0)
    return paths


# -- glob paths -------------------------------------------------------------------------------

_NO_MATCH = object()


def _glob_children(node: Any) -> list[tuple[Any, Any]]:
    """The entries a glob steps into: those of mappings, lists and tuples (not arrays)."""
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, (list, tuple)) and not hasattr(node, "_fields"):
        return list(enumerate(node))
    return []


def _rebuild(node: Any, entries: dict) -> Any:
    """``node``'s container type holding only ``entries`` (in the context's order)."""
    if isinstance(node, Mapping):
        try:
            return type(node)(entries)
        except TypeError:
            return dict(entries)
    if isinstance(node, (list, tuple)):
        values = [entries[k] for k in sorted(entries)]
        return tuple(values) if isinstance(node, tuple) else values
    return dict(entries)


def _select(node: Any, parts: Sequence[Any]) -> Any:
    """The subtree of ``node`` matching ``parts`` (globs included), ``_NO_MATCH`` if none."""
    if not parts:
        return node
    part, rest = parts[0], parts[1:]
    if isinstance(part, _Glob):
        children = _glob_children(node)
        if part.pattern == "*":
            matched = {k: got for k, child in children if (got := _select(child, rest)) is not _NO_MATCH}
            return _rebuild(node, matched) if matched else _NO_MATCH
        # "**": zero levels (the rest of the path here) merged with any deeper match.
        deeper = {k: got for k, child in children if (got := _select(child, parts)) is not _NO_MATCH}
        here = _select(node, rest)
        if here is _NO_MATCH:
            return _rebuild(node, deeper) if deeper else _NO_MATCH
        if deeper and _glob_children(here) and not _is_array(here):
            both = {**deeper, **dict(_glob_children(here))}
            return _rebuild(node, {k: both[k] for k, _ in children if k in both})
        return here
    if _is_array(node) and isinstance(part, _Attr):
        return _NO_MATCH  # a glob never matches array attributes (x.T, x.shape)
    try:
        child = _step(node, part)
    except (KeyError, AttributeError, TypeError):
        return _NO_MATCH
    got = _select(child, rest)
    if got is _NO_MATCH:
        return _NO_MATCH
    if _is_array(node):  # an array index applied to a matched leaf
        return got
    key = part.name if isinstance(part, _Attr) else part.key
    return _rebuild(node, {key: got})


def _resolve_glob(context: Any, parts: tuple, path: str, where: str) -> Any:
    first = next(i for i, p in enumerate(parts) if isinstance(p, _Glob))
    node = _resolve_parts(context, parts[:first], path, where) if first else context
    got = _select(node, parts[first:])
    if got is _NO_MATCH:
        top = sorted({k.split(".")[0] for k in available_paths(context)})
        raise MissingPathError(
            f"{where}: no entry of the context matches the glob path {path!r}. The context "
            f"has: {', '.join(repr(t) for t in top[:12])}."
        )
    return got


def has_glob(path: Any) -> bool:
    """Whether a key path holds a ``*`` / ``**`` part."""
    return isinstance(path, str) and _GLOB_PART.search(path) is not None


def resolve(context: Any, path: str, *, owner: str = "", key_name: str = "") -> Any:
    """The value at ``path`` in ``context``; a :class:`ContextKeyError` with close matches otherwise.

    A path with glob parts gives the subtree of the matching entries (see the module docstring).
    """
    where = f"{owner}.{key_name}" if owner else key_name
    try:
        parts = parse_path(path)
    except ValueError as err:
        raise ContextKeyError(f"{where}: {err}") from None
    if any(isinstance(p, _Glob) for p in parts):
        return _resolve_glob(context, parts, path, where)
    return _resolve_parts(context, parts, path, where)


def _resolve_parts(context: Any, parts: tuple, path: str, where: str) -> Any:
    node = context
    for i, part in enumerate(parts):
        try:
            node = _step(node, part)
        except (KeyError, AttributeError, IndexError, TypeError) as err:
            reached = _render(parts[:i]) or "<context>"
            known = available_paths(context)
            close = difflib.get_close_matches(path, known, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            if not close and known:
                top = sorted({k.split('.')[0] for k in known})
                hint = f" The context has: {', '.join(repr(t) for t in top[:12])}."
            raise MissingPathError(
                f"{where}: path {path!r} not found in the context (failed at {_render(parts[: i + 1])!r} "
                f"after {reached!r}: {type(err).__name__}: {err}).{hint}"
            ) from None
    return node


def is_key_annotation(annotation: Any) -> bool:
    """True for ``Key``, ``Key | None``, ``Optional[Key]`` (or their string forms)."""
    if isinstance(annotation, str):
        return re.search(r"(^|[\[.| ])Key\b", annotation) is not None
    metadata = getattr(annotation, "__metadata__", ())
    if _KeyTag in metadata:
        return True
    return any(is_key_annotation(arg) for arg in getattr(annotation, "__args__", ()) or ())
