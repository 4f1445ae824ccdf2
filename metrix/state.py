"""The state algebra: immutable pytrees whose fields declare how they merge.

A :class:`State` is a frozen dataclass registered as a JAX pytree. Each field says how two
states combine (Kauldron's ``AutoState`` idea), and that one declaration drives everything
that combines states: :meth:`State.merge`, :meth:`State.empty_like` (the identity of merge),
:func:`metrix.allreduce` across devices and :func:`metrix.merge_stacked` over a leading axis.

Field kinds (constructors below):

================== ====================================== =====================================
kind               merge(a, b)                            identity
================== ====================================== =====================================
``sum_field``      ``a + b``                              ``0``
``exact_sum_field`` double-float TwoSum (exact counts)    ``0``
``min_field``      ``minimum(a, b)``                      ``+inf`` (or the dtype's max)
``max_field``      ``maximum(a, b)``                      ``-inf`` (or the dtype's min)
``concat_field``   rows of b after the rows of a, in a    zero rows, fill count 0
                   fixed-capacity buffer (see BufferState)
``nested_field``   ``a.merge(b)`` (a State inside)        ``State.empty_like()``
``static_field``   must be equal; stays in the treedef    (unchanged)
================== ====================================== =====================================

Every state carries ``parent``: the (frozen, hashable) metric that made it, as static pytree
metadata, so ``compute()`` can read its configuration and states of differently configured
metrics refuse to merge.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from typing_extensions import dataclass_transform

from metrix import numerics

_Self = TypeVar("_Self", bound="State")
_META = "metrix"


class MergeError(ValueError):
    """Two states cannot be merged (different configuration or structure)."""


class CapacityOverflowError(RuntimeError):
    """A fixed-capacity buffer received more rows than it can hold."""


# ---------------------------------------------------------------------------------------
# Field kinds
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldKind:
    """How one field merges, and how to build its identity for ``empty()``.

    ``shape`` and ``dtype`` describe the field for ``State.empty(parent)``; either may be a
    callable of the parent metric (e.g. ``lambda m: (m.num_classes,)``).
    """

    name: str
    shape: Any = ()
    dtype: Any = jnp.float32

    # -- merging two values -------------------------------------------------------------
    def merge(self, a, b):
        raise NotImplementedError

    def identity_like(self, x):
        raise NotImplementedError

    def resolved_shape_dtype(self, parent, state_cls, field_name):
        shape = self.shape(parent) if isinstance(self.shape, types.FunctionType) else self.shape
        dtype = self.dtype(parent) if isinstance(self.dtype, types.FunctionType) else self.dtype
        if shape is None:
            raise ValueError(
                f"{state_cls.__qualname__}.{field_name}: its shape depends on the data and the "
                f"metric {type(parent).__name__} does not declare it; build the identity from a "
                "real state with `state.empty_like()` instead of `metric.empty()`."
            )
        return tuple(shape), jnp.dtype(dtype)


@dataclasses.dataclass(frozen=True)
class SumKind(FieldKind):
    name: str = "sum"

    def merge(self, a, b):
        return a + b

    def identity_like(self, x):
        return jnp.zeros_like(x)

    def identity(self, shape, dtype):
        return jnp.zeros(shape, dtype)


@dataclasses.dataclass(frozen=True)
class ExactSumKind(FieldKind):
    """A double-float sum: value stored as ``(..., 2)`` float32 (hi, lo); see numerics."""

    name: str = "exact_sum"

    def merge(self, a, b):
        return numerics.df_add(a, b)

    def identity_like(self, x):
        return jnp.zeros_like(x)

    def identity(self, shape, dtype):
        return jnp.zeros((*shape, 2), dtype)


def _lowest(dtype):
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if dtype == jnp.bool_:
        return False
    return jnp.iinfo(dtype).min


def _highest(dtype):
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.inf
    if dtype == jnp.bool_:
        return True
    return jnp.iinfo(dtype).max


@dataclasses.dataclass(frozen=True)
class MinKind(FieldKind):
    name: str = "min"

    def merge(self, a, b):
        return jnp.minimum(a, b)

    def identity_like(self, x):
        return jnp.full_like(x, _highest(x.dtype))

    def identity(self, shape, dtype):
        return jnp.full(shape, _highest(dtype), dtype)


@dataclasses.dataclass(frozen=True)
class MaxKind(FieldKind):
    name: str = "max"

    def merge(self, a, b):
        return jnp.maximum(a, b)

    def identity_like(self, x):
        return jnp.full_like(x, _lowest(x.dtype))

    def identity(self, shape, dtype):
        return jnp.full(shape, _lowest(dtype), dtype)


@dataclasses.dataclass(frozen=True)
class ConcatKind(FieldKind):
    """Rows appended into a fixed-capacity buffer; the owning state must be a BufferState.

    ``shape`` is the shape of one row (item); the buffer is ``(capacity, *shape)``.
    """

    name: str = "concat"

    def identity_like(self, x):
        return jnp.zeros_like(x)

    def identity(self, shape, dtype):
        return jnp.zeros(shape, dtype)


@dataclasses.dataclass(frozen=True)
class NestedKind(FieldKind):
    """A State (or a tuple of States) inside a State: merges with the inner states' own rules."""

    name: str = "nested"
    state_cls: Any = None

    def merge(self, a, b):
        if isinstance(a, tuple):
            return tuple(x.merge(y) for x, y in zip(a, b, strict=True))
        return a.merge(b)

    def identity_like(self, x):
        if isinstance(x, tuple):
            return tuple(s.empty_like() for s in x)
        return x.empty_like()


