"""The State base: an immutable, mergeable pytree whose fields declare how they merge."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, ClassVar, Self

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import dataclass_transform

from metrix.core import refuse as refuse_lib
from metrix.core.fields import (
    _META,
    EMPTY,
    FieldKind,
    MergeError,
    TruncateKind,
    gather,
    is_absent,
    pairwise_fold,
    static_field,
)

# ---------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------


class Frozen:
    """Frozen attribute behaviour on a base class, so a subclass may be re-decorated.

    A frozen dataclass puts ``__setattr__``/``__delattr__`` in its own ``__dict__``, and a
    second ``@dataclasses.dataclass(frozen=True)`` on it (Kauldron-style user code) then fails
    with "Cannot overwrite attribute __setattr__". metrix removes those per-class copies
    (:func:`drop_frozen_methods`) and keeps the same behaviour here.
    """

    __slots__ = ()

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")

    def __delattr__(self, name):
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}: {type(self).__name__} is frozen")


def drop_frozen_methods(cls) -> None:
    for name in ("__setattr__", "__delattr__"):
        if name in cls.__dict__:
            delattr(cls, name)


def _register_pytree(cls, data: tuple[str, ...], static: tuple[str, ...]) -> None:
    """Register ``cls`` as a pytree: data fields are children, static fields the treedef.

    Same structure and key paths (``.field``) as ``jax.tree_util.register_dataclass``, with
    a cheaper rebuild: every jitted call unflattens its output states, and the frozen
    dataclass ``__init__`` (one ``object.__setattr__`` per field) costs more than filling a
    fresh instance's ``__dict__`` directly, which the generated ``unflatten`` does (field
    names are identifiers, checked by ``dataclasses``; the code is built from them alone).
    """
    keys = tuple(jax.tree_util.GetAttrKey(name) for name in data)
    source = "\n".join(
        [
            "def flatten(obj):",
            f"    return ({''.join(f'obj.{n}, ' for n in data)}), ({''.join(f'obj.{n}, ' for n in static)})",
            "def flatten_with_keys(obj):",
            f"    return ({''.join(f'(keys[{i}], obj.{n}), ' for i, n in enumerate(data))}), "
            f"({''.join(f'obj.{n}, ' for n in static)})",
            "def unflatten(static_values, children):",
            "    obj = new(cls)",
            "    fields = obj.__dict__",
            *(f"    fields[{n!r}] = static_values[{i}]" for i, n in enumerate(static)),
            *(f"    fields[{n!r}] = children[{i}]" for i, n in enumerate(data)),
            "    return obj",
        ]
    )
    namespace = {"new": object.__new__, "cls": cls, "keys": keys}
    exec(compile(source, f"<metrix pytree {cls.__qualname__}>", "exec"), namespace)  # noqa: S102
    jax.tree_util.register_pytree_with_keys(
        cls, namespace["flatten_with_keys"], namespace["unflatten"], namespace["flatten"]
    )


# -- eager compute as one compiled program ---------------------------------------------------
#
# ``state.compute()`` on a concrete state is one cached jitted program per state class and
# configuration (``parent``; jit keys shapes and the other static fields itself), not one
# dispatch per jnp op. The first call with a key runs eagerly; the second traces the program
# and keeps it when it gives the eager value's structure, leaf types and values; otherwise
# (a host-side compute: numpy, variable-length results, code reading concrete values, a
# warning) that key stays eager. The program also returns one flag, set when a ``refuse``
# fired or the value holds a NaN: the eager compute then runs again, so refusals raise and
# warnings warn as they always did. Under a trace (your jit, or a nested state's compute
# inside the program) compute simply runs inline. A state class opts out with
# ``compile_eager_compute = False`` (buffer states: their computes run on the host).

COMPUTE_CACHE_SIZE = 128  # (state compute, class, config) entries, oldest out; each holds its programs
_compute_entries: dict = {}  # (program, state class, parent) -> [calls, program/None/_EAGER]
_EAGER = "eager"


def _value_flag(out, refusals):
    """True when a refusal fired or a floating leaf of the value is NaN (jit-safe)."""
    flags = [jnp.any(jnp.asarray(count) > 0) for count in refusals.counts]
    for leaf in jax.tree.leaves(out):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            flags.append(jnp.any(jnp.isnan(leaf)))
    return jnp.any(jnp.stack(flags)) if flags else jnp.zeros((), bool)


def same_value(eager, compiled) -> bool:
    """``compiled`` has ``eager``'s tree structure, jax-array leaves of the same shapes and
    dtypes, and equal values (to float tolerance, NaN equal to NaN)."""
    e_leaves, e_tree = jax.tree.flatten(eager)
    c_leaves, c_tree = jax.tree.flatten(compiled)
    if e_tree != c_tree:
        return False
    for e, c in zip(e_leaves, c_leaves):
        if not isinstance(e, jax.Array) or e.shape != c.shape or e.dtype != c.dtype:
            return False
        if not np.allclose(np.asarray(e), np.asarray(c), rtol=1e-4, atol=1e-6, equal_nan=True):
            return False
    return True


def flagged_program(fn):
    """``fn(*args)`` traced with its refusals collected: returns ``(value, flag)``."""

    def program(*args):
        with refuse_lib.deferred_refusals() as pending:
            out = fn(*args)
        return out, _value_flag(out, refuse_lib.collected(pending))

    return program


def eager_with_warnings(fn, *args):
    """``fn(*args)`` and whether it warned (its warnings are passed on)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(*args)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return value, bool(caught)


