"""The Metric base: a frozen, keyword-only dataclass of configuration and keys.

A metric declares its configuration and :data:`~metrix.core.keys.Key` fields, a nested ``State``
and a jit-safe ``get_state(**inputs)``::

    class Accuracy(mx.Metric):
        logits: mx.Key = mx.REQUIRED
        labels: mx.Key = mx.REQUIRED

        State = mx.AverageState  # the metric gets its own subclass, Accuracy.State

        def get_state(self, logits: Float[Array, "*b n"], labels: Int[Array, "*b"]):
            return self.State.from_values(jnp.argmax(logits, -1) == labels)

Subclasses become frozen keyword-only dataclasses without a decorator. ``get_state`` is
wrapped so that positional arguments bind like keyword ones, numpy inputs become jax
arrays, annotated inputs are type-checked (see :mod:`metrix.core.typecheck`), and the returned
state records its ``parent`` metric.

**One error boundary.** Errors raised while a metric is built (``__post_init__``) or reads
its inputs (``get_state`` / ``get_values``, everything they call) get the metric's name as a
prefix, once: ``F1Score: labels must be integers or booleans, got float32``. The pure
functions a metric calls therefore raise without a name (:class:`named_errors` is the
boundary; a message that already starts with the name keeps it once). Only exceptions whose
message is their single string argument are renamed (``ValueError``, ``TypeError``, ``KeyError``,
``IndexError`` and their subclasses, and metrix's own errors such as
``CapacityOverflowError``); the type, traceback and ``raise ... from`` chain stay those of
the original. Compute-time refusals take the name from ``state.parent``
(:func:`metrix.core.refuse.metric_name`).

**One eager-compile switch.** ``eager_compile = True`` on a metric class runs its
``get_state`` as one cached compiled program per configuration (the frozen, hashable metric
is a static argument, so equal configurations share it) and input shapes when the inputs
are concrete, and inline when they are traced (your ``jit``, ``vmap``, ``grad``). Input
checks that need concrete values stay eager: :func:`metrix.core.refuse.refuse` calls inside
the program are raised right after it. :meth:`Metric.run_compiled` does the same for one
inner step of a ``get_state``.

**One-shot calls.** ``metric(**inputs)`` runs ``get_state(...).compute()`` as one compiled
program, cached per (metric configuration, input tree structure, shapes, dtypes and weak
types, whether type checking is on) in an LRU of :data:`ONE_SHOT_CACHE_SIZE` entries; a hit
costs one jitted dispatch plus one host read of a flag (none of the per-call Python work of
binding, key aliases and type checks; int64 / uint64 / float64 host inputs are still checked
for values JAX would wrap, other dtypes skip that check): ~10 us over the dispatch itself on
CPU (``benchmarks/oneshot.py``). The first call with a new key runs the ordinary eager
path (its type checks, refusals and warnings as ever; its value is returned), then traces
the program and keeps it when its output has the eager output's structure and leaf types
and equal values; otherwise (a host-side compute: numpy, exact curves, strings, code that
reads concrete values) that key keeps the eager path. Inputs of :data:`ONE_SHOT_TIMED_SIZE`
elements or more time one run of each path and keep the faster (a host numpy sort of 10^5
exact-AUC scores beats XLA's on CPU). The program returns one flag: a
:func:`~metrix.core.refuse.refuse` that fired or a NaN in the value; then the eager path runs
again, so refusals raise (and warnings warn) exactly as eagerly. Buffer-backed metrics run a
copy whose ``capacity`` holds exactly the input's rows (``BufferState.from_rows`` reports
them while ``get_state`` is traced abstractly; ``overflow="truncate"`` buffers keep theirs).
Inputs that are not arrays (strings, objects), tracers (a call inside your ``jit``), pytrees
of more than :data:`ONE_SHOT_MAX_LEAVES` arrays (network weights: those metrics compile
their networks apart) and unhashable configurations take the eager path. ``jax.clear_caches()``
empties the compiled programs; the entries then retrace on their next call.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
import warnings
from collections import OrderedDict
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import dataclass_transform

from metrix.core import annotations as annotation_lib
from metrix.core import buffers as buffers_lib
from metrix.core import inputs as inputs_lib
from metrix.core import keys as keys_lib
from metrix.core import refuse as refuse_lib
from metrix.core import typecheck
from metrix.core.state import (
    Frozen,
    State,
    drop_frozen_methods,
    eager_with_warnings,
    flagged_program,
    same_value,
)

_INPUT_METHODS = ("get_state", "get_values")


def _as_jax(value):
    if isinstance(value, (np.ndarray, np.generic, bool, int, float)):
        return jnp.asarray(value)
    return value


# -- the error boundary ----------------------------------------------------------------------

# Exceptions whose message is their one string argument: safe to give a prefix.
_RENAMED_TYPES = (ValueError, TypeError, KeyError, IndexError)


def _message_is_args(cls) -> bool:
    """Whether ``str()`` of ``cls`` instances shows ``args[0]`` (builtin or metrix ``__str__``)."""
    for klass in cls.__mro__:
        if "__str__" in klass.__dict__:
            return klass.__module__ == "builtins" or klass.__module__.startswith("metrix")
    return False  # pragma: no cover - object defines __str__


def _names(message: str, name: str) -> bool:
    """Whether ``message`` already starts with ``name`` (``"F1Score: ..."``, ``"F1Score.x"``)."""
    if not message.startswith(name):
        return False
    rest = message[len(name) : len(name) + 1]
    return not (rest.isalnum() or rest == "_")


def add_name(err: BaseException, name: str) -> BaseException:
    """Prefix ``err``'s message with ``name`` in place, once, where that is safe; returns it.

    Safe: ``ValueError`` / ``TypeError`` / ``KeyError`` / ``IndexError`` (and subclasses) or
    an error class defined in metrix, not one of JAX's own, with a single string argument
    that ``str()`` shows. A message that already starts with ``name`` is left alone.
    """
    cls = type(err)
    module = cls.__module__
    if module.split(".")[0] in ("jax", "jaxlib"):
        return err
    if not (isinstance(err, _RENAMED_TYPES) or module.startswith("metrix")):
        return err
    if len(err.args) != 1 or not isinstance(err.args[0], str) or not _message_is_args(cls):
        return err
    if not _names(err.args[0], name):
        err.args = (f"{name}: {err.args[0]}",)
    return err


class named_errors:  # lower case: used like a function, ``with named_errors(name):``
    """Context manager: errors raised inside start with ``name`` (see :func:`add_name`).

    The exception itself propagates (its message renamed in place), so its type, traceback
    and cause are untouched. ``Metric`` wraps construction and input methods in it; other
    configuration objects (e.g. miners) may use it the same way.
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, cls, err, tb):
        if err is not None:
            add_name(err, self.name)
        return False


