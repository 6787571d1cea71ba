"""The held-out benchmark's harness on tiny inputs: bad targets are recorded, not dropped, and
a unit is not redone once its key matches."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from zoorank_bench.heldout import work
from zoorank_bench.heldout.targets import Target
from zoorank_bench.ranking.zoo import ZooModel
from zoorank_bench.unitcache import split_bulk


def _setup(tmp_path, monkeypatch, labels):
    monkeypatch.setattr(work, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(work, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(work, "EXTRA_DATA_ROOTS", [tmp_path])
    rng = np.random.default_rng(0)
    path = tmp_path / "t.npz"
    np.savez(path, x=rng.integers(0, 255, (len(labels), 8, 8, 3), dtype=np.uint8), y=np.asarray(labels))
    work._dataset.cache_clear()
    return Target("tiny", f"npz:{path}", train_per_class=2, val_per_class=1, test_per_class=1)


def test_a_one_class_target_is_recorded_as_failed(tmp_path, monkeypatch):
    target = _setup(tmp_path, monkeypatch, [0] * 12)
    model = ZooModel("mobilenetv2_100@random", "mobilenetv2_100@random", "random", "mobilenetv2_100")
    assert work.work([model], kinds=("scores",), targets=(target,)) == 1
    unit = work.Unit("scores", target, model)
    payload = unit.stored()
    assert payload is not None
    assert "class" in payload["error"] and payload["model"] == model.label
    assert unit.done()  # recorded once, not retried forever
    assert work.work([model], kinds=("scores",), targets=(target,)) == 0


@pytest.mark.slow
def test_a_trees_unit_keeps_its_saliency_out_of_the_committed_cache_and_rebuilds_it(tmp_path, monkeypatch):
    target = _setup(tmp_path, monkeypatch, [0, 1] * 6)
    model = ZooModel("mobilenetv2_100@random", "mobilenetv2_100@random", "random", "mobilenetv2_100")
    assert work.work([model], kinds=("trees",), targets=(target,)) == 1
    unit = work.Unit("trees", target, model)
    record = unit.stored()["records"]["layer_tree_fidelity"]
    assert record["value"] is not None and "saliency" not in record["details"]
    assert b'"saliency":' not in gzip.decompress((tmp_path / "results" / "trees.jsonl.gz").read_bytes())
    saliency = work.unit_bulk(unit)["records"]["layer_tree_fidelity"]["details"]["saliency"]
    assert saliency
    shutil.rmtree(tmp_path / "cache" / "bulk")  # a new machine: the bulk is recomputed on demand
    assert work.unit_bulk(unit)["records"]["layer_tree_fidelity"]["details"]["saliency"] == saliency


def test_the_committed_cache_holds_every_unit_the_report_used_compactly():
    heldout = json.loads(Path("benchmarks/results/heldout.json").read_text())
    assert not [p for p in work.RESULTS.rglob("*.json") if p.parent != work.RESULTS]  # no per-unit files
    for kind in work.KINDS:
        units = work.unit_cache(kind).units()
        assert all(unit["unit"] == f"{kind}/{uid}" for uid, unit in units.items()), kind
        bulk = work.unit_cache(kind).bulk_paths
        assert not any(split_bulk(unit, bulk)[1] for unit in units.values()), kind  # no bulk committed
        if kind in ("scores", "train"):
            suffix = "__s0" if kind == "train" else ""
            wanted = {
                f"{t}/{m.replace('/', '__').replace('@', '_at_')}{suffix}"
                for t in heldout["targets"]
                for m in heldout["models"]
            }
            assert wanted <= set(units), sorted(wanted - set(units))[:3]
