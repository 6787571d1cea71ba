"""The benchmarks' per-unit cache: units round-trip, the bytes depend only on the units, a changed
unit changes only its own line (and gzip member), bulk fields stay out of the committed file."""

from __future__ import annotations

import gzip
import math
import multiprocessing

from zoorank_bench.unitcache import UnitCache, encode

TREE = (("records", "*", "details", "saliency"),)


def _unit(i: int) -> dict:
    return {
        "model": f"m{i}",
        "error": None,
        "records": {"knn": {"value": i / 7, "details": {"per_tap": [i, i + 1]}}},
        "seconds": 1.5 * i,
    }


def _cache(tmp_path, name: str = "scores") -> UnitCache:
    return UnitCache(tmp_path / "results" / f"{name}.jsonl.gz", tmp_path / "bulk" / name, TREE)


def test_units_round_trip_with_their_key_order_and_nan(tmp_path):
    cache = _cache(tmp_path)
    units = {f"digits/m{i}": _unit(i) for i in range(5)}
    units["digits/m9"] = {"zeta": 1, "alpha": math.nan, "records": {}}
    for uid, unit in units.items():
        cache.put(uid, unit)
    back = UnitCache(cache.path, cache.bulk_dir).units()  # a fresh reader of the same file
    assert back.keys() == units.keys()
    assert all(back[uid] == units[uid] for uid in units if uid != "digits/m9")
    assert list(back["digits/m9"]) == ["zeta", "alpha", "records"] and math.isnan(back["digits/m9"]["alpha"])
    assert [u.get("model") for u in cache.under("digits")] == [*(f"m{i}" for i in range(5)), None]
    assert cache.under("digit") == [] and cache.get("shapes/m0") is None


def test_the_bytes_depend_only_on_the_units(tmp_path):
    units = {f"t/m{i}": _unit(i) for i in range(6)}
    first, second = _cache(tmp_path, "a"), _cache(tmp_path, "b")
    for uid in units:
        first.put(uid, units[uid])
    for uid in reversed(units):  # another order of work
        second.put(uid, units[uid])
    before = first.path.read_bytes()
    assert before == second.path.read_bytes() == encode(units)
    first.put("t/m3", _unit(3))  # a unit redone with the same outcome
    assert first.path.read_bytes() == before
    assert gzip.decompress(before)[:20].startswith(b'{"id":"t/m0"')  # sorted by id, JSON Lines
    assert before[4:8] == bytes(4)  # no timestamp in the gzip header: a rerun a day later gives these bytes


def test_a_changed_unit_changes_only_its_line_and_its_gzip_member(tmp_path):
    cache = _cache(tmp_path)
    cache.put_many({f"t/m{i}": _unit(i) for i in range(20)})
    before = cache.path.read_bytes()
    cache.put("t/m13", _unit(13) | {"seconds": 99.0})
    after = cache.path.read_bytes()
    old_lines = gzip.decompress(before).splitlines()
    new_lines = gzip.decompress(after).splitlines()
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert len(changed) == 1 and new_lines[changed[0]].startswith(b'{"id":"t/m13"')
    # Every other member is byte-identical: only the changed unit's member differs.
    prefix = next(i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b)
    suffix = next(i for i, (a, b) in enumerate(zip(before[::-1], after[::-1], strict=False)) if a != b)
    member = len(gzip.compress(new_lines[changed[0]] + b"\n", compresslevel=9, mtime=0))
    assert len(after) - prefix - suffix <= member < len(after) / 10


def test_bulk_fields_leave_the_file_and_come_back_from_the_bulk_folder(tmp_path):
    cache = _cache(tmp_path, "trees")
    saliency = [{"layer": 1, "maps": [[0.25] * 8] * 8}]
    unit = {
        "model": "m0",
        "records": {"layer_tree_fidelity": {"value": 0.5, "details": {"layers": [1], "saliency": saliency}}},
    }
    cache.put("t/m0", unit)
    assert b"saliency" not in gzip.decompress(cache.path.read_bytes())
    assert cache.get("t/m0") == {
        "model": "m0",
        "records": {"layer_tree_fidelity": {"value": 0.5, "details": {"layers": [1]}}},
    }
    assert cache.bulk("t/m0") == {"records": {"layer_tree_fidelity": {"details": {"saliency": saliency}}}}
    assert unit["records"]["layer_tree_fidelity"]["details"]["saliency"] == saliency  # caller's copy kept
    cache.put("t/m0", {"model": "m0", "error": "failed"})  # redone without bulk: the old bulk goes
    assert cache.bulk("t/m0") is None


def _writer(path, bulk_dir, worker: int) -> None:
    cache = UnitCache(path, bulk_dir)
    for i in range(15):
        cache.put(f"w{worker}/u{i}", {"i": i})


def test_processes_writing_one_file_lose_no_unit(tmp_path):
    cache = _cache(tmp_path)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_writer, args=(cache.path, cache.bulk_dir, w)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert len(cache.units()) == 45
