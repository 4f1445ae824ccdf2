"""Ranking metrics against sklearn's ndcg_score, torchmetrics' retrieval functions and hand cases."""

import functools
import itertools
import sys
import types

import jax
import numpy as np
import pytest
from sklearn.metrics import ndcg_score

import metrix as mx
from tests import helpers

SPLITS = (0, 3, 11, 16)  # queries per batch: 3, 8, 5
NAMES = ("MRR", "MAP", "PrecisionAtK", "RecallAtK", "HitRate")


merged = functools.partial(helpers.merged, splits=SPLITS)


def data(seed=0, q=16, items=9):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.01, 1.0, size=(q, items)).astype(np.float32)  # positive: see torchmetrics
    relevance = rng.integers(0, 4, size=(q, items)) * (rng.uniform(size=(q, items)) < 0.4)
    relevance[2] = 0  # a query without relevant items
    scores[4, :5] = 0.5  # ties
    lengths = rng.integers(3, items + 1, size=q)  # variable list lengths (padding masked)
    item_mask = np.arange(items)[None, :] < lengths[:, None]
    query_mask = rng.uniform(size=q) < 0.75
    return scores, relevance.astype(np.int32), item_mask, query_mask


def retrieval():
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torchmetrics.functional.retrieval")
    return torch, {
        "MRR": functional.retrieval_reciprocal_rank,
        "MAP": functional.retrieval_average_precision,
        "PrecisionAtK": functional.retrieval_precision,
        "RecallAtK": functional.retrieval_recall,
        "HitRate": functional.retrieval_hit_rate,
    }


@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("masked, jit", [(False, False), (True, True)])
def test_ndcg_matches_sklearn(k, masked, jit):
    scores, relevance, item_mask, query_mask = data()
    got = merged(mx.NDCG(k=k), jit=jit, scores=scores, relevance=relevance, item_mask=item_mask,
                 mask=query_mask if masked else None)
    queries = np.flatnonzero(query_mask) if masked else range(len(scores))
    # sklearn on each query's real items only (it cannot take padded lists).
    want = np.mean([ndcg_score(relevance[i][item_mask[i]][None], scores[i][item_mask[i]][None], k=k) for i in queries])
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("k", [None, 3])
def test_binary_metrics_match_torchmetrics(k):
    torch, reference = retrieval()
    scores, relevance, item_mask, query_mask = data(seed=1)
    scores[4, :5] = np.arange(5) / 10 + 0.1  # torchmetrics' topk breaks ties arbitrarily: avoid them here
    for jit, masked in ((False, False), (True, True)):
        # All five metrics at once from a context: one compile per batch shape under jit.
        keys = {"scores": "scores", "relevance": "relevance", "item_mask": "item_mask"}
        metrics = {name: getattr(mx, name)(k=k, mask="mask" if masked else None, **keys) for name in NAMES}
        get_states = jax.jit(lambda c: mx.get_states(metrics, c)) if jit else lambda c: mx.get_states(metrics, c)
        states = mx.empty_states(metrics)
        context = {"scores": scores, "relevance": relevance, "item_mask": item_mask, "mask": query_mask}
        for start, stop in itertools.pairwise(SPLITS):
            states = mx.merge(states, get_states({name: v[start:stop] for name, v in context.items()}))
        values = mx.compute(states)
        queries = np.flatnonzero(query_mask) if masked else range(len(scores))
        for name in NAMES:
            per_query = []
            for i in queries:
                s, r = scores[i][item_mask[i]], relevance[i][item_mask[i]] > 0
                per_query.append(float(reference[name](torch.tensor(s), torch.tensor(r), top_k=k)))
            np.testing.assert_allclose(values[name], np.mean(per_query), rtol=1e-5, err_msg=f"{name} k={k} jit={jit}")


def test_hand_computed_cases():
    # One query: items ranked A(rel) B C(rel) D; two relevant.
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    relevance = np.array([[1, 0, 1, 0]], np.int32)
    np.testing.assert_allclose(mx.MRR()(scores, relevance), 1.0)
    np.testing.assert_allclose(mx.MAP()(scores, relevance), (1 / 1 + 2 / 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(mx.PrecisionAtK(k=2)(scores, relevance), 0.5)
    np.testing.assert_allclose(mx.RecallAtK(k=2)(scores, relevance), 0.5)
    np.testing.assert_allclose(mx.HitRate(k=1)(scores, relevance), 1.0)
    dcg = 1 + 1 / np.log2(4)
    ideal = 1 + 1 / np.log2(3)
    np.testing.assert_allclose(mx.NDCG()(scores, relevance), dcg / ideal, rtol=1e-6)
    # The first relevant item at rank 3: MRR 1/3; outside the top 2 it counts 0.
    relevance = np.array([[0, 0, 1, 0]], np.int32)
    np.testing.assert_allclose(mx.MRR()(scores, relevance), 1 / 3, rtol=1e-6)
    assert float(mx.MRR(k=2)(scores, relevance)) == 0.0
    # Padding: a relevant item hidden by item_mask counts for nothing.
    item_mask = np.array([[True, True, False, False]])
    assert float(mx.RecallAtK(k=1)(scores, relevance, item_mask=item_mask)) == 0.0
    assert float(mx.HitRate()(scores, relevance, item_mask=item_mask)) == 0.0


def test_queries_without_relevant_items():
    scores, relevance, item_mask, _ = data(seed=2)
    empty = ~np.any((relevance > 0) & item_mask, axis=1)
    assert empty.any()
    for name in NAMES + ("NDCG",):
        zero = merged(getattr(mx, name)(), scores=scores, relevance=relevance, item_mask=item_mask)
        skip = merged(getattr(mx, name)(skip_empty=True), scores=scores, relevance=relevance, item_mask=item_mask)
        # They score 0; skip_empty leaves them out of the mean instead.
        np.testing.assert_allclose(float(zero) * len(scores) / (~empty).sum(), skip, rtol=1e-5, err_msg=name)
    assert np.isnan(mx.NDCG()(scores, relevance, mask=np.zeros(len(scores), bool)))


def test_bad_inputs():
    scores, relevance, _, _ = data(seed=3)
    with pytest.raises(ValueError, match="k must"):
        mx.NDCG(k=0)
    with pytest.raises(TypeError):
        mx.MRR()(scores, relevance[:, :3])