def _compiled_compute(fn):
    """Wrap a ``State.compute`` (see the comment above)."""
    traced = flagged_program(fn)

    @functools.wraps(fn)
    def compute(self):
        if not type(self).compile_eager_compute or not refuse_lib.is_concrete(self):
            return fn(self)
        key = (fn, type(self), self.parent)
        try:
            entry = _compute_entries.get(key)
        except TypeError:  # an unhashable parent configuration
            return fn(self)
        if entry is None:
            if len(_compute_entries) >= COMPUTE_CACHE_SIZE:
                _compute_entries.pop(next(iter(_compute_entries)))
            _compute_entries[key] = [1, None]
            return fn(self)
        if entry[1] is _EAGER:
            return fn(self)
        if entry[1] is None:  # second call: try the program once
            value, warned = eager_with_warnings(fn, self)
            entry[1] = _EAGER
            if not warned:
                # A jitted function per entry, so that evicting the entry frees its compiled
                # executables (one jit shared by every entry would keep them all alive).
                program = jax.jit(traced)
                try:
                    if same_value(value, program(self)[0]):
                        entry[1] = program
                except Exception:  # noqa: BLE001, S110 - not traceable: a host-side compute
                    pass
            return value
        try:
            out, flagged = entry[1](self)
        except Exception:  # noqa: BLE001 - a new shape that does not trace: eager from now on
            entry[1] = _EAGER
            return fn(self)
        return fn(self) if flagged.block_until_ready().item() else out

    compute._metrix_compiled = True
    return compute


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,))
class State(Frozen):
    """Base of all states: an immutable, mergeable pytree.

    Subclasses are made frozen, keyword-only dataclasses and registered as pytrees
    automatically. They implement :meth:`compute`; :meth:`merge`, :meth:`empty`,
    :meth:`empty_like`, :func:`metrix.merge_stacked` and :func:`metrix.allreduce` are loops over
    the field declarations, each field combined by its kind (:mod:`metrix.core.fields`). A
    subclass may still write its own ``merge``: it is then folded and allreduced by gathering
    states and applying that merge (override ``_allreduce`` for a cheaper collective).
    """

    parent: Any = static_field(default=None)

    _data_fields: ClassVar[tuple[str, ...]] = ()
    _static_fields: ClassVar[tuple[str, ...]] = ("parent",)
    _truncate_fields: ClassVar[tuple[str, ...]] = ()
    _undeclared_fields_are_static: ClassVar[bool] = False
    # The kind of a field declared without a metrix field (CollectFirstState: truncate), or None.
    _undeclared_field_kind: ClassVar[FieldKind | None] = None
    # empty() gives EMPTY (instead of an error) for a field whose declaration lacks the
    # shape or class an identity needs (AutoState, as Kauldron's EMPTY).
    _shapeless_identities: ClassVar[bool] = False
    _kinds: ClassVar[dict[str, FieldKind]] = {}
    # Eager compute() runs as one cached compiled program (see _compiled_compute); False
    # keeps a class's compute op by op (host-side computes).
    compile_eager_compute: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        compute = cls.__dict__.get("compute")
        if compute is not None and not getattr(compute, "_metrix_compiled", False):
            cls.compute = _compiled_compute(compute)
        if "__dataclass_fields__" in cls.__dict__:  # already processed (user decorator)
            return
        dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=True)(cls)
        drop_frozen_methods(cls)
        data, static, kinds = [], [], {}
        for f in dataclasses.fields(cls):
            kind = f.metadata.get(_META)
            if kind == "static" or (kind is None and f.metadata.get("pytree_node", True) is False):
                static.append(f.name)
            elif isinstance(kind, FieldKind):
                data.append(f.name)
                kinds[f.name] = kind
            elif kind is None and cls._undeclared_field_kind is not None and f.name != "parent":
                data.append(f.name)
                kinds[f.name] = cls._undeclared_field_kind
            elif cls._undeclared_fields_are_static:
                static.append(f.name)
            else:
                raise TypeError(
                    f"{cls.__qualname__}.{f.name}: every State field must be declared with a "
                    "metrix field (sum_field, exact_sum_field, min_field, max_field, concat_field, "
                    "truncate_field, nested_field, last_field, chan_mean_field, chan_m2_field or "
                    "static_field) so merge knows what to do with it."
                )
        cls._data_fields = tuple(data)
        cls._static_fields = tuple(static)
        cls._kinds = kinds
        for name in data:
            kinds[name].check_owner(cls, name)
        cls._truncate_fields = tuple(n for n in data if isinstance(cls.field_kind(n), TruncateKind))
        _register_pytree(cls, cls._data_fields, cls._static_fields)
        # Already a pytree dataclass: `@flax.struct.dataclass` (Kauldron-style user code) must
        # leave it as it is instead of registering the class a second time.
        cls._flax_dataclass = True

    # -- introspection ------------------------------------------------------------------
    @classmethod
    def field_kind(cls, name: str) -> FieldKind:
        kind = cls._kinds.get(name)
        return kind if kind is not None else cls.__dataclass_fields__[name].metadata[_META]

    def replace(self, **changes) -> Self:
        return dataclasses.replace(self, **changes)

    # -- the algebra --------------------------------------------------------------------
    def _check_mergeable(self, other: State) -> None:
        if type(other) is not type(self):
            raise MergeError(
                f"cannot merge {type(self).__qualname__} with {type(other).__qualname__}"
            )
        for name in self._static_fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is EMPTY or theirs is EMPTY or (name == "parent" and (mine is None or theirs is None)):
                continue
            if mine != theirs:
                if name == "parent":
                    raise MergeError(
                        f"cannot merge {type(self).__qualname__} states from different metrics "
                        f"(their parents differ: {mine!r} vs {theirs!r})"
                    )
                raise MergeError(
                    f"cannot merge {type(self).__qualname__} states whose static field "
                    f"{name!r} differs: {mine!r} vs {theirs!r}"
                )

    def merge(self, other: Self) -> Self:
        """Combine with another state of the same metric (associative; ``empty()`` is its identity).

        Each field is merged by its kind (:mod:`metrix.core.fields`), which may read the other
        fields of both states (a buffer's fill count, a Chan mean's count).
        """
        self._check_mergeable(other)
        base = self._with_parent(other)
        return base.replace(**{n: self.field_kind(n).merge_field(n, base, other) for n in self._data_fields})

    def _with_parent(self, other: State) -> Self:
        """``self`` with the parent, and any static field it holds as ``EMPTY``, of ``other``."""
        missing = {
            n: getattr(other, n)
            for n in self._static_fields
            if getattr(self, n) is EMPTY or (n == "parent" and self.parent is None)
        }
        return self.replace(**missing) if missing else self

    def _merges_by_fields(self) -> bool:
        """False for a subclass that writes its own ``merge`` (its fields' folds and
        collectives would not be what its merge does)."""
        return type(self).merge is State.merge

    def _merge_stacked(self) -> Self:
        """The merge of the states stacked on this state's leading axis, in order.

        Each field folds by its kind (sums reduce, buffers place rows, Chan moments pool); a
        state with its own ``merge`` is folded by a log2(n) tree of that merge instead.
        """
        if not self._merges_by_fields():
            length = jax.tree.leaves(self)[0].shape[0]
            return pairwise_fold(self, jax.vmap(lambda a, b: a.merge(b)), length)
        return self.replace(**{n: self.field_kind(n).fold_field(n, self) for n in self._data_fields})

    def _allreduce(self, axis_name) -> Self:
        """The merge of this state across the devices of ``axis_name`` (inside
        ``shard_map``/``pmap``), typed replicated: each field by its kind's collective. A state
        with its own ``merge`` gathers every device's state and folds them with it. Override
        to give a state a cheaper exact collective."""
        if not self._merges_by_fields():
            return jax.tree.map(lambda x: gather(x, axis_name), self)._merge_stacked()
        return self.replace(
            **{n: self.field_kind(n).allreduce_field(n, self, axis_name) for n in self._data_fields}
        )

    def compute(self) -> Any:
        """Turn the accumulated state into values (a jax scalar, array or dict of them)."""
        raise NotImplementedError(f"{type(self).__qualname__}.compute")

    def finalize(self) -> Self:
        """The state ready for a host-side ``compute`` (Kauldron's ``finalize``): the state
        itself here; :class:`AutoState` cuts truncate fields and moves arrays to numpy.
        ``compute()`` never needs it first."""
        return self

    def empty_like(self) -> Self:
        """The identity of merge with exactly this state's shapes and dtypes."""
        return self.replace(**{n: self.field_kind(n).empty_like_field(n, self) for n in self._data_fields})

    @classmethod
    def empty(cls, parent: Any = None, **static) -> Self:
        """The identity of merge built from the field declarations (shapes may use ``parent``)."""
        values = {n: cls.field_kind(n).empty_field(n, cls, parent, static) for n in cls._data_fields}
        return cls(parent=parent, **static, **values)


