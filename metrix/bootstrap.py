"""Bootstrap confidence intervals for any metric, as a state that merges like any other.

The Poisson bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012) gives each example ``i``
an integer weight ``w_ri ~ Poisson(1)`` in each resample ``r``: the resample holds ``w_ri``
copies of the example. Unlike drawing ``N`` rows with replacement, the weights of one example
do not depend on the others, so batches, devices and hosts draw them independently and the
resample states merge exactly: the bootstrap of the whole data set is the merge of the
bootstraps of its parts.

Weights are a function of ``(seed, example)``, never of the batch: with ``ids`` (a key to
per-example integer ids) the example is its id; without, it is a 32-bit hash of the example's
inputs (every input's row, bit for bit), so no key needs to be passed and any split of the data
gives the same result. Exact duplicate rows then share their weights (pass ``ids`` when the data
holds duplicates and that matters).

A resample's state is ``merge_k metric.get_state(inputs, mask = mask & (w_r >= k))`` for
``k = 1 .. max_weight``: ``k`` copies of an example are ``k`` masked passes, exact for every
metric whose value depends on the multiset of its examples. Weights are Poisson(1) truncated at
``max_weight`` (default 8: ``P(w > 8) = 1.0e-6``); the cost is ``max_weight`` vmapped
``get_state`` calls over ``num_resamples`` per batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metrix.core import refuse as refuse_lib
from metrix.core.fields import nested_field
from metrix.core.keys import Key, resolve
from metrix.core.metric import Metric
from metrix.core.state import State

__all__ = ["Bootstrap", "BootstrapState", "example_hashes"]


def _row_words(x: jax.Array, n: int) -> jax.Array:
    """``(n, m)`` uint32 words holding each row's bits."""
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_ or jnp.dtype(x.dtype).itemsize < 4:
        x = x.astype(jnp.float32 if jnp.issubdtype(x.dtype, jnp.floating) else jnp.int32)
    # reshape(n, -1) cannot infer -1 for n = 0 rows (an empty batch): spell the width out.
    x = x.reshape(n, int(np.prod(x.shape[1:], dtype=np.int64)))
    if jnp.dtype(x.dtype).itemsize == 8:  # 64-bit inputs (x64 on): two words per element
        return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(n, 2 * x.shape[1])
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


