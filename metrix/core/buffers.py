"""Fixed-capacity buffers: rows of many batches kept in one jit-mergeable array."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metrix.core import numerics
from metrix.core.fields import ConcatKind, dropped_field, fill_count_field, static_field
from metrix.core.refuse import metric_name, refuse
from metrix.core.state import State


class CapacityOverflowError(RuntimeError):
    """A fixed-capacity buffer received more rows than it can hold."""


# -- sizing one-shot buffers from their input -------------------------------------------------

_ROWS_SEEN: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "metrix_buffer_rows_seen", default=None
)


@contextlib.contextmanager
def recording_rows():
    """Record ``(capacity, rows, overflow)`` of every :meth:`BufferState.from_rows` inside.

    A one-shot call (``metric(**inputs)``, see :mod:`metrix.core.metric`) traces its
    ``get_state`` abstractly in this context to learn how many rows its buffers receive, and
    then runs a copy of the metric whose ``capacity`` holds exactly those rows: the configured
    capacity matters only when states are merged. Rows are static shapes, known at trace time.
    """
    seen: list = []
    token = _ROWS_SEEN.set(seen)
    try:
        yield seen
    finally:
        _ROWS_SEEN.reset(token)



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

    # compute() stays op by op (host-side: numpy on the trimmed rows, variable-length
    # results); one-shot calls still compile get_state and compute together.
    compile_eager_compute = False

    count: jax.Array = fill_count_field()
    dropped: jax.Array = dropped_field()
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
        seen = _ROWS_SEEN.get()
        if seen is not None:
            seen.append((capacity, n, overflow))
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
        return refuse(self.overflowed, value, lambda _: self._overflow_message(), error=CapacityOverflowError)

    def _overflow_message(self) -> str:
        dropped = numerics.df_to_python(self.dropped)
        return (
            f"{metric_name(self)}: its buffer holds {self.capacity} rows but {self.capacity + dropped} "
            f"arrived ({dropped} dropped); raise `capacity=` on the metric."
        )

    def rows(self) -> dict[str, Any]:
        """The stored rows as host numpy arrays, trimmed to the fill count (eager only)."""
        n = int(self.count)
        return {name: np.asarray(getattr(self, name))[:n] for name in self._buffer_fields}

    def valid_mask(self):
        """Boolean (capacity,) mask of the filled rows (jit-safe)."""
        return jnp.arange(self.capacity) < self.count


__all__ = [
    "BufferState",
    "CapacityOverflowError",
    "recording_rows",
]
