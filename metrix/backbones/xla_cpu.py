"""XLA:CPU compiler options for the programs metrix compiles itself (backbones, LPIPS, BERT).

XLA:CPU (jaxlib 0.10) hands f32 convolutions and dots to YNNPACK by default. With an empty
list of YNNPACK fusion kinds (:data:`EIGEN_KERNELS`) every op stays on XLA's own emitters,
whose Eigen kernels measured faster on the LPIPS trunks (13-40%) and the MiniLM encoder
(5-9%) on a 2-core AVX-512 Xeon; figures beside ``lpips_core.LPIPS_CPU_COMPILER_OPTIONS``
and ``backbones.bert``.

JAX accepts ``compiler_options`` on top-level jits only: a jit that carries them raises
inside a caller's ``jit`` or ``grad``. :func:`cpu_jit` therefore keeps two jitted versions of
a function and picks the tuned one only for concrete CPU arrays; under a trace the plain one
inlines into the caller's program (which compiles with the caller's options).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["EIGEN_KERNELS", "cpu_jit", "options_supported"]

EIGEN_KERNELS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def options_supported(options: frozenset) -> bool:
    """Whether this jaxlib's compiler knows the options (their names are experimental)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 - an unknown option is an INVALID_ARGUMENT runtime error
        return False
    return True


def _platform(trees: Any) -> str:
    """The platform the inputs live on (the default backend for numpy inputs)."""
    for leaf in jax.tree_util.tree_leaves(trees):
        if isinstance(leaf, jax.Array):
            return next(iter(leaf.devices())).platform
    return jax.default_backend()


def _is_traced(trees: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


def cpu_jit(fn, options: Mapping[str, Any], **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)`` that compiles with the XLA ``options`` when called on
    concrete CPU arrays, and as a plain (inlinable) jit under a trace, on other platforms,
    or where this jaxlib does not know the options. ``.plain`` and ``.tuned`` are the two
    jitted functions."""
    plain = jax.jit(fn, **jit_kwargs)
    tuned = jax.jit(fn, compiler_options=dict(options), **jit_kwargs) if options else plain
    key = frozenset(options.items())

    @functools.wraps(fn)
    def call(*args, **kwargs):
        arrays = (args, kwargs)
        use_tuned = (
            tuned is not plain
            and not _is_traced(arrays)
            and _platform(arrays) == "cpu"
            and options_supported(key)
        )
        return (tuned if use_tuned else plain)(*args, **kwargs)

    call.plain, call.tuned = plain, tuned
    return call