def _mix(h: jax.Array) -> jax.Array:
    """murmur3's 32-bit finaliser: every input bit flips about half the output bits."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def example_hashes(inputs: dict[str, Any], n: int) -> jax.Array:
    """A uint32 hash per example (row of every array input), independent of the batch it is in."""
    h = jnp.zeros((n,), jnp.uint32)
    for name in sorted(inputs):
        words = _row_words(inputs[name], n)
        position = jnp.arange(words.shape[1], dtype=jnp.uint32) * jnp.uint32(0x9E3779B9)
        h = _mix(h ^ jnp.sum(_mix(words ^ position), axis=1, dtype=jnp.uint32))
    return h


class BootstrapState(State):
    """The wrapped metric's state on all data (``whole``) and ``num_resamples`` resample
    states stacked on a leading axis (``resamples``), merged resample by resample."""

    whole: State = nested_field()
    resamples: State = nested_field()

    def merge(self, other: BootstrapState) -> BootstrapState:
        self._check_mergeable(other)
        base = self._with_parent(other)
        return base.replace(
            whole=self.whole.merge(other.whole),
            resamples=jax.vmap(lambda a, b: a.merge(b))(self.resamples, other.resamples),
        )

    def resample_values(self) -> Any:
        """The wrapped metric's value on each resample: its outputs with a leading resample axis.

        One vmapped ``compute``; a metric whose compute runs on the host (exact AUC, say) is
        computed resample by resample instead (eager only).
        """
        try:
            return jax.vmap(lambda s: s.compute())(self.resamples)
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
            count = jax.tree.leaves(self.resamples)[0].shape[0]
            values = [jax.tree.map(lambda x, r=r: x[r], self.resamples).compute() for r in range(count)]
            return jax.tree.map(lambda *v: jnp.stack([jnp.asarray(x) for x in v]), *values)

    def compute(self) -> dict[str, Any]:
        confidence = self.parent.confidence
        value = self.whole.compute()
        samples = self.resample_values()
        tail = (1.0 - confidence) / 2

        def stat(fn):
            return jax.tree.map(lambda s: fn(jnp.asarray(s, jnp.float32)), samples)

        return {
            "value": value,
            "mean": stat(lambda s: jnp.nanmean(s, axis=0)),
            "std": stat(lambda s: jnp.nanstd(s, axis=0, ddof=1)),
            "lower": stat(lambda s: jnp.nanquantile(s, tail, axis=0)),
            "upper": stat(lambda s: jnp.nanquantile(s, 1.0 - tail, axis=0)),
        }


class Bootstrap(Metric):
    """Bootstrap confidence interval of any mergeable metric (Poisson bootstrap, jit-safe).

    ``mx.Bootstrap(mx.Accuracy(logits="preds", labels="labels"), num_resamples=1000)`` is
    called with the wrapped metric's own inputs (and reads them from a context through its
    keys). ``compute()`` gives ``{"value", "mean", "std", "lower", "upper"}``: ``value`` is the
    metric on all data, ``mean`` / ``std`` (ddof 1) those of the resample values, and
    ``[lower, upper]`` the percentile interval holding ``confidence`` of them (linear
    interpolation, as ``numpy.quantile``); for a metric with several outputs each entry has its
    structure. Resamples whose value is NaN (no example of a class, say) are left out of the
    statistics.

    Every input's leading axis must be the example axis. The wrapped metric needs a ``mask``
    input (its own mask, if set, is combined with the resampling). ``ids`` (optional key to
    ``(N,)`` integer ids) makes each example's weights a function of ``(seed, id)``; without
    it, of ``(seed, hash of the example's inputs)`` (see the module docstring). The state is
    ``num_resamples`` copies of the wrapped state; it merges, allreduces and checkpoints like
    any other.
    """

    metric: Metric = dataclasses.field(kw_only=False)  # positional: Bootstrap(metric, ...)
    num_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    max_weight: int = 8
    ids: Key | None = None

    eager_compile = True
    State = BootstrapState

    def __post_init__(self):
        if not isinstance(self.metric, Metric):
            raise TypeError(f"Bootstrap: metric must be a metrix metric, got {self.metric!r}")
        if "mask" not in self.metric.input_parameters():
            raise ValueError(
                f"Bootstrap: {type(self.metric).__name__} has no mask input, so it cannot be "
                "resampled; wrap a metric whose get_state takes mask="
            )
        if self.num_resamples < 2:
            raise ValueError(f"Bootstrap: num_resamples must be >= 2, got {self.num_resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"Bootstrap: confidence must be in (0, 1), got {self.confidence}")
        if self.max_weight < 1:
            raise ValueError(f"Bootstrap: max_weight must be >= 1, got {self.max_weight}")

    def get_state_from_context(self, context: Any) -> BootstrapState:
        inputs = self.metric.resolve_inputs(context)
        if self.ids is not None:
            inputs["ids"] = resolve(context, self.ids, owner="Bootstrap", key_name="ids")
        return self.get_state(**inputs)

    def weights(self, ids=None, **inputs) -> jax.Array:
        """``(num_resamples, N)`` int32 resampling weights of these examples (jit-safe)."""
        arrays = {k: v for k, v in inputs.items() if v is not None and k != "mask"}
        if not arrays and ids is None:
            raise ValueError("Bootstrap: no array inputs to resample")
        n = (jnp.shape(ids) if ids is not None else jnp.shape(next(iter(arrays.values()))))[0]
        seeds = (
            jnp.asarray(ids).astype(jnp.uint32) if ids is not None else example_hashes(arrays, n)
        )
        base = jax.random.key(self.seed)
        keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(seeds)
        draws = jax.vmap(lambda k: jax.random.poisson(k, 1.0, (self.num_resamples,)))(keys)
        return jnp.minimum(draws, self.max_weight).astype(jnp.int32).T

    def get_state(self, ids=None, mask=None, **inputs) -> BootstrapState:
        inner = self.metric
        whole = inner.get_state(**inputs, mask=mask)
        w = self.weights(ids=ids, **inputs)  # (R, N)
        n = w.shape[1]
        keep = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool)

        def combined(row_mask):
            extra = keep.ndim - 1
            return keep & row_mask.reshape(row_mask.shape + (1,) * extra)

        def resample(weights_r):
            # Refusals raised inside the vmap (a buffer that overflows, say) leave it as counts
            # and are raised again below, outside it.
            with refuse_lib.deferred_refusals() as pending:
                states = [
                    inner.get_state(**inputs, mask=combined(weights_r >= k))
                    for k in range(1, self.max_weight + 1)
                ]
                state = functools.reduce(lambda a, b: a.merge(b), states)
            return state, refuse_lib.collected(pending)

        resamples, refusals = jax.vmap(resample)(w)
        for count, (message, error) in zip(refusals.counts, refusals.details):
            refuse_lib.refuse(jnp.sum(count), None, message, error)
        return self.State(whole=whole, resamples=resamples, parent=self)

    def empty(self) -> BootstrapState:
        one = self.metric.empty()
        stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_resamples, *np.shape(x))), one)
        return self.State(whole=one, resamples=stacked, parent=self)