@dataclasses.dataclass(frozen=True)
class TruncateKind(FieldKind):
    """Rows concatenated along ``axis`` and cut to the first ``num`` (Kauldron's truncate).

    ``num`` is read from the state through the attribute path ``num_field`` (for example
    ``"parent.num_images"``), so it is static configuration. A value with no elements is the
    identity, whatever its shape: ``empty()`` knows the row shape only if ``shape`` (the
    shape of one row) is declared. Shapes grow until ``num`` rows are kept, then stay fixed,
    so a jitted merge traces at most a few times.
    """

    name: str = "truncate"
    num_field: str = ""
    axis: int = 0

    def num_rows(self, state) -> int:
        try:
            num = operator.attrgetter(self.num_field)(state)
        except AttributeError as err:
            raise AttributeError(
                f"{type(state).__qualname__}: truncate_field(num_field={self.num_field!r}) "
                f"cannot be read from the state ({err}); set the state's parent metric or "
                "the static field it names."
            ) from None
        if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 0:
            raise TypeError(
                f"{type(state).__qualname__}: num_field {self.num_field!r} must be a "
                f"non-negative int, got {num!r}"
            )
        return int(num)

    def truncate(self, value, num: int):
        if value.ndim == 0 or value.shape[self.axis] <= num:
            return value
        return lax.slice_in_dim(value, 0, num, axis=self.axis)

    def merge_in(self, state, a, b):
        num = self.num_rows(state)
        if jnp.size(a) == 0:
            return self.truncate(b, num)
        if jnp.size(b) == 0 or a.shape[self.axis] >= num:
            return self.truncate(a, num)
        return self.truncate(jnp.concatenate([a, b], axis=self.axis), num)

    def fold_stacked(self, stacked, num: int):
        """Merge values stacked on a new leading axis, in order (rows of 0, then 1, ...)."""
        if stacked.size == 0:
            return stacked[0]
        axis = self.axis % (stacked.ndim - 1)
        rows = jnp.moveaxis(stacked, 0, axis)  # (..., stack, rows, ...)
        shape = rows.shape[:axis] + (rows.shape[axis] * rows.shape[axis + 1],) + rows.shape[axis + 2 :]
        return self.truncate(rows.reshape(shape), num)

    def identity_like(self, x):
        return lax.slice_in_dim(x, 0, 0, axis=self.axis)

    def identity(self, shape, dtype):
        if shape is None:
            return jnp.zeros((0,), jnp.float32)
        shape = list(shape)
        shape.insert(self.axis if self.axis >= 0 else len(shape) + 1 + self.axis, 0)
        return jnp.zeros(tuple(shape), dtype)

    def resolved_shape_dtype(self, parent, state_cls, field_name):
        if self.shape is None:
            return None, jnp.dtype(jnp.float32)
        return super().resolved_shape_dtype(parent, state_cls, field_name)


