"""Shape and dtype checks of metric inputs: jaxtyping annotations checked by typeguard.

Checks run when ``get_state`` (or a loss's ``get_values``) is called, i.e. once per trace
under ``jit`` (zero cost in the compiled program) and at every eager call. All annotated
arguments of one call share their named dimensions (``"*b n"`` must agree across
arguments). Turn checking off with ``metrix.set_typechecking(False)``, the context manager
``metrix.typechecking(False)``, or the environment variable ``METRIX_TYPECHECK=0``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import typing

import jaxtyping
import typeguard

from metrix.core import annotations as annotation_lib

_enabled = os.environ.get("METRIX_TYPECHECK", "1").lower() not in ("0", "false", "no", "off")


class InputTypeError(TypeError):
    """An input to a metric has the wrong rank, shape or dtype."""


def set_typechecking(enabled: bool) -> None:
    """Switch input checking on or off for the whole process."""
    global _enabled
    _enabled = bool(enabled)


def typechecking_enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def typechecking(enabled: bool):
    """Temporarily switch input checking on or off."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


def _is_jaxtyping(annotation) -> bool:
    if getattr(annotation, "__module__", "").startswith("jaxtyping"):
        return True
    return any(_is_jaxtyping(a) for a in getattr(annotation, "__args__", ()) or ())


@functools.lru_cache(maxsize=None)
def checked_annotations(fn, owner: str = "") -> dict[str, typing.Any]:
    """The jaxtyping annotations of ``fn``'s parameters, resolved (the return annotation is
    not read). An argument annotation that cannot be resolved raises
    :class:`~metrix.core.annotations.AnnotationError`: the metric base calls this when the
    class is created, so a typo never switches checking off silently."""
    hints = annotation_lib.parameter_hints(fn, owner)
    return {name: hint for name, hint in hints.items() if _is_jaxtyping(hint)}


def _describe(value) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype}{list(value.shape)}"
    return type(value).__name__


def check_inputs(owner: str, fn, arguments: dict[str, typing.Any]) -> None:
    """Check ``arguments`` against ``fn``'s jaxtyping annotations, naming owner and argument."""
    if not _enabled:
        return
    annotations = checked_annotations(fn)
    if not annotations:
        return
    present = {k: v for k, v in arguments.items() if k in annotations}
    with jaxtyping.jaxtyped("context"):
        for name, value in present.items():
            try:
                typeguard.check_type(value, annotations[name])
            except typeguard.TypeCheckError:
                shapes = ", ".join(f"{k}={_describe(v)}" for k, v in present.items())
                raise InputTypeError(
                    f"{owner}: argument {name!r} is {_describe(value)}, expected "
                    f"{_annotation_text(annotations[name])} (all inputs: {shapes}). Shared "
                    "dimension names must agree across arguments."
                ) from None


def _annotation_text(annotation) -> str:
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if args and not _is_plain_jaxtyping(annotation):
        return " or ".join(_annotation_text(a) for a in args) + " or None"
    dtype = getattr(annotation, "dtype", None)
    dims = getattr(annotation, "dim_str", None)
    if dtype is not None and dims is not None:
        return f"{dtype.__name__}[{dims!r}]"
    return repr(annotation)


def _is_plain_jaxtyping(annotation) -> bool:
    return hasattr(annotation, "dim_str")