# The base itself is a dataclass (so subclasses inherit ``parent``) but not a pytree.
dataclasses.dataclass(frozen=True, kw_only=True, eq=False)(State)
drop_frozen_methods(State)


class AutoStateOutput(dict):
    """What :meth:`AutoState.compute` returns: a dict of the field values, also readable as
    attributes (``out.images``); a pytree, so it can leave ``jit``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"AutoStateOutput has no field {name!r}; it has {sorted(self)}") from None


jax.tree_util.register_pytree_with_keys(
    AutoStateOutput,
    lambda out: ([(jax.tree_util.DictKey(k), v) for k, v in out.items()], tuple(out)),
    lambda keys, values: AutoStateOutput(zip(keys, values)),
)


def to_host(value):
    """Concrete arrays as numpy (Kauldron's finalize); tracers, None and EMPTY unchanged."""
    if isinstance(value, State):
        return value.finalize()
    if is_absent(value) or not refuse_lib.is_concrete(value):
        return value
    return jax.tree.map(np.asarray, value)


class AutoState(State):
    """Kauldron's ``AutoState``: a state defined by its fields alone.

    Fields declared with the field functions merge by their kind (``sum_field``,
    ``min_field``, ``max_field``, ``concat_field``, ``truncate_field``, ``nested_field``,
    ...), each holding an array, a pytree of arrays, or ``None`` when declared with
    ``default=None`` and left out; any other field (plain annotation, ``static_field``,
    ``flax.struct.field(pytree_node=False)``) is static configuration, checked equal on
    merge. ``empty()`` holds each field's identity: 0 / +inf / -inf of the declared shape
    (scalar by default, broadcast on merge) for sums, minima and maxima; ``EMPTY`` for concat
    and truncate fields without ``item_shape``, for fields declared with ``default=`` and
    nested states of unknown class. ``compute()`` returns an :class:`AutoStateOutput` of the
    data fields (truncated fields cut to their ``num``, nested states computed; jit-safe);
    :meth:`finalize` gives the state with numpy arrays. ``@flax.struct.dataclass`` on a
    subclass is accepted and changes nothing.
    """

    _undeclared_fields_are_static: ClassVar[bool] = True
    _shapeless_identities: ClassVar[bool] = True

    @classmethod
    def empty(cls, parent: Any = None, **static) -> Self:
        """The identity of merge; a field declared with ``default=`` (optional in Kauldron's
        sense) is ``EMPTY`` there, so that it merges with states that hold it and with those
        that do not."""
        values = {}
        for n in cls._data_fields:
            declared = cls.__dataclass_fields__[n].default
            if declared is not dataclasses.MISSING:
                values[n] = EMPTY
            else:
                values[n] = cls.field_kind(n).empty_field(n, cls, parent, static)
        return cls(parent=parent, **static, **values)

    def _truncated(self) -> Self:
        """Every truncate field cut to its ``num`` rows (jit-safe)."""
        cuts = {}
        for n in self._truncate_fields:
            value = getattr(self, n)
            if not is_absent(value):
                kind = self.field_kind(n)
                cuts[n] = kind.truncate(value, kind.num_rows(self))
        return self.replace(**cuts) if cuts else self

    def finalize(self) -> Self:
        """Kauldron's ``finalize``: truncate fields cut to their ``num`` rows, concrete arrays
        turned into numpy arrays (nested states finalized); static fields and ``None`` /
        ``EMPTY`` values unchanged. Under ``jit`` the arrays stay traced. The result still
        merges; ``compute()`` does not need it."""
        final = self._truncated()
        return final.replace(**{n: to_host(getattr(final, n)) for n in self._data_fields})

    def compute(self) -> AutoStateOutput:
        final = self._truncated()
        out = AutoStateOutput()
        for name in self._data_fields:
            value = getattr(final, name)
            if value is EMPTY:
                value = None  # never merged with data (Kauldron's finalize gives None)
            out[name] = value.compute() if isinstance(value, State) else value
        return out


__all__ = [
    "AutoState",
    "AutoStateOutput",
    "MergeError",
    "State",
]
