"""The API's own metrics: requests counted by route template and status, whoever answered
(a route, the access layer, an exception), and the garbage collector's passes timed."""

from __future__ import annotations

import asyncio
import gc

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from zoorank_app import metrics
from zoorank_app.main import create_app
from zoorank_app.settings import Settings


def _requests(method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "zoorank_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


def _latency_count(method: str, route: str) -> float:
    value = REGISTRY.get_sample_value(
        "zoorank_http_request_seconds_count", {"method": method, "route": route}
    )
    return value or 0.0


@pytest.fixture
def client(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], max_request_kb=1)
    with TestClient(create_app(settings, dispatch=lambda job_id, models: [])) as test_client:
        yield test_client


def test_each_request_is_counted_once_under_its_route_template(client):
    before = _requests("GET", "/v1/jobs/{job_id}", "404"), _latency_count("GET", "/v1/jobs/{job_id}")
    for job_id in ("a", "b", "c"):
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    after = _requests("GET", "/v1/jobs/{job_id}", "404"), _latency_count("GET", "/v1/jobs/{job_id}")
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)


def test_refusals_of_the_access_layer_are_counted(client):
    # MAX_REQUEST_KB=1: the access layer answers 413 before any route runs
    before = _requests("POST", "unmatched", "413")
    assert client.post("/v1/jobs", content=b"{" + b" " * 4096 + b"}").status_code == 413
    assert _requests("POST", "unmatched", "413") - before == 1


def test_an_app_that_raises_is_counted_as_a_500():
    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    measured = metrics.RequestMetrics(broken)
    before = _requests("GET", "unmatched", "500")

    async def call() -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            raise AssertionError("nothing is sent by an app that raised")

        await measured({"type": "http", "method": "GET", "path": "/x"}, receive, send)

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(call())
    assert _requests("GET", "unmatched", "500") - before == 1


def test_started_app_freezes_its_start_up_heap_and_times_collections(client):
    assert gc.get_freeze_count() > 10_000  # the app, its libraries: left out of full passes
    passes = REGISTRY.get_sample_value("zoorank_gc_pause_seconds_count", {"generation": "2"}) or 0.0
    gc.collect()
    assert REGISTRY.get_sample_value("zoorank_gc_pause_seconds_count", {"generation": "2"}) == passes + 1
    assert "zoorank_gc_pause_seconds_bucket" in client.get("/metrics").text


def test_metrics_report_the_feature_cache_size_the_workers_share(tmp_path):
    import numpy as np

    from zoorank.features.cache import FeatureCache
    from zoorank.features.extract import FeatureSet

    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], cache_max_mb=7)
    cache = FeatureCache.from_settings(settings)
    for key in ("ab" + "0" * 62, "cd" + "1" * 62):
        cache.put(
            key, FeatureSet(prelogits=np.zeros((10, 4), np.float32), logits=np.zeros((10, 3), np.float32))
        )
    on_disk = sum(p.stat().st_size for p in settings.cache_dir.rglob("*.npz"))
    assert on_disk > 0
    with TestClient(create_app(settings, dispatch=lambda job_id, models: [])) as client:
        client.get("/metrics")
    gauge = REGISTRY.get_sample_value
    assert gauge("zoorank_feature_cache_bytes") == on_disk
    assert gauge("zoorank_feature_cache_entries") == 2
    assert gauge("zoorank_feature_cache_limit_bytes") == 7 * 2**20


def test_a_cpu_stage_that_found_its_features_evicted_is_counted(tmp_path):
    """The gpu stage writes the features into the shared cache; a cpu stage that finds them gone
    makes the forward pass again, which the split by queue exists to avoid: /metrics counts it."""
    import shutil

    from zoorank_app.db import crud
    from zoorank_app.db.session import session_scope
    from zoorank_app.services.jobs import submit_ranking
    from zoorank_app.services.runner import run_model

    from zoorank.rank_request import RankRequest

    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])
    api = create_app(settings, dispatch=lambda job_id, names: [])  # migrates the database
    models = ["mobilenetv2_100@random", "resnet10t@random"]
    options = {"samples_per_class": 5, "input_size": 32, "tap_images_per_class": 0}
    created = submit_ranking(
        settings,
        RankRequest.from_dict(
            {"dataset": "builtin:digits", "models": models, "scores": ["logme"], "options": options}
        ),
        dispatch=lambda job_id, names: [],
    )
    kept, evicted = models
    for model in models:
        assert run_model(settings, created.job.id, model, stage="device")["status"] == "extracted"
    assert run_model(settings, created.job.id, kept, stage="arrays")["from_cache"] is True
    shutil.rmtree(settings.cache_dir)  # evicted, or a cpu host without the shared volume
    assert run_model(settings, created.job.id, evicted, stage="arrays")["from_cache"] is False
    with session_scope(settings.database_url) as session:
        rows = {m.model: m for m in crud.job_models(session, created.job.id)}
        assert (rows[kept].features_recomputed, rows[evicted].features_recomputed) == (False, True)
        assert rows[evicted].status == "succeeded"
    with TestClient(api) as client:
        client.get("/metrics")
    assert REGISTRY.get_sample_value("zoorank_features_recomputed") == 1
