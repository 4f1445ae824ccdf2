"""Reading annotations, failing closed: the one place keys, type checks and configs get them.

Modules written with ``from __future__ import annotations`` keep annotations as strings; they
are resolved here against the defining module (and, for fields, the class namespace). An
annotation that cannot be resolved raises a ``TypeError`` naming the class or function, the
field or argument and the reason, instead of silently turning off what depends on it (a
``Shaped[Array, n]`` with an unquoted ``n`` would otherwise disable the shape check of that
argument, and an unreadable field type would escape config validation).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import typing
from typing import Any


class AnnotationError(TypeError):
    """An annotation of a metric field or input cannot be resolved."""


def _resolve(annotation: Any, globalns: dict, localns: dict | None, where: str) -> Any:
    if not isinstance(annotation, str):
        return annotation

    def holder():
        pass

    holder.__annotations__ = {"x": annotation}
    try:
        return typing.get_type_hints(holder, globalns=globalns, localns=localns, include_extras=True)["x"]
    except Exception as err:  # NameError, SyntaxError, TypeError from a bad subscript, ...
        raise AnnotationError(
            f"{where}: its annotation {annotation!r} cannot be resolved ({type(err).__name__}: {err}). "
            "Import every name it uses at module level; quote jaxtyping dimension strings "
            '(Float[Array, "n d"]).'
        ) from None


@functools.lru_cache(maxsize=None)
def field_hints(cls: type, strict: bool = True) -> dict[str, Any]:
    """Resolved annotations of the dataclass fields of ``cls`` (base classes included).

    ``strict=False`` keeps the text of an annotation that cannot be resolved (a metric defined
    in a function that imported ``metrix as mx`` locally): key fields are recognised from
    the text as well, and no check depends on the resolved type there.
    """
    hints = {}
    for f in dataclasses.fields(cls):
        owner = next((c for c in cls.__mro__ if f.name in c.__dict__.get("__annotations__", {})), cls)
        globalns = getattr(sys.modules.get(owner.__module__), "__dict__", {})
        where = f"{cls.__qualname__}.{f.name}"
        try:
            hints[f.name] = _resolve(f.type, globalns, dict(vars(owner)), where)
        except AnnotationError:
            if strict:
                raise
            hints[f.name] = f.type
    return hints


@functools.lru_cache(maxsize=None)
def parameter_hints(fn, owner: str = "") -> dict[str, Any]:
    """Resolved annotations of ``fn``'s parameters (the return annotation is not read)."""
    where = owner or getattr(fn, "__qualname__", repr(fn))
    globalns = getattr(fn, "__globals__", {})
    return {
        name: _resolve(annotation, globalns, None, f"{where}(): argument {name!r}")
        for name, annotation in getattr(fn, "__annotations__", {}).items()
        if name != "return"
    }


def annotation_text(annotation: Any) -> str:
    """The annotation as written (its source text under postponed evaluation)."""
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", repr(annotation))