def _named_post_init(fn):
    @functools.wraps(fn)
    def __post_init__(self, *args, **kwargs):
        with named_errors(type(self).__name__):
            fn(self, *args, **kwargs)

    __post_init__._metrix_wrapped = True
    return __post_init__


# -- the eager-compile switch -----------------------------------------------------------------

_ARRAY_LEAVES = (jax.Array, np.ndarray, np.generic, bool, int, float, complex)


def _compilable(metric, args, kwargs) -> bool:
    """Concrete array inputs and a hashable metric: one compiled program can run them."""
    for leaf in jax.tree.leaves((args, kwargs)):
        if isinstance(leaf, jax.core.Tracer) or not isinstance(leaf, _ARRAY_LEAVES):
            return False
    try:
        hash(metric)
    except TypeError:  # a configuration holding arrays or lists: run it op by op
        return False
    return True


@functools.cache
def _program(fn):
    """``fn(metric, *args, **kwargs)`` jitted with the metric static, its refusals collected."""

    def program(metric, args, kwargs):
        with refuse_lib.deferred_refusals() as pending:
            out = fn(metric, *args, **kwargs)
        refusals = refuse_lib.collected(pending)
        # One flag for all of them: one host read per call, the counts only when it is set.
        fired = [jnp.any(count > 0) for count in refusals.counts]
        return out, refusals, jnp.any(jnp.stack(fired)) if fired else None

    return jax.jit(program, static_argnums=0)


