"""The feature cache's bound (issue 13 §4): least recently used entries evicted first, reads
count as use, concurrent evictors, ``zoorank cache stats|prune``, the setting in the workers."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zoorank.cli import load_commands
from zoorank.features import cache as cache_module
from zoorank.features.cache import MB, FeatureCache
from zoorank.features.extract import FeatureSet

runner = CliRunner()


def _features(seed: int, rows: int = 20, width: int = 8) -> FeatureSet:
    rng = np.random.default_rng(seed)
    return FeatureSet(
        prelogits=rng.normal(size=(rows, width)).astype(np.float32),
        logits=rng.normal(size=(rows, 10)).astype(np.float32),
        taps={"stem": rng.normal(size=(4, 2, 3, 3)).astype(np.float32)},
        tap_rows=np.arange(4),
        seconds=1.0,
        images_per_second=20.0,
    )


def _key(name: str) -> str:
    return f"{name:0>64}"  # 64 characters of [0-9a-f]: a key as feature_key makes them


def _clock(start: float = 1_000_000.0):
    """A fake clock: each call is one second later than the one before."""
    ticks = itertools.count(start)
    return lambda: float(next(ticks))


def _entry_bytes(tmp_path: Path) -> int:
    probe = FeatureCache(tmp_path / "probe")
    probe.put(_key("f"), _features(0))
    return probe.path(_key("f")).stat().st_size


def _cached(cache: FeatureCache) -> set[str]:
    return {entry.path.stem for entry in cache.entries()}


def test_least_recently_used_entries_are_evicted_first(tmp_path):
    size = _entry_bytes(tmp_path)
    cache = FeatureCache(tmp_path / "cache", max_bytes=3 * size + size // 2, clock=_clock())
    for name in "abc":
        assert cache.put(_key(name), _features(ord(name)))
    assert _cached(cache) == {_key("a"), _key("b"), _key("c")}
    cache.put(_key("d"), _features(4))
    assert _cached(cache) == {_key("b"), _key("c"), _key("d")}
    cache.put(_key("e"), _features(5))
    assert _cached(cache) == {_key("c"), _key("d"), _key("e")}
    assert sum(e.size for e in cache.entries()) <= cache.max_bytes


def test_a_read_protects_an_entry_from_eviction(tmp_path):
    size = _entry_bytes(tmp_path)
    cache = FeatureCache(tmp_path / "cache", max_bytes=3 * size + size // 2, clock=_clock())
    for name in "abc":
        cache.put(_key(name), _features(ord(name)))
    found = cache.get(_key("a"))  # a, written first, is now the most recently used
    assert found is not None and found.from_cache
    np.testing.assert_array_equal(found.prelogits, _features(ord("a")).prelogits)
    cache.put(_key("d"), _features(4))
    assert _cached(cache) == {_key("a"), _key("c"), _key("d")}  # b went, not a


def test_an_entry_larger_than_the_whole_bound_is_not_cached_and_evicts_nothing(tmp_path, monkeypatch):
    size = _entry_bytes(tmp_path)
    cache = FeatureCache(tmp_path / "cache", max_bytes=2 * size + size // 2, clock=_clock())
    cache.put(_key("a"), _features(1))
    cache.put(_key("b"), _features(2))
    opened = []
    real_mkstemp = cache_module.tempfile.mkstemp

    def mkstemp(**kwargs):
        opened.append(kwargs)
        return real_mkstemp(**kwargs)

    monkeypatch.setattr(cache_module.tempfile, "mkstemp", mkstemp)
    big = _features(3, rows=2000)  # ~100 entries' worth
    assert cache.put(_key("c"), big) is False and opened == []  # not even written to a temp file
    assert _cached(cache) == {_key("a"), _key("b")}
    assert cache.get(_key("c")) is None  # the next job recomputes it
    assert FeatureCache(tmp_path / "unbounded").put(_key("c"), big)  # 0: no bound
    # arrays that fit the bound exactly, in a file that does not (the npz headers)
    small = _features(4)
    exact = sum(a.nbytes for a in (small.prelogits, small.logits, small.tap_rows, *small.taps.values()))
    tight = FeatureCache(tmp_path / "tight", max_bytes=exact)
    assert tight.put(_key("d"), small) is False and tight.entries() == [] and tight.stats()["temp_files"] == 0


def test_an_eviction_during_a_read_does_not_break_the_reader(tmp_path):
    """The entry is deleted after the reader opened it (the reader's clock call, made once the
    file is open, runs a second process's ``prune --all``): the read still returns every array;
    the next reader finds nothing and recomputes."""
    root = tmp_path / "cache"
    FeatureCache(root).put(_key("a"), _features(1))
    evictor = FeatureCache(root)
    pruned = []

    def clock_that_evicts() -> float:
        pruned.append(evictor.prune(everything=True).removed_entries)
        return time.time()

    found = FeatureCache(root, clock=clock_that_evicts).get(_key("a"))
    assert pruned == [1] and not FeatureCache(root).path(_key("a")).exists()
    assert found is not None
    expected = _features(1)
    np.testing.assert_array_equal(found.prelogits, expected.prelogits)
    np.testing.assert_array_equal(found.taps["stem"], expected.taps["stem"])
    assert FeatureCache(root).get(_key("a")) is None


def _write_and_evict(root: str, limit: int, worker: int, barrier) -> None:
    cache = FeatureCache(root, max_bytes=limit)
    barrier.wait()
    for i in range(25):
        cache.put(_key(f"{worker}{i:02d}"), _features(100 * worker + i))
        cache.get(_key(f"{(worker + 1) % 3}{i:02d}"))  # another writer's entry, maybe being evicted
    cache.prune(max_bytes=limit)


def _prune(root: str, limit: int, barrier) -> None:
    cache = FeatureCache(root)
    barrier.wait()
    cache.prune(max_bytes=limit)


def _run_together(target, args_per_process: list[tuple]) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(args_per_process))
    processes = [context.Process(target=target, args=(*args, barrier)) for args in args_per_process]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * len(processes)  # nobody crashed


def test_concurrent_evictors_do_not_crash_and_the_bound_holds(tmp_path):
    size = _entry_bytes(tmp_path)
    root = tmp_path / "cache"
    # two evictors on the same 120 entries, each choosing the same least recently used ones
    filler = FeatureCache(root, clock=_clock())
    for i in range(120):
        filler.put(_key(f"{i:03d}"), _features(i))
    limit = 10 * size + size // 2
    _run_together(_prune, [(str(root), limit), (str(root), limit)])
    left = FeatureCache(root).entries()
    assert sum(e.size for e in left) <= limit
    assert {e.path.stem for e in left} == {_key(f"{i:03d}") for i in range(110, 120)}  # the newest


def test_concurrent_writers_readers_and_evictors_keep_the_bound(tmp_path):
    size = _entry_bytes(tmp_path)
    root = tmp_path / "cache"
    limit = 8 * size + size // 2
    _run_together(_write_and_evict, [(str(root), limit, worker) for worker in range(3)])
    cache = FeatureCache(root, max_bytes=limit)
    assert 0 < sum(e.size for e in cache.entries()) <= limit
    for entry in cache.entries():  # whatever is left is whole
        assert cache.get(entry.path.stem) is not None
    assert cache.stats()["temp_files"] == 0


def test_stale_temp_files_are_removed_and_fresh_ones_kept(tmp_path):
    cache = FeatureCache(tmp_path, clock=_clock())
    cache.put(_key("a"), _features(1))
    shard = cache.path(_key("a")).parent
    stale, fresh, foreign = shard / "x1.npz.tmp", shard / "x2.npz.tmp", shard / "notes.txt"
    for path in (stale, fresh, foreign):
        path.write_bytes(b"partial")
    now = cache.clock()
    os.utime(stale, (now - 2 * 3600, now - 2 * 3600))
    os.utime(fresh, (now, now))  # a write under way
    report = cache.prune(everything=True)
    assert report.removed_entries == 1 and report.removed_temp_files == 1
    assert not stale.exists() and fresh.exists() and foreign.exists()  # never a file not ours


# -- the command line ---------------------------------------------------------------------


def _mb_entries(root: Path, names: str, days_ago: list[float]) -> FeatureCache:
    """Entries of about 0.58 MB each, last used ``days_ago`` days before now."""
    cache = FeatureCache(root)
    now = time.time()
    for name, age in zip(names, days_ago, strict=True):
        cache.put(_key(name), _features(ord(name), rows=150, width=1000))
        os.utime(cache.path(_key(name)), (now - age * 86400, now - age * 86400))
    return cache


def test_cache_stats_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOORANK_CACHE_MAX_MB", "7")
    cache = _mb_entries(tmp_path, "abc", [3, 2, 1])
    app = load_commands()
    result = runner.invoke(app, ["cache", "stats", "--cache-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["entries"] == 3 and stats["bytes"] == sum(e.size for e in cache.entries())
    assert stats["limit_bytes"] == 7 * MB
    oldest = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * 86400))
    assert stats["oldest_use"].startswith(oldest) and stats["oldest_use"] < stats["newest_use"]
    text = runner.invoke(app, ["cache", "stats", "--cache-dir", str(tmp_path)])
    assert text.exit_code == 0 and re.search(r"entries\s+3 \(1\.\d MB; bound 7 MB\)", text.stdout)


def test_cache_prune_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOORANK_CACHE_MAX_MB", "1")
    cache = _mb_entries(tmp_path, "abcdef", [30, 20, 10, 3, 2, 1])
    app = load_commands()

    def prune(*options: str) -> dict:
        result = runner.invoke(app, ["cache", "prune", "--cache-dir", str(tmp_path), "--json", *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    older = prune("--older-than-days", "15")
    assert older["removed"] == [_key("a"), _key("b")] and older["remaining_entries"] == 4
    assert _cached(cache) == {_key(n) for n in "cdef"}
    sized = prune("--max-mb", "2")  # 4 x 0.58 MB: the 3 most recently used fit in 2 MB
    assert sized["removed"] == [_key("c")] and sized["remaining_bytes"] <= 2 * MB
    bound = prune()  # no option: down to ZOORANK_CACHE_MAX_MB (1 MB)
    assert bound["removed"] == [_key("d"), _key("e")] and bound["remaining_bytes"] <= MB
    assert _cached(cache) == {_key("f")}
    text = runner.invoke(app, ["cache", "prune", "--cache-dir", str(tmp_path), "--all"])
    assert text.exit_code == 0 and re.search(r"freed 0\.\d MB: 1 entries removed; 0 left", text.stdout)
    assert cache.entries() == []


# -- the setting reaches every writer -----------------------------------------------------


@pytest.mark.parametrize(
    ("command", "module", "function"),
    [
        (["rank"], "zoorank.rank", "rank"),
        (["explain", "--model", "mobilenetv2_100"], "zoorank.explain.model", "explain_model"),
        (["validate"], "zoorank.groundtruth", "validate"),
    ],
)
def test_the_setting_bounds_the_cache_of_every_cli_command(tmp_path, monkeypatch, command, module, function):
    import importlib

    from zoorank.errors import ZoorankError

    monkeypatch.setenv("ZOORANK_CACHE_MAX_MB", "9")
    seen: list[FeatureCache] = []

    def capture(*args, cache, **kwargs):
        seen.append(cache)
        raise ZoorankError("stop here")

    monkeypatch.setattr(importlib.import_module(module), function, capture)
    arguments = [*command, "--dataset", "builtin:digits", "--cache-dir", str(tmp_path)]
    result = runner.invoke(load_commands(), arguments)
    assert "stop here" in result.output
    assert len(seen) == 1 and seen[0].max_bytes == 9 * MB and seen[0].root == tmp_path


def test_the_setting_bounds_the_cache_of_the_workers(tmp_path, monkeypatch):
    """ZOORANK_CACHE_MAX_MB -> the service's Settings -> the FeatureCache a model task scores
    with (run_model, what the Celery task calls)."""
    from fastapi.testclient import TestClient
    from zoorank_app.main import create_app
    from zoorank_app.services import runner as model_runner
    from zoorank_app.settings import Settings

    monkeypatch.setenv("ZOORANK_CACHE_MAX_MB", "3")
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])
    queued = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    body = {
        "dataset": "builtin:digits",
        "models": ["mobilenetv2_100@random"],
        "scores": ["logme"],
        "options": {"samples_per_class": 5, "input_size": 32, "tap_images_per_class": 0},
    }
    response = queued.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    seen: list[FeatureCache] = []

    def score_model(prepared, spec, scores, options, *, cache, **kwargs):
        seen.append(cache)
        raise RuntimeError("stop here")

    monkeypatch.setattr(model_runner, "score_model", score_model)
    model_runner.run_model(settings, response.json()["id"], "mobilenetv2_100@random")
    assert len(seen) == 1
    assert seen[0].max_bytes == 3 * MB and seen[0].root == settings.cache_dir


def test_the_service_builds_its_caches_only_from_the_settings():
    """Every FeatureCache of app/ and workers/ comes from FeatureCache.from_settings, so none
    escapes the bound."""
    repository = Path(__file__).resolve().parents[2]
    built = []
    for folder in ("app", "workers"):
        for source in (repository / folder).rglob("*.py"):
            text = source.read_text()
            built += [f"{source.name}: {m}" for m in re.findall(r"FeatureCache(?:\.\w+)?\(", text)]
    assert built and all("FeatureCache.from_settings(" in b for b in built), built
