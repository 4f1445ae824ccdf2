"""PrecisionRecall / DensityCoverage computed in row blocks equal the unchunked formula.

Two references: the unchunked JAX formula the module used before it went to row blocks
(full ``N x N`` and ``N x M`` distance matrices, masks as ``where``; transcribed below), which
the chunked code must match exactly, value for value and radius for radius; and the ``prdc``
package's definitions in float64 numpy on the valid rows only (within float32 rounding).
Uneven sizes, chunk sizes that do not divide N, masks (also over NaN rows), k edge cases,
eager (``jax.disable_jit``) and jit, merged uneven batches of the metric classes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metrix.generative.manifold import (
    DensityCoverage,
    PrecisionRecall,
    _knn_radii,
    density_coverage,
    precision_recall,
)
from tests.helpers import merged

HIGHEST = jax.lax.Precision.HIGHEST

# ------------------------------------------------------------- the unchunked reference


def _full_distances(a, b, centre):
    a, b = a - centre, b - centre
    sq = (
        jnp.sum(a * a, axis=1)[:, None]
        + jnp.sum(b * b, axis=1)[None, :]
        - 2 * jnp.matmul(a, b.T, precision=HIGHEST)
    )
    return jnp.sqrt(jnp.maximum(sq, 0))


def _full_radii(x, valid, k, centre):
    d = _full_distances(x, x, centre)
    d = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0, d)
    d = jnp.where(valid[None, :], d, jnp.inf)
    return -jax.lax.top_k(-d, k + 1)[0][:, k]


def _mean(x, valid):
    return jnp.sum(jnp.where(valid, x, 0), dtype=jnp.float32) / jnp.sum(valid, dtype=jnp.float32)


def _centre(real, rv):
    return jnp.sum(jnp.where(rv[:, None], real, 0), axis=0) / jnp.maximum(jnp.sum(rv), 1)


@functools.partial(jax.jit, static_argnames=("k",))
def unchunked(real, rv, gen, gv, k):
    """All four values with the full matrices (the pre-chunking formula)."""
    centre = _centre(real, rv)
    r_real, r_gen = _full_radii(real, rv, k, centre), _full_radii(gen, gv, k, centre)
    d = _full_distances(real, gen, centre)
    pair = rv[:, None] & gv[None, :]
    inside_real, inside_gen = pair & (d < r_real[:, None]), pair & (d < r_gen[None, :])
    nearest = jnp.min(jnp.where(pair, d, jnp.inf), axis=1)
    return {
        "precision": _mean(jnp.any(inside_real, axis=0), gv),
        "recall": _mean(jnp.any(inside_gen, axis=1), rv),
        "density": _mean(jnp.sum(inside_real, axis=0, dtype=jnp.float32), gv) / k,
        "coverage": _mean(nearest < r_real, rv),
    }


def prdc64(real, fake, k):
    """The prdc package's definitions in float64 numpy (strict ``<``), on valid rows only."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)

    def dist(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    def radii(x):
        return np.sort(dist(x, x), axis=1)[:, k]  # column 0: the row itself

    r_real, r_fake, d = radii(real), radii(fake), dist(real, fake)
    return {
        "precision": (d < r_real[:, None]).any(0).mean(),
        "recall": (d < r_fake[None, :]).any(1).mean(),
        "density": (d < r_real[:, None]).sum(0).mean() / k,
        "coverage": (d.min(1) < r_real).mean(),
    }


# --------------------------------------------------------------------------- helpers


def _data(seed, n, m, d=6):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d)).astype(np.float32)
    gen = (rng.normal(size=(m, d)) * 1.2 + 0.3).astype(np.float32)
    return rng, real, gen


def chunked(real, gen, k, chunk_size, rv=None, gv=None):
    # explicit all-True masks, as the reference gets: with None, XLA folds the row count into
    # a constant and may divide by it as a reciprocal product (1 ulp away from the division)
    rv = _ones(len(real)) if rv is None else rv
    gv = _ones(len(gen)) if gv is None else gv
    kw = {"real_valid": rv, "generated_valid": gv, "chunk_size": chunk_size}
    return {
        **precision_recall(real, gen, k=k, **kw),
        **density_coverage(real, gen, k=k, **kw),
    }