# -- input methods ----------------------------------------------------------------------------


def _wrap_input_method(cls, method_name: str, fn):
    signature = inspect.signature(fn)
    is_get_state = method_name == "get_state"

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with named_errors(type(self).__name__):
            kwargs = _rename_aliases(type(self), method_name, kwargs)
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError as err:
                params = [p for p in signature.parameters if p != "self"]
                raise TypeError(
                    f"{type(self).__name__}.{method_name}(): {err}; its inputs are {params}"
                ) from None
            arguments = {
                k: _as_jax(inputs_lib.check_representable(v, k))
                for k, v in bound.arguments.items()
                if k != "self"
            }
            typecheck.check_inputs(f"{type(self).__name__}.{method_name}", fn, arguments)
            var_kw = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]
            extra = arguments.pop(var_kw[0], {}) if var_kw else {}
            if is_get_state and self.eager_compile:
                result = self.run_compiled(fn, **arguments, **extra)
                # A cached program returns the state of the (equal) metric it was traced with.
                traced_with = getattr(result, "parent", self) if isinstance(result, State) else self
                if traced_with is not self and traced_with == self:
                    result = result.replace(parent=self)
            else:
                result = fn(self, **arguments, **extra)
            if isinstance(result, State) and result.parent is None:
                result = result.replace(parent=self)
            return result

    wrapper._metrix_wrapped = True
    return wrapper


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,))
class Metric(Frozen):
    """Base of every metric, loss and summary (see the module docstring)."""

    State: ClassVar[type[State]] = State  # subclasses name theirs (see _derive_state)
    # Other names accepted for an input (alias key field -> get_state argument), e.g.
    # Kauldron's ``targets`` for ``labels``. An alias is an optional ``Key`` field; setting it
    # together with the key it stands for is an error.
    key_aliases: ClassVar[dict[str, str]] = {}
    # Run get_state as one cached compiled program per configuration and input shapes when
    # its inputs are concrete (inline when traced); see the module docstring.
    eager_compile: ClassVar[bool] = False
    # Groups of optional keys of which at least one must be set (an update can feed either
    # side of FID, say); for ``metrix list`` and the docs: get_state checks what it receives.
    required_one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _INPUT_METHODS:
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_metrix_wrapped", False):
                setattr(cls, name, _wrap_input_method(cls, name, fn))
        post_init = cls.__dict__.get("__post_init__")
        if post_init is not None and not getattr(post_init, "_metrix_wrapped", False):
            cls.__post_init__ = _named_post_init(post_init)
        if "__dataclass_fields__" not in cls.__dict__:
            dataclasses.dataclass(frozen=True, kw_only=True, eq=True)(cls)
            drop_frozen_methods(cls)
        _derive_state(cls)
        cls._check_keys_match_signature()
        # Annotations fail closed: an input annotation that cannot be resolved raises now.
        for name in _INPUT_METHODS:
            fn = getattr(cls, name, None)
            if fn is not None and getattr(fn, "_metrix_wrapped", False):
                typecheck.checked_annotations(inspect.unwrap(fn), f"{cls.__qualname__}.{name}")

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
        """Refuse keys that are set by default (or required) but that get_state never reads.

        An optional key that defaults to ``None`` may stay unread (Kauldron's ``mask: Key =
        None`` on a metric without masks): it is refused only once set, when the metric is
        built or reads a context (:meth:`_check_set_keys_are_read`).
        """
        unread = _unread_keys(cls)
        fields = getattr(cls, "__dataclass_fields__", {})
        always_set = [k for k in unread if k not in fields or fields[k].default is not None]
        if always_set:
            params = list(cls.input_parameters())
            raise TypeError(
                f"{cls.__qualname__}: key field(s) {always_set} are not inputs of get_state "
                f"(its inputs are {params}); keys must be named like get_state's arguments "
                "(an optional key get_state does not read must default to None)."
            )

    def _check_set_keys_are_read(self) -> None:
        """A key set on this metric that its get_state does not read: an error naming it."""
        for key in _unread_keys(type(self)):
            path = getattr(self, key, None)
            if path is not None:
                params = list(self.input_parameters())
                raise TypeError(
                    f"{type(self).__name__}.{key} is set to {path!r}, but "
                    f"{type(self).__name__}.get_state does not read `{key}` (its inputs are "
                    f"{params}): the input would be ignored; leave {key}=None."
                )

    def __post_init__(self):
        # Subclasses with their own __post_init__ are checked when they read a context.
        self._check_set_keys_are_read()

    def resolve_inputs(self, context: Any) -> dict[str, Any]:
        """Look every set key up in ``context``; errors name the metric, key and close paths."""
        name = type(self).__name__
        self._check_set_keys_are_read()
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

    def run_compiled(self, fn, /, *args, **kwargs):
        """``fn(self, *args, **kwargs)`` as one cached compiled program, or inline when traced.

        When every leaf of ``args`` / ``kwargs`` is a concrete array (or ``None``) and the
        metric is hashable, ``fn`` runs jitted with the metric as a static argument: one
        program per ``fn``, configuration and input shapes, shared by equal metrics. Its
        :func:`~metrix.core.refuse.refuse` calls are raised after the call, eagerly. Under a
        trace, or for an unhashable configuration, ``fn`` simply runs. ``fn`` must be a
        module-level function or a method (it keys the cache), taking the metric first and
        reading its configuration from it::

            return self.run_compiled(_state_of_distances, distances, mask)

        ``eager_compile = True`` applies this to the whole ``get_state``.
        """
        if not _compilable(self, args, kwargs):
            return fn(self, *args, **kwargs)
        out, refusals, fired = _program(fn)(self, args, kwargs)
        if fired is not None and fired.block_until_ready().item():
            refusals.raise_any()
        return out

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
        """One-shot value: ``get_state(*args, **kwargs).compute()``, as one compiled program.

        Cached per (configuration, input structure, shapes and dtypes): a repeated call costs
        one jitted dispatch (see "One-shot calls" in the module docstring). Buffers hold
        exactly the input's rows, so the configured ``capacity`` never overflows here.
        ``metric(context=ctx)`` (Kauldron's form) reads the inputs through the keys:
        ``get_state_from_context(ctx).compute()``.
        """
        if "context" in kwargs and "context" not in self.input_parameters():
            if args or len(kwargs) > 1:
                raise TypeError(
                    f"{type(self).__name__}(): pass either context= or the inputs, not both "
                    f"(got context and {sorted(k for k in kwargs if k != 'context')}, "
                    f"{len(args)} positional)"
                )
            return self.get_state_from_context(kwargs["context"]).compute()
        return _one_shot(self, args, kwargs)


