"""Smoke test of the benchmark harness: every benchmark module imports and has a ``main``; the
cheap ones run end to end with tiny sizes (peers that are not installed are listed as such);
the runner writes a RESULTS file. Timings here mean nothing; only that the code runs."""

from __future__ import annotations

import importlib
import types

import numpy as np
import pytest

from benchmarks import __main__ as runner
from benchmarks import common, peers


@pytest.mark.parametrize("name", runner.available())
def test_module_imports_and_has_main(name):
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(module.main)
    assert name in runner.QUICK, "every benchmark needs tiny sizes for `--quick`"


def test_call_main_dispatches_on_the_signature():
    calls = []
    with_argv = types.SimpleNamespace(main=lambda argv=None: calls.append(("argv", argv)))
    with_count = types.SimpleNamespace(main=lambda repeats=30: calls.append(("count", repeats)))
    with_count.main.__annotations__["repeats"] = int
    bare = types.SimpleNamespace(main=lambda: calls.append(("bare",)))
    runner.call_main(with_argv, ["--repeats", "1"])
    runner.call_main(with_count, ["2"])
    runner.call_main(bare, ["ignored"])
    assert calls == [("argv", ["--repeats", "1"]), ("count", 2), ("bare",)]


def test_interleaved_medians_runs_each_once_per_round():
    seen = []
    medians = common.interleaved_medians({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, 3)
    assert sorted(medians) == ["a", "b"] and all(v >= 0 for v in medians.values())
    assert seen == ["a", "b", "b", "a", "a", "b"]  # rotated order


def test_rows_table_marks_unmeasured():
    lines = common.rows_table([common.row("x/metrix", 1.5e-4, "s/step"), common.row("x/peer", None, note="not installed")])
    assert lines[0] == "| name | value | unit | note |"
    assert "| x/peer | — | s | not installed |" in lines


def test_hand_written_values_match_closed_forms():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from benchmarks import collection

    batches = collection.make_batches(3, 64)
    values = peers.hand_written("ten", batches, 10).run()
    logits = np.concatenate([np.asarray(b[0]) for b in batches])
    labels = np.concatenate([np.asarray(b[1]) for b in batches])
    pred = logits.argmax(-1)
    np.testing.assert_allclose(values["accuracy"], sklearn_metrics.accuracy_score(labels, pred), rtol=1e-6)
    np.testing.assert_allclose(values["f1"], sklearn_metrics.f1_score(labels, pred, average="macro"), rtol=1e-5)
    np.testing.assert_allclose(values["mcc"], sklearn_metrics.matthews_corrcoef(labels, pred), rtol=1e-5)
    np.testing.assert_allclose(values["kappa"], sklearn_metrics.cohen_kappa_score(labels, pred), rtol=1e-5)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(values["log_loss"], sklearn_metrics.log_loss(labels, probs, labels=range(10)), rtol=1e-5)
    np.testing.assert_allclose(values["top5"], sklearn_metrics.top_k_accuracy_score(labels, logits, k=5), rtol=1e-6)


def test_collection_runs_tiny_and_lists_missing_peers(capsys):
    from benchmarks import collection

    rows = collection.main(["--steps", "3", "--repeats", "1", "--skip", "compile"])
    out = capsys.readouterr().out
    assert "DISAGREES" not in out
    names = {r["name"] for r in rows}
    for workload in ("two", "ten"):
        assert {f"{workload}/hand-written jnp", f"{workload}/metrix"} <= names
        for peer in peers.PEERS:  # each peer is measured or reported as not installed
            measured = any(r["name"].startswith(f"{workload}/") and r["value"] is not None
                           and peer.split()[0] in r["name"] for r in rows)
            assert measured or f"{workload}/{peer}" in names
    assert all(r["value"] is not None or r["note"].startswith("not installed") for r in rows)


def test_compile_seconds_is_positive():
    from benchmarks import collection

    assert collection.compile_seconds(lambda x: x + 1, (np.float32(1),)) > 0


def test_runner_writes_results(tmp_path, capsys):
    path = tmp_path / "RESULTS.md"
    code = runner.main(["overhead", "--quick", "--steps", "3", "--write-results", "--results-path", str(path)])
    assert code == 0
    text = path.read_text()
    assert "## overhead" in text and "load average" in text and "| package | status |" in text
    assert "metrix" in text


def test_rewriting_results_keeps_the_hand_written_tail(tmp_path):
    from benchmarks import common

    path = tmp_path / "RESULTS.md"
    path.write_text(f"# old generated part\nstale\n\n{common.KEPT_MARKER}\n## Measurements\n| a | b |\n")
    common.write_results([{"name": "overhead", "text": "ok", "rows": None}], path)
    text = path.read_text()
    assert "stale" not in text and "## overhead" in text
    assert text.count(common.KEPT_MARKER) == 1
    assert text.endswith(f"{common.KEPT_MARKER}\n## Measurements\n| a | b |")


def test_targets_read_each_benchmark_and_flag_misses():
    sections = [
        {"name": "overhead", "rows": [{"name": "metrix", "ratio": 1.02}]},
        {"name": "fid", "text": "  scipy sqrtm (pytorch-fid)   5123.4 ms   x   45.1 vs metrix   rel.err 1e-5\n"
                                "  torchmetrics _compute_fid (eigvals)   300.0 ms   x    1.5 vs metrix   rel.err 1e-5\n"},
        # The target names triplet, contrastive and NT-Xent: circle (an extra loss) is not judged.
        {"name": "metric_learning", "text": "triplet   32   0.27 (0.18)   10.1 (1.5)   5   38.2x\n"
                                            "contrastive 64  0.18 (0.12)  1.8 (1.0)   5    1.8x\n"
                                            "circle    32   0.18 (0.12)    1.1 (1.0)   5    1.1x\n"},
        {"name": "lpips", "rows": {"alex64": {"compile_s": 1.0, "metrix": 100.0, "lpips (torch)": 50.0}}},
        # the line benchmarks/bertscore.py prints
        {"name": "bertscore", "text": "  metrix / bert_score.BERTScorer.score: pairs/s ratio x1.06 warm\n"
                                      "TARGET metrix / bert_score.BERTScorer pairs/s (>= 1x): x0.97\n"},
    ]
    table = "\n".join(common.targets(sections))
    assert "| overhead: metrix per step <= 1.05x hand-written jnp | x1.020 | met |" in table
    assert "| FID compute >= 30x scipy sqrtm | x45.1 | met |" in table
    assert "| FID compute >= 2x torchmetrics | x1.5 | **MISSED** |" in table
    assert "slowest case contrastive 64: x1.8 | **MISSED** |" in table
    assert "x2.00 | met |" in table
    assert "| BERTScore >= 1x bert-score | bert_score.BERTScorer: x0.97 | **MISSED** |" in table
    assert "| BERTScore >= 1x bert-score | — | not measured |" in "\n".join(common.targets(sections[:-1]))