def _assert_equal(got, want):
    for key in ("precision", "recall", "density", "coverage"):
        assert float(got[key]) == float(want[key]), (key, float(got[key]), float(want[key]))


def _ones(n):
    return jnp.ones(n, bool)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("k,chunk_size", [(3, 1), (3, 7), (3, 36), (1, 7)])
def test_chunked_equals_unchunked_uneven_sizes(chunk_size, k):
    _, real, gen = _data(0, 37, 23)  # 37 and 23 rows: no chunk size but 1 divides both
    got = chunked(real, gen, k, chunk_size)
    _assert_equal(got, unchunked(real, _ones(37), gen, _ones(23), k=k))
    for key, value in prdc64(real, gen, k).items():
        np.testing.assert_allclose(float(got[key]), value, rtol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 5, 29])
def test_radii_equal_unchunked_with_masks(chunk_size):
    rng, real, _ = _data(1, 29, 1)
    valid = jnp.asarray(rng.random(29) > 0.3)
    centre = _centre(jnp.asarray(real), valid)
    got = _knn_radii(jnp.asarray(real), valid, 3, centre, chunk_size)
    want = _full_radii(jnp.asarray(real), valid, 3, centre)
    # the same expression per distance; XLA's matmul may round a block of rows differently
    # from the full matrix by 1 ulp, never more
    np.testing.assert_array_max_ulp(np.asarray(got)[valid], np.asarray(want)[valid], maxulp=1)


@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_masks_equal_filtering_even_over_nan_rows(chunk_size):
    rng, real, gen = _data(2, 37, 23)  # the shapes above: the compiled functions are reused
    rv, gv = rng.random(37) > 0.35, rng.random(23) > 0.35
    want64 = prdc64(real[rv], gen[gv], 3)
    # masked-out rows hold NaN and huge values: they must be neither centres nor neighbours
    real_bad, gen_bad = real.copy(), gen.copy()
    real_bad[~rv] = np.nan
    gen_bad[~gv] = 1e30
    got = chunked(real_bad, gen_bad, 3, chunk_size, jnp.asarray(rv), jnp.asarray(gv))
    _assert_equal(got, chunked(real[rv], gen[gv], 3, chunk_size))
    _assert_equal(got, unchunked(real, jnp.asarray(rv), gen, jnp.asarray(gv), k=3))
    for key, value in want64.items():
        np.testing.assert_allclose(float(got[key]), value, rtol=1e-6)


def test_inside_an_outer_jit():
    _, real, gen = _data(3, 37, 23)
    outer = jax.jit(lambda r, g, rv, gv: chunked(r, g, 3, 7, rv, gv))(
        real, gen, _ones(37), _ones(23)
    )
    _assert_equal(outer, unchunked(real, _ones(37), gen, _ones(23), k=3))


@pytest.mark.slow  # op by op: ~10 s of dispatch on a loaded 2-core machine
def test_without_jit_equals_jit():
    _, real, gen = _data(3, 19, 26)
    jitted = chunked(real, gen, 2, 10)
    with jax.disable_jit():
        eager = chunked(real, gen, 2, 10)
    _assert_equal(eager, jitted)
    _assert_equal(jitted, unchunked(real, _ones(19), gen, _ones(26), k=2))