# -- one-shot calls (see the module docstring) ------------------------------------------------

ONE_SHOT_CACHE_SIZE = 128  # entries of (configuration, input signature) kept, least recent out
ONE_SHOT_MAX_LEAVES = 16  # more input arrays than this (network weights): the eager path
ONE_SHOT_TIMED_SIZE = 1 << 15  # inputs this large: the first call times both paths
_one_shot_cache: OrderedDict = OrderedDict()


def _eager_call(metric, args, kwargs):
    return metric.get_state(*args, **kwargs).compute()


def _plain_signature(values):
    """``((shape, dtype, weak_type), ...)`` when every value is a concrete numpy or jax array,
    else ``None``. (The per-call hot path: one loop, numpy checked by exact type first. Types
    are checked, no array is made: making one at import time would start JAX's backend before
    a program can set XLA_FLAGS, as the CLI's simulated devices do.)"""
    sig = []
    for v in values:
        if type(v) is np.ndarray:
            sig.append((v.shape, v.dtype, False))
        elif isinstance(v, jax.Array) and not isinstance(v, jax.core.Tracer):
            sig.append((v.shape, v.dtype, v.weak_type))
        else:
            return None
    return tuple(sig)


def _signature(metric, args, kwargs):
    """``(cache key, flat input leaves, layout)`` of a call, or ``None`` (the eager path).

    ``layout`` rebuilds ``(args, kwargs)`` from the leaves: ``(len(args), kwarg names)`` when
    every input is a plain array (the common case, no pytree flattening), else a treedef.
    """
    values = (*args, *kwargs.values()) if args else tuple(kwargs.values())
    sig = _plain_signature(values) if len(values) <= ONE_SHOT_MAX_LEAVES else None
    if sig is not None:
        layout = (len(args), tuple(kwargs))
        leaves = values
    else:
        leaves, layout = jax.tree.flatten((args, kwargs))
        if len(leaves) > ONE_SHOT_MAX_LEAVES:
            return None
        sig = []
        for leaf in leaves:
            if isinstance(leaf, jax.core.Tracer):
                return None
            if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
                sig.append((leaf.shape, leaf.dtype, getattr(leaf, "weak_type", False)))
            elif isinstance(leaf, (bool, int, float)):
                sig.append(type(leaf))  # a Python scalar: weakly typed, as jit has it
            else:
                return None  # strings, lists of strings, objects: host-side inputs
        sig = tuple(sig)
    # (hashed once, by the cache lookup: a configuration holding arrays or lists raises there)
    return (metric, layout, sig, typecheck.typechecking_enabled()), leaves, layout


