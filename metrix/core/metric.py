"""The Metric base: a frozen, keyword-only dataclass of configuration and keys.

A metric declares its configuration and :data:`~metrix.core.keys.Key` fields, a nested ``State``
and a jit-safe ``get_state(**inputs)``::

    class Accuracy(mx.Metric):
        logits: mx.Key = mx.REQUIRED
        labels: mx.Key = mx.REQUIRED

        class State(mx.AverageState):
            pass

        def get_state(self, logits: Float[Array, "*b n"], labels: Int[Array, "*b"]):
            return self.State.from_values(jnp.argmax(logits, -1) == labels)

Subclasses become frozen keyword-only dataclasses without a decorator. ``get_state`` is
wrapped so that positional arguments bind like keyword ones, numpy inputs become jax
arrays, annotated inputs are type-checked (see :mod:`metrix.core.typecheck`), and the returned
state records its ``parent`` metric.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from typing_extensions import dataclass_transform

from metrix.core import keys as keys_lib
from metrix.core import typecheck
from metrix.core.state import Frozen, State, drop_frozen_methods

_INPUT_METHODS = ("get_state", "get_values")


def _as_jax(value):
    if isinstance(value, (np.ndarray, np.generic, bool, int, float)):
        return jnp.asarray(value)
    return value


def _wrap_input_method(cls, method_name: str, fn):
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        kwargs = _rename_aliases(type(self), method_name, kwargs)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as err:
            params = [p for p in signature.parameters if p != "self"]
            raise TypeError(
                f"{type(self).__name__}.{method_name}(): {err}; its inputs are {params}"
            ) from None
        arguments = {k: _as_jax(v) for k, v in bound.arguments.items() if k != "self"}
        typecheck.check_inputs(f"{type(self).__name__}.{method_name}", fn, arguments)
        var_kw = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]
        extra = arguments.pop(var_kw[0], {}) if var_kw else {}
        result = fn(self, **arguments, **extra)
        if isinstance(result, State) and result.parent is None:
            result = result.replace(parent=self)
        return result

    wrapper._metrix_wrapped = True
    return wrapper


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,))
class Metric(Frozen):
    """Base of every metric, loss and summary (see the module docstring)."""

    State: ClassVar[type[State]] = State
    # Other names accepted for an input (alias key field -> get_state argument), e.g.
    # Kauldron's ``targets`` for ``labels``. An alias is an optional ``Key`` field; setting it
    # together with the key it stands for is an error.
    key_aliases: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _INPUT_METHODS:
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_metrix_wrapped", False):
                setattr(cls, name, _wrap_input_method(cls, name, fn))
        if "__dataclass_fields__" not in cls.__dict__:
            dataclasses.dataclass(frozen=True, kw_only=True, eq=True)(cls)
            drop_frozen_methods(cls)
        cls._check_keys_match_signature()

    # -- keys ---------------------------------------------------------------------------
    @classmethod
    def key_fields(cls) -> tuple[str, ...]:
        """Names of the fields typed ``Key`` (paths into the context)."""
        return _key_fields(cls)

    @classmethod
    def input_parameters(cls) -> dict[str, inspect.Parameter]:
        """The inputs a context must provide: ``get_state``'s parameters."""
        sig = inspect.signature(inspect.unwrap(cls.get_state))
        return {n: p for n, p in sig.parameters.items() if n != "self"}

    @classmethod
    def _check_keys_match_signature(cls) -> None:
        params = cls.input_parameters()
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        unknown = [k for k in cls.key_fields() if cls.key_aliases.get(k, k) not in params]
        if unknown:
            raise TypeError(
                f"{cls.__qualname__}: key field(s) {unknown} are not inputs of get_state "
                f"(its inputs are {list(params)}); keys must be named like get_state's arguments."
            )

    def resolve_inputs(self, context: Any) -> dict[str, Any]:
        """Look every set key up in ``context``; errors name the metric, key and close paths."""
        name = type(self).__name__
        params = self.input_parameters()
        inputs: dict[str, Any] = {}
        aliased = self._aliased_inputs()
        for key in self.key_fields():
            path = getattr(self, key)
            if path is keys_lib.REQUIRED and key in aliased:
                continue  # set through its alias
            if path is keys_lib.REQUIRED:
                raise keys_lib.ContextKeyError(
                    f"{name}.{key} is a required key but was not set: pass e.g. "
                    f"{name}({key}='preds.{key}')."
                )
            if path is None:
                continue  # optional input: get_state's default applies
            if not isinstance(path, str):
                raise keys_lib.ContextKeyError(f"{name}.{key} must be a path string, got {path!r}")
            inputs[self.key_aliases.get(key, key)] = keys_lib.resolve(
                context, path, owner=name, key_name=key
            )
        missing = [
            p for p, spec in params.items()
            if spec.default is inspect.Parameter.empty
            and spec.kind not in (spec.VAR_KEYWORD, spec.VAR_POSITIONAL)
            and p not in inputs
        ]
        if missing:
            raise keys_lib.ContextKeyError(
                f"{name}: input(s) {missing} of get_state have no key set, so they cannot be "
                "read from a context."
            )
        return inputs

    def _aliased_inputs(self) -> set[str]:
        """Inputs set through an alias key; refuses an input set under both names."""
        aliased = set()
        for alias, target in self.key_aliases.items():
            if getattr(self, alias, None) is None:
                continue
            if getattr(self, target, None) not in (None, keys_lib.REQUIRED):
                raise ValueError(
                    f"{type(self).__name__}: `{alias}` is another name for `{target}`; set one "
                    f"of them, not both (got {target}={getattr(self, target)!r}, "
                    f"{alias}={getattr(self, alias)!r})."
                )
            aliased.add(target)
        return aliased

    def get_state_from_context(self, context: Any) -> State:
        """``get_state`` with every input read from ``context`` through the keys."""
        return self.get_state(**self.resolve_inputs(context))

    # -- the functional core -------------------------------------------------------------
    def get_state(self, **inputs) -> State:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.get_state")

    def empty(self) -> State:
        """The identity of merge, with the shapes and dtypes of a real state."""
        return self.State.empty(parent=self)

    # -- sharing one state between metrics (see metrix.core.collection) -------------------------
    def state_sharing_key(self) -> Any:
        """What the state depends on besides the inputs, or ``None`` (never shared).

        Metrics whose keys are equal and that read the same inputs build identical states
        (up to ``parent``), so :class:`metrix.Collection` builds, carries and merges one.
        """
        return None

    def adopt_state(self, state: State) -> State:
        """A state built by a metric with the same sharing key, as this metric's own."""
        fields = {n: getattr(state, n) for n in (*state._data_fields, *state._static_fields)}
        fields["parent"] = self
        return self.State(**fields)

    def __call__(self, *args, **kwargs):
        """One-shot value: ``get_state(*args, **kwargs).compute()``."""
        return self.get_state(*args, **kwargs).compute()


def _rename_aliases(cls, method_name: str, kwargs: dict) -> dict:
    """Keyword inputs passed under an alias name go to the argument they stand for."""
    aliases = getattr(cls, "key_aliases", None)
    if not aliases or not any(k in aliases for k in kwargs):
        return kwargs
    renamed = {}
    for key, value in kwargs.items():
        target = aliases.get(key, key)
        if target in renamed or (target != key and target in kwargs):
            raise TypeError(
                f"{cls.__name__}.{method_name}(): `{key}` is another name for `{target}`; "
                "pass one of them, not both"
            )
        renamed[target] = value
    return renamed


@functools.lru_cache(maxsize=None)
def _key_fields(cls) -> tuple[str, ...]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:
        hints = {}
    out = []
    for f in dataclasses.fields(cls):
        annotation = hints.get(f.name, f.type)
        if keys_lib.is_key_annotation(annotation):
            out.append(f.name)
    return tuple(out)