def _field(kind: FieldKind, default=dataclasses.MISSING, **kwargs) -> Any:
    return dataclasses.field(default=default, metadata={_META: kind}, **kwargs)


def sum_field(*, shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A field merged by addition; identity 0."""
    return _field(SumKind(shape=shape, dtype=dtype))


def exact_sum_field(*, shape: Any = ()) -> Any:
    """A double-float sum (``(*shape, 2)`` float32), exact for integers up to 2^48."""
    return _field(ExactSumKind(shape=shape, dtype=jnp.float32))


def min_field(*, shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A field merged by elementwise minimum; identity +inf (the dtype's max for ints)."""
    return _field(MinKind(shape=shape, dtype=dtype))


def max_field(*, shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A field merged by elementwise maximum; identity -inf (the dtype's min for ints)."""
    return _field(MaxKind(shape=shape, dtype=dtype))


def concat_field(*, item_shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A fixed-capacity buffer of rows of shape ``item_shape`` (owner: a BufferState)."""
    return _field(ConcatKind(shape=item_shape, dtype=dtype))


def nested_field(state_cls: type[State] | None = None) -> Any:
    """A State inside a State; merges by the inner state's rules."""
    return _field(NestedKind(state_cls=state_cls))


def truncate_field(*, num_field: str, axis: int = 0, item_shape: Any = None, dtype: Any = jnp.float32) -> Any:
    """Rows kept up to the first ``num`` across merges; ``num`` read from ``num_field``.

    ``num_field`` is an attribute path from the state, e.g. ``"parent.num_images"`` (a field
    of the metric) or the name of a static field. ``item_shape`` (one row's shape, optional)
    lets ``empty()`` build an identity of the final shape.
    """
    if not isinstance(num_field, str) or not num_field:
        raise TypeError(f"truncate_field needs num_field, an attribute path string; got {num_field!r}")
    return _field(TruncateKind(shape=item_shape, dtype=dtype, num_field=num_field, axis=axis))


def static_field(default: Any = dataclasses.MISSING) -> Any:
    """Configuration kept in the pytree definition (hashable); must be equal to merge."""
    return dataclasses.field(default=default, metadata={_META: "static"})


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


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,))
class State(Frozen):
    """Base of all states: an immutable, mergeable pytree.

    Subclasses are made frozen, keyword-only dataclasses and registered as pytrees
    automatically. They implement :meth:`compute`; :meth:`merge`, :meth:`empty` and
    :meth:`empty_like` follow from the field declarations. A subclass whose fields do not
    merge independently (Chan's moment merge, say) overrides :meth:`merge` and the
    collective hooks in :mod:`metrix.distributed`.
    """

    parent: Any = static_field(default=None)

    _data_fields: ClassVar[tuple[str, ...]] = ()
    _static_fields: ClassVar[tuple[str, ...]] = ("parent",)
    _state_aware_fields: ClassVar[tuple[str, ...]] = ()
    _undeclared_fields_are_static: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__dataclass_fields__" in cls.__dict__:  # already processed (user decorator)
            return
        dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=True)(cls)
        drop_frozen_methods(cls)
        data, static = [], []
        for f in dataclasses.fields(cls):
            kind = f.metadata.get(_META)
            if kind == "static" or (kind is None and f.metadata.get("pytree_node", True) is False):
                static.append(f.name)
            elif isinstance(kind, FieldKind):
                data.append(f.name)
            elif cls._undeclared_fields_are_static:
                static.append(f.name)
            else:
                raise TypeError(
                    f"{cls.__qualname__}.{f.name}: every State field must be declared with a "
                    "metrix field (sum_field, exact_sum_field, min_field, max_field, concat_field, "
                    "truncate_field, nested_field or static_field) so merge knows what to do with it."
                )
        cls._data_fields = tuple(data)
        cls._static_fields = tuple(static)
        cls._state_aware_fields = tuple(n for n in data if isinstance(cls.field_kind(n), TruncateKind))
        _register_pytree(cls, cls._data_fields, cls._static_fields)
        # Already a pytree dataclass: `@flax.struct.dataclass` (Kauldron-style user code) must
        # leave it as it is instead of registering the class a second time.
        cls._flax_dataclass = True

    # -- introspection ------------------------------------------------------------------
    @classmethod
    def field_kind(cls, name: str) -> FieldKind:
        return cls.__dataclass_fields__[name].metadata[_META]

    def replace(self: _Self, **changes) -> _Self:
        return dataclasses.replace(self, **changes)

    # -- the algebra --------------------------------------------------------------------
    def _check_mergeable(self, other: State) -> None:
        if type(other) is not type(self):
            raise MergeError(
                f"cannot merge {type(self).__qualname__} with {type(other).__qualname__}"
            )
        for name in self._static_fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "parent" and (mine is None or theirs is None):
                continue
            if mine != theirs:
                raise MergeError(
                    f"cannot merge {type(self).__qualname__} states whose static field "
                    f"{name!r} differs: {mine!r} vs {theirs!r}"
                )

    def merge(self: _Self, other: _Self) -> _Self:
        """Combine with another state of the same metric (associative; ``empty()`` is its identity)."""
        self._check_mergeable(other)
        merged = {}
        base = self._with_parent(other)
        for name in self._data_fields:
            kind = self.field_kind(name)
            if name in self._state_aware_fields:
                merged[name] = kind.merge_in(base, getattr(self, name), getattr(other, name))
            else:
                merged[name] = kind.merge(getattr(self, name), getattr(other, name))
        return base.replace(**merged)

    def _with_parent(self: _Self, other: State) -> _Self:
        return self if self.parent is not None else self.replace(parent=other.parent)

    def compute(self) -> Any:
        """Turn the accumulated state into values (a jax scalar, array or dict of them)."""
        raise NotImplementedError(f"{type(self).__qualname__}.compute")

    def empty_like(self: _Self) -> _Self:
        """The identity of merge with exactly this state's shapes and dtypes."""
        return self.replace(
            **{n: self.field_kind(n).identity_like(getattr(self, n)) for n in self._data_fields}
        )

    @classmethod
    def empty(cls: type[_Self], parent: Any = None, **static) -> _Self:
        """The identity of merge built from the field declarations (shapes may use ``parent``)."""
        values = {}
        for name in cls._data_fields:
            kind = cls.field_kind(name)
            if isinstance(kind, NestedKind):
                if kind.state_cls is None:
                    raise ValueError(
                        f"{cls.__qualname__}.{name}: nested_field() needs its State class "
                        "for empty(); pass nested_field(TheState)."
                    )
                values[name] = kind.state_cls.empty(parent)
                continue
            shape, dtype = kind.resolved_shape_dtype(parent, cls, name)
            values[name] = cls._identity_for(name, kind, shape, dtype, parent, static)
        return cls(parent=parent, **static, **values)

    @classmethod
    def _identity_for(cls, name, kind, shape, dtype, parent, static):
        return kind.identity(shape, dtype)


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


class AutoState(State):
    """Kauldron's ``AutoState``: a state defined by its fields alone.

    Fields declared with the field functions merge by their kind (``sum_field``,
    ``min_field``, ``max_field``, ``truncate_field``, ``nested_field``, ...); any other field
    (plain annotation, ``static_field``, ``flax.struct.field(pytree_node=False)``) is static
    configuration, checked equal on merge. ``compute()`` returns an :class:`AutoStateOutput`
    of the finalized data fields (truncated fields cut to their ``num``, nested states
    computed). ``@flax.struct.dataclass`` on a subclass is accepted and changes nothing.
    """

    _undeclared_fields_are_static: ClassVar[bool] = True

    def finalize(self):
        """The state with every truncate field cut to its ``num`` rows."""
        return self.replace(
            **{
                n: self.field_kind(n).truncate(getattr(self, n), self.field_kind(n).num_rows(self))
                for n in self._state_aware_fields
            }
        )

    def compute(self) -> AutoStateOutput:
        final = self.finalize()
        out = AutoStateOutput()
        for name in self._data_fields:
            value = getattr(final, name)
            out[name] = value.compute() if isinstance(value, State) else value
        return out


# ---------------------------------------------------------------------------------------
# Fixed-capacity buffers
# ---------------------------------------------------------------------------------------


class BufferState(State):
    """A state with ``concat_field`` rows kept in fixed-capacity buffers.

    All concat fields share the fill count ``count`` (int32, rows stored, <= capacity) and
    ``dropped`` (exact double-float count of rows that did not fit). Buffers always have
    ``capacity`` rows, so states of one metric have one shape: they merge inside ``jit``,
    ``scan`` and ``shard_map`` and stack for ``vmap``/``pmap``. Merging costs O(capacity).

    ``overflow`` (static) says what a full buffer means: ``"error"`` (the default: values
    computed from an overflowed state are refused eagerly, NaN under ``jit``) or
    ``"truncate"`` (keep the first rows, as for image summaries).
    """

    count: jax.Array = sum_field(dtype=jnp.int32)
    dropped: jax.Array = exact_sum_field()
    capacity: int = static_field(default=0)
    overflow: str = static_field(default="error")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._buffer_fields = tuple(
            n for n in cls._data_fields if isinstance(cls.field_kind(n), ConcatKind)
        )

    # -- building from a batch ------------------------------------------------------------
    @classmethod
    def from_rows(
        cls,
        *,
        capacity: int,
        mask=None,
        overflow: str = "error",
        parent: Any = None,
        **rows,
    ):
        """A state holding the rows of one batch (leading axis), masked rows removed.

        Valid rows are packed to the front in order (boolean-indexing semantics); rows past
        ``capacity`` are counted in ``dropped``.
        """
        if overflow not in ("error", "truncate"):
            raise ValueError(f"overflow must be 'error' or 'truncate', got {overflow!r}")
        if set(rows) != set(cls._buffer_fields):
            raise TypeError(
                f"{cls.__qualname__}.from_rows needs exactly the rows {sorted(cls._buffer_fields)}, "
                f"got {sorted(rows)}"
            )
        arrays = {k: jnp.asarray(v) for k, v in rows.items()}
        num_rows = {v.shape[0] if v.ndim else None for v in arrays.values()}
        if None in num_rows or len(num_rows) != 1:
            raise ValueError(
                f"{cls.__qualname__}.from_rows: all rows need the same leading (batch) axis, "
                f"got shapes { {k: v.shape for k, v in arrays.items()} }"
            )
        (n,) = num_rows
        valid = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool).reshape(n)
        # Position of each valid row once the invalid ones are squeezed out.
        position = jnp.cumsum(valid.astype(jnp.int32)) - 1
        target = jnp.where(valid & (position < capacity), position, capacity)  # capacity = drop
        buffers = {}
        for name, value in arrays.items():
            buf = jnp.zeros((capacity, *value.shape[1:]), value.dtype)
            buffers[name] = buf.at[target].set(value, mode="drop")
        num_valid = valid.sum(dtype=jnp.int32)
        stored = jnp.minimum(num_valid, capacity)
        return cls(
            parent=parent,
            capacity=capacity,
            overflow=overflow,
            count=stored,
            dropped=numerics.df_from((num_valid - stored).astype(jnp.float32)),
            **buffers,
        )

    @classmethod
    def empty(cls, parent: Any = None, *, capacity: int | None = None, overflow: str | None = None, **static):
        capacity = capacity if capacity is not None else getattr(parent, "capacity", None)
        if capacity is None:
            raise ValueError(f"{cls.__qualname__}.empty() needs a capacity (from the metric or as an argument)")
        overflow = overflow or getattr(parent, "overflow", None) or "error"
        return super().empty(parent, capacity=int(capacity), overflow=overflow, **static)

    @classmethod
    def _identity_for(cls, name, kind, shape, dtype, parent, static):
        if isinstance(kind, ConcatKind):
            return jnp.zeros((static["capacity"], *shape), dtype)
        return kind.identity(shape, dtype)

    # -- the algebra --------------------------------------------------------------------
    def merge(self, other):
        self._check_mergeable(other)
        capacity = self.capacity
        n_a, n_b = self.count, other.count
        kept_b = jnp.minimum(n_b, capacity - n_a)
        rows = jnp.arange(capacity)
        source = rows - n_a
        from_b = (source >= 0) & (source < kept_b)
        source = jnp.clip(source, 0, capacity - 1)
        merged = {}
        for name in self._buffer_fields:
            a, b = getattr(self, name), getattr(other, name)
            take = jnp.take(b, source, axis=0)
            merged[name] = jnp.where(from_b.reshape((-1,) + (1,) * (a.ndim - 1)), take, a)
        for name in self._data_fields:
            if name in merged or name in ("count", "dropped"):
                continue
            merged[name] = self.field_kind(name).merge(getattr(self, name), getattr(other, name))
        lost = (n_b - kept_b).astype(jnp.float32)
        dropped = numerics.df_add(numerics.df_add(self.dropped, other.dropped), numerics.df_from(lost))
        return self._with_parent(other).replace(count=n_a + kept_b, dropped=dropped, **merged)

    # -- reading ------------------------------------------------------------------------
    @property
    def overflowed(self):
        """True where rows were dropped (a jax bool)."""
        return numerics.df_value(self.dropped) > 0

    def check_capacity(self, value):
        """Refuse values computed from an overflowed buffer: raise eagerly, NaN under jit.

        With ``overflow="truncate"`` the value is returned unchanged.
        """
        if self.overflow == "truncate":
            return value
        if isinstance(self.dropped, jax.core.Tracer):
            return jax.tree.map(
                lambda v: jnp.where(self.overflowed, jnp.nan, v)
                if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)
                else v,
                value,
            )
        dropped = numerics.df_to_python(self.dropped)
        if dropped:
            name = type(self.parent).__name__ if self.parent is not None else type(self).__qualname__
            raise CapacityOverflowError(
                f"{name}: its buffer holds {self.capacity} rows but {self.capacity + dropped} "
                f"arrived ({dropped} dropped); raise `capacity=` on the metric."
            )
        return value

    def rows(self) -> dict[str, Any]:
        """The stored rows as host numpy arrays, trimmed to the fill count (eager only)."""
        n = int(self.count)
        return {name: np.asarray(getattr(self, name))[:n] for name in self._buffer_fields}

    def valid_mask(self):
        """Boolean (capacity,) mask of the filled rows (jit-safe)."""
        return jnp.arange(self.capacity) < self.count


def tree_merge_all(states):
    """Merge a non-empty sequence of states left to right."""
    return functools.reduce(lambda a, b: a.merge(b), states)


__all__ = [
    "State",
    "AutoState",
    "AutoStateOutput",
    "BufferState",
    "MergeError",
    "CapacityOverflowError",
    "FieldKind",
    "sum_field",
    "exact_sum_field",
    "min_field",
    "max_field",
    "concat_field",
    "truncate_field",
    "nested_field",
    "static_field",
]