def _rebuild(layout, leaves):
    if type(layout) is tuple:
        n, names = layout
        return leaves[:n], dict(zip(names, leaves[n:]))
    return jax.tree.unflatten(layout, leaves)


def _sized(metric, args, kwargs):
    """``metric``, or a copy whose ``capacity`` holds exactly the rows its buffers receive."""
    capacity = getattr(metric, "capacity", None)
    if type(capacity) is not int or "capacity" not in metric.__dataclass_fields__:
        return metric
    try:
        with buffers_lib.recording_rows() as seen, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jax.eval_shape(lambda a, k: metric.get_state(*a, **k), args, kwargs)
    except Exception:  # noqa: BLE001 - the eager path will raise what is wrong, if anything
        return metric
    rows = [n for cap, n, overflow in seen if cap == capacity and overflow == "error"]
    if not rows or max(rows) == capacity:
        return metric
    try:
        return dataclasses.replace(metric, capacity=max(1, max(rows)))
    except Exception:  # noqa: BLE001 - a configuration that refuses the size: keep it
        return metric


def _compile_one_shot(metric, layout):
    """The jitted ``(flat inputs) -> (value, flag)`` of one cache entry (see state.py)."""

    def one_shot(*leaves):
        args, kwargs = _rebuild(layout, leaves)
        return _eager_call(metric, args, kwargs)

    return jax.jit(flagged_program(one_shot))


def _faster(program, leaves, metric, args, kwargs):
    """``program``, or ``None`` when one run of the eager path is faster (large inputs whose
    eager compute is host numpy, e.g. one sort of 10^5 exact-AUC scores against XLA's)."""

    def best_of_two(fn):  # a shared machine's bursts: the faster of two runs
        times = []
        for _ in range(2):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
        return min(times)

    compiled = best_of_two(lambda: program(*leaves))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first call passed them on already
        eager = best_of_two(lambda: _eager_call(metric, args, kwargs))
    return None if eager < compiled else program


