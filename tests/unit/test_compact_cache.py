"""Compact feature-cache entries (issue 23, "Cache size"): lossless byte planes instead of plain
``np.savez``, no layer taps for a pass no score reads them from, and a versioned format."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from zoorank.features import cache as cache_module
from zoorank.features import extract
from zoorank.features.cache import FeatureCache, feature_key
from zoorank.features.extract import FeatureSet, extract_features
from zoorank.features.preprocess import architecture_preprocessing
from zoorank.rank import RankOptions, prepare_dataset, score_model
from zoorank.scores import ScoreInputs, get_score
from zoorank.zoo import create_model, get_model_spec

KEY = "ab" + "0" * 62


def _scores(features: FeatureSet, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    inputs = ScoreInputs(labels=labels, taps=features.taps, tap_rows=features.tap_rows, seed=0)
    return {name: get_score(name)(inputs, **get_score(name).resolve_params({})).value for name in names}


@pytest.mark.slow
def test_cached_taps_of_a_real_model_are_exact_and_a_third_smaller(tmp_path):
    """The demo's tap images (5 per class of digits) through tf_efficientnet_lite0 at 64 px: the
    entry reads back bit for bit, so the Betti scores do not move, in a file 1.5× smaller than
    plain ``np.savez`` (1.85× at the native 224 px of ``betti_decay``). float16, the obvious
    smaller dtype, would move ``betti_decay_norm`` by far more than noise: its quantile
    thresholds fall on values that rounding has tied."""
    prepared = prepare_dataset("builtin:digits", RankOptions(input_size=64)).tap_images_only()
    spec = get_model_spec("tf_efficientnet_lite0")
    preprocessing = architecture_preprocessing(spec.architecture, 64)
    features = extract_features(
        create_model(spec), prepared.dataset.read, prepared.rows, preprocessing, tap_rows=prepared.tap_rows
    )
    cache = FeatureCache(tmp_path)
    assert cache.put(KEY, features)
    found = cache.get(KEY)
    assert found is not None and list(found.taps) == list(features.taps)
    for name in ("prelogits", "logits", "tap_rows"):
        stored, made = getattr(found, name), getattr(features, name)
        assert stored.dtype == made.dtype and np.array_equal(stored, made), name
    for name, maps in features.taps.items():
        assert found.taps[name].dtype == np.float32 and np.array_equal(found.taps[name], maps), name

    plain = io.BytesIO()
    np.savez(plain, prelogits=features.prelogits, logits=features.logits, **features.taps)  # type: ignore[arg-type]
    factor = plain.tell() / cache.path(KEY).stat().st_size
    assert factor > 1.4, f"the entry is only {factor:.2f}x smaller than np.savez"

    betti = ["betti_decay_norm", "betti_slope"]
    exact = _scores(features, prepared.labels, betti)
    assert _scores(found, prepared.labels, betti) == exact
    half = FeatureSet(
        prelogits=features.prelogits,
        logits=features.logits,
        taps={name: maps.astype(np.float16) for name, maps in features.taps.items()},
        tap_rows=features.tap_rows,
    )
    rounded = _scores(half, prepared.labels, ["betti_decay_norm"])["betti_decay_norm"]
    assert abs(rounded - exact["betti_decay_norm"]) > 0.05 * abs(exact["betti_decay_norm"])


def _tap_names(cache: FeatureCache) -> list[list[str]]:
    names = []
    for entry in cache.entries():
        with np.load(entry.path) as archive:
            names.append([str(n) for n in archive["tap_names"]])
    return names


@pytest.mark.slow
def test_a_pass_no_score_reads_taps_from_caches_none(tmp_path, small_options, monkeypatch):
    """nce reads logits only: its job's entry holds no taps. A tap score at the job's size gets
    them; a later job without one reads that entry without its taps and makes no forward pass."""
    prepared = prepare_dataset("builtin:digits", small_options)
    spec = get_model_spec("mobilenetv2_100@random")
    bare = score_model(prepared, spec, ["nce"], small_options, cache=FeatureCache(tmp_path / "bare"))
    assert bare.error is None and bare.scores["nce"].value is not None
    assert _tap_names(FeatureCache(tmp_path / "bare")) == [[]]

    cache = FeatureCache(tmp_path / "taps")
    tapped = score_model(prepared, spec, ["activation_sparsity"], small_options, cache=cache)
    assert tapped.scores["activation_sparsity"].value is not None
    assert len(_tap_names(cache)[0]) > 4
    bare_bytes = sum(e.size for e in FeatureCache(tmp_path / "bare").entries())
    assert bare_bytes < sum(e.size for e in cache.entries()) / 2

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass was made although the cache holds the features")

    monkeypatch.setattr(extract, "prelogits_and_logits", no_forward)
    again = score_model(prepared, spec, ["nce"], small_options, cache=cache)
    assert again.from_cache and again.scores["nce"].value == bare.scores["nce"].value
    assert len(cache.entries()) == 1


def test_an_entry_of_the_previous_format_is_neither_found_nor_read(tmp_path, monkeypatch):
    """Format 1 was plain ``np.savez``: its keys differ, and a file of it at a current key (a
    collision, a copied folder) is recomputed rather than misread."""
    arguments: dict[str, Any] = dict(
        architecture="resnet18",
        weights_digest="w",
        preprocessing={"size": 64},
        dataset_fingerprint="d",
        sample_ids=np.arange(3),
        tap_rows=np.arange(1),
    )
    current = feature_key(**arguments)
    monkeypatch.setattr(cache_module, "CACHE_FORMAT", 1)
    assert feature_key(**arguments) != current
    monkeypatch.undo()

    cache = FeatureCache(tmp_path)
    cache.path(KEY).parent.mkdir(parents=True)
    zeros = np.zeros((2, 3), np.float32)
    np.savez(
        cache.path(KEY),
        prelogits=zeros,
        logits=zeros,
        tap_names=np.asarray([], dtype=str),
        tap_rows=np.zeros(0, np.int64),
        seconds=1.0,
        images_per_second=2.0,
    )
    assert cache.get(KEY) is None
    assert cache.put(KEY, FeatureSet(prelogits=zeros + 1, logits=zeros))
    found = cache.get(KEY)
    assert found is not None and np.array_equal(found.prelogits, zeros + 1)


@pytest.mark.parametrize("processes", ["one", "multiprocess"])
def test_metrics_report_the_compact_entries_bytes_on_disk(tmp_path, monkeypatch, processes):
    """``/metrics`` counts an entry's bytes on disk (compressed), once, whichever API process
    answers: in multiprocess mode the figure comes from the folder at scrape time, not from one
    process's gauge."""
    from fastapi.testclient import TestClient
    from zoorank_app import metrics
    from zoorank_app.main import create_app
    from zoorank_app.settings import Settings

    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], cache_max_mb=9)
    cache = FeatureCache.from_settings(settings)
    rng = np.random.default_rng(0)
    maps = np.maximum(rng.normal(size=(4, 8, 16, 16)), 0).astype(np.float32)
    for key in ("ab" + "0" * 62, "cd" + "1" * 62):
        features = FeatureSet(
            prelogits=np.zeros((10, 4), np.float32),
            logits=np.zeros((10, 3), np.float32),
            taps={"stem": maps},
            tap_rows=np.arange(4),
        )
        assert cache.put(key, features)
    on_disk = sum(p.stat().st_size for p in settings.cache_dir.rglob("*.npz"))
    assert 0 < on_disk < 2 * maps.nbytes  # smaller than the two entries' taps alone
    if processes == "multiprocess":
        folder = tmp_path / "prometheus"
        folder.mkdir()
        monkeypatch.setenv(metrics.MULTIPROC_ENV, str(folder))
    with TestClient(create_app(settings, dispatch=lambda job_id, models: [])) as client:
        text = client.get("/metrics").text
    samples = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("zoorank_feature_cache_")
    }
    assert samples == {
        "zoorank_feature_cache_bytes": on_disk,
        "zoorank_feature_cache_entries": 2,
        "zoorank_feature_cache_limit_bytes": 9 * 2**20,
    }


def test_cache_stats_prints_root_entries_bytes_and_bound(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from zoorank.cli import load_commands

    monkeypatch.setenv("ZOORANK_CACHE_MAX_MB", "3")
    cache = FeatureCache(tmp_path)
    zeros = np.zeros((6, 5), np.float32)
    for key in ("ab" + "0" * 62, "cd" + "1" * 62, "ef" + "2" * 62):
        assert cache.put(key, FeatureSet(prelogits=zeros, logits=zeros))
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*.npz"))
    result = CliRunner().invoke(load_commands(), ["cache", "stats", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    assert lines["cache"] == str(tmp_path)
    assert lines["entries"].startswith("3 (0.0 MB; bound 3 MB)")
    assert lines["bytes"] == f"{on_disk} of {3 * 2**20}"