def test_k_edge_cases():
    _, real, gen = _data(4, 9, 12)
    # k + 1 == rows: every real radius is the distance to the farthest other real row
    got = chunked(real, gen, 8, 4)
    _assert_equal(got, unchunked(real, _ones(9), gen, _ones(12), k=8))
    np.testing.assert_allclose(float(got["recall"]), prdc64(real, gen, 8)["recall"])
    with pytest.raises(ValueError, match="k=9 need more than k rows, got an array of 9"):
        precision_recall(real, gen, k=9, chunk_size=4)
    # duplicated rows: distance 0 to a twin, so k=1 radii are 0 and strict < admits nothing
    twins = np.concatenate([real, real])
    got = chunked(twins, twins, 1, 5)
    _assert_equal(got, unchunked(twins, _ones(18), twins, _ones(18), k=1))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_bad_chunk_size_is_refused(bad):
    _, real, gen = _data(5, 8, 8)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        precision_recall(real, gen, k=2, chunk_size=bad)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        PrecisionRecall(num_features=6, capacity=16, chunk_size=bad)


def test_metric_with_capacity_at_most_k():
    _, real, gen = _data(10, 5, 5)
    metric = DensityCoverage(num_features=6, capacity=5, k=5)
    with pytest.raises(ValueError, match="at least 6 real rows, got 5"):
        metric.get_state(real=real, generated=gen).compute()
    value = jax.jit(lambda s: s.compute())(metric.get_state(real=real, generated=gen))
    assert np.isnan(float(value["density"])) and np.isnan(float(value["coverage"]))
    with pytest.raises(ValueError, match="k must be a positive int"):
        PrecisionRecall(num_features=6, capacity=16, k=0)
    with pytest.raises(ValueError, match="mode"):  # the shared feature options still checked
        PrecisionRecall(num_features=6, capacity=16, mode="legacy_pytorh")


@pytest.mark.parametrize(
    "cls,k,jit", [(PrecisionRecall, 3, False), (DensityCoverage, 5, True)], ids=["eager", "jit"]
)
def test_metric_merged_uneven_batches_with_masks(cls, k, jit):
    rng, real, gen = _data(6, 50, 50)
    rk, gk = rng.random(50) > 0.3, rng.random(50) > 0.3
    splits = (0, 7, 29, 50)
    kw = {"real": real, "generated": gen, "real_mask": rk, "generated_mask": gk}
    # capacity 64 > rows: the buffers end in padding rows (zeros), which must never count
    def run(chunk_size):
        metric = cls(num_features=6, capacity=64, k=k, chunk_size=chunk_size)
        return merged(metric, splits=splits, jit=jit, **kw)

    small, whole = run(9), run(64)
    want = prdc64(real[rk], gen[gk], k)
    for key in small:
        assert float(small[key]) == float(whole[key]), key
        np.testing.assert_allclose(float(small[key]), want[key], rtol=1e-6)


def test_metric_compute_eager_equals_jit():
    rng, real, gen = _data(9, 30, 30)
    metric = PrecisionRecall(num_features=6, capacity=40, k=3, chunk_size=7)
    state = metric.get_state(real=real, generated=gen, mask=rng.random(30) > 0.2)
    eager, jitted = state.compute(), jax.jit(lambda s: s.compute())(state)
    assert {k: float(v) for k, v in eager.items()} == {k: float(v) for k, v in jitted.items()}


def test_metric_too_few_rows_raises_eagerly_nan_under_jit():
    _, real, gen = _data(7, 5, 20)
    metric = DensityCoverage(num_features=6, capacity=32, k=5, chunk_size=4)
    with pytest.raises(ValueError, match="at least 6 real rows, got 5"):
        metric(real=real, generated=gen)
    value = jax.jit(lambda s: s.compute())(metric.get_state(real=real, generated=gen))
    assert np.isnan(float(value["density"])) and np.isnan(float(value["coverage"]))


def test_bfloat16_features_are_measured_as_float32():
    _, real, gen = _data(8, 37, 23)
    r16, g16 = jnp.asarray(real, jnp.bfloat16), jnp.asarray(gen, jnp.bfloat16)
    got = chunked(r16, g16, 3, 7)
    r32, g32 = np.asarray(r16.astype(jnp.float32)), np.asarray(g16.astype(jnp.float32))
    _assert_equal(got, unchunked(r32, _ones(37), g32, _ones(23), k=3))