def _one_shot(metric, args, kwargs):
    found = _signature(metric, args, kwargs)
    if found is None:
        return _eager_call(metric, args, kwargs)
    key, leaves, layout = found
    cache = _one_shot_cache
    try:
        entry = cache.get(key)
    except TypeError:  # an unhashable configuration (arrays or lists in a field)
        return _eager_call(metric, args, kwargs)
    if entry is not None:
        cache.move_to_end(key)
        sized, program, wide = entry
        if program is None:
            return _eager_call(sized, args, kwargs)
        if wide:  # int64 / float64 host values JAX would wrap: the eager path names the argument
            try:
                for leaf in leaves:
                    inputs_lib.check_representable(leaf)
            except ValueError:
                return _eager_call(sized, args, kwargs)
        out, flagged = program(*leaves)
        # np.asarray waits for the flag and reads it in one step (cheaper than block + .item())
        if np.asarray(flagged):  # a refusal or a NaN: the eager path raises or warns
            return _eager_call(sized, args, kwargs)
        return out
    # First call with this key: the eager path answers (type checks, refusals, warnings).
    sized = _sized(metric, args, kwargs)
    value, warned = eager_with_warnings(_eager_call, sized, args, kwargs)
    program = None
    if not warned:  # a key whose eager path warns stays eager (and warns every time)
        try:
            compiled = _compile_one_shot(sized, layout)
            if same_value(value, compiled(*leaves)[0]):
                program = compiled
        except Exception:  # noqa: BLE001, S110 - not traceable (host-side maths): eager path
            pass
        if program is not None and sum(np.size(x) for x in leaves) >= ONE_SHOT_TIMED_SIZE:
            program = _faster(program, leaves, sized, args, kwargs)
    # host dtypes JAX would narrow (inputs.CHECKED_DTYPES): other keys skip the check per call
    wide = any(getattr(leaf, "dtype", None) in inputs_lib.CHECKED_DTYPES for leaf in leaves)
    cache[key] = (sized, program, wide)
    if len(cache) > ONE_SHOT_CACHE_SIZE:
        cache.popitem(last=False)
    return value


def clear_one_shot_cache() -> None:
    """Forget every one-shot program (``jax.clear_caches()`` alone keeps the entries, which
    then retrace on their next call)."""
    _one_shot_cache.clear()


def _derive_state(cls) -> None:
    """Give ``cls`` its own ``State`` class, ``cls.State``, when it declares nothing new.

    A metric names the state it uses (``State = AverageState``) or inherits its parent's; the
    class it gets is a subclass named ``<Metric>.State`` (a readable name in reprs, errors and
    treedefs, and a type no other metric's states have). A ``class State(...)`` written in the
    metric's body is kept as it is.
    """
    state = cls.__dict__.get("State", cls.State)
    if not (isinstance(state, type) and issubclass(state, State)) or state is State:
        return
    qualname = f"{cls.__qualname__}.State"
    if state.__qualname__ == qualname and state.__module__ == cls.__module__:
        return  # declared in the body
    derived = type("State", (state,), {"__module__": cls.__module__, "__qualname__": qualname, "__doc__": state.__doc__})
    cls.State = derived


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


@functools.cache
def _unread_keys(cls) -> tuple[str, ...]:
    """Key fields of ``cls`` that are not inputs of its get_state (none with ``**kwargs``)."""
    params = cls.input_parameters()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return ()
    return tuple(k for k in cls.key_fields() if cls.key_aliases.get(k, k) not in params)


@functools.cache
def _key_fields(cls) -> tuple[str, ...]:
    # An unresolvable field annotation is read as text here (keys are recognised either way);
    # config validation reads the same hints strictly.
    hints = annotation_lib.field_hints(cls, strict=False)
    return tuple(name for name, hint in hints.items() if keys_lib.is_key_annotation(hint))
