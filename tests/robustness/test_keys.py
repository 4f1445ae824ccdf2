"""Out-of-bounds indices in key paths raise for every array type (JAX arrays clamp)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx

X = np.arange(24.0, dtype=np.float32).reshape(8, 3)
ARRAYS = {"numpy": X, "jax": jnp.asarray(X)}
BAD = ["x[..., 10]", "x[10]", "x[-9]", "x[:, 3]", "x[None, 8]", "x[0, 0, 0]", "x[..., -4]"]
GOOD = {"x[..., -1]": X[..., -1], "x[7]": X[7], "x[None, 0]": X[None, 0], "x[2:20]": X[2:20],
        "x[..., 0]": X[..., 0], "x[-8, 1:]": X[-8, 1:]}


@pytest.mark.parametrize("kind", ARRAYS)
@pytest.mark.parametrize("path", BAD)
def test_out_of_bounds_paths_raise(kind, path):
    metric = mx.Average(values=path)
    with pytest.raises(mx.ContextKeyError, match=r"^Average\.values: path .*(out of bounds|too many)"):
        metric.get_state_from_context({"x": ARRAYS[kind]})


@pytest.mark.parametrize("path", BAD)
def test_out_of_bounds_paths_raise_under_jit(path):
    metric = mx.Average(values=path)
    with pytest.raises(mx.ContextKeyError):
        jax.jit(metric.get_state_from_context)({"x": jnp.asarray(X)})


@pytest.mark.parametrize("kind", ARRAYS)
@pytest.mark.parametrize("path", GOOD)
def test_in_bounds_paths_read_what_numpy_reads(kind, path):
    value = mx.Average(values=path).get_state_from_context({"x": ARRAYS[kind]}).compute()
    np.testing.assert_allclose(float(value), GOOD[path].mean(), rtol=1e-6)
