"""Access (issue 13 §5): hashed API keys and their commands, read protection, the rate limit,
CORS and the request size limit."""

from __future__ import annotations

import asyncio
import base64
import logging
import stat

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner
from zoorank_app.access import AccessMiddleware
from zoorank_app.keys import KeyFileError, KeyRing, append_line, hash_key, keys_app, new_key, verify
from zoorank_app.main import create_app
from zoorank_app.ratelimit import RateLimiter
from zoorank_app.settings import Settings

from tests.unit import test_api
from tests.unit.test_api import KEY, _images, _keyed, _queued, _zip, assert_problem

settings = test_api.settings  # the fixture

OTHER_KEY = "zrk_another-test-key-abcdefghij0123456789"


def _with(settings: Settings, **changes: object) -> Settings:
    return Settings(**{**settings.model_dump(), **changes})


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{key}".encode()).decode()}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- keys -----------------------------------------------------------------------------------


def test_a_new_key_is_random_and_stored_as_its_hash_only():
    plain, line = new_key("alice")
    name, hashed = line.split(":", 1)
    assert plain.startswith("zrk_") and len(plain) >= 40 and plain not in line
    assert name == "alice" and hashed == hash_key(plain) and hashed.startswith("sha256:")
    assert verify(plain, hashed) and not verify(plain + "x", hashed)
    assert new_key("alice")[0] != plain
    with pytest.raises(ValueError, match="too short"):
        hash_key("s3cret")
    with pytest.raises(ValueError, match="key name"):
        new_key("alice:admin")


def test_keys_new_prints_the_key_once_and_appends_its_hash(tmp_path):
    runner = CliRunner()
    key_file = tmp_path / "etc" / "keys"
    env = {"ZOORANK_VAR_DIR": str(tmp_path / "var"), "ZOORANK_API_KEYS_FILE": str(key_file)}
    made = runner.invoke(keys_app, ["new", "alice"], env=env)
    assert made.exit_code == 0, made.output
    plain = made.stdout.strip()
    assert plain.startswith("zrk_") and "not shown again" in made.stderr
    assert key_file.read_text() == f"alice:{hash_key(plain)}\n" and plain not in key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = runner.invoke(keys_app, ["new", "bob"], env=env)
    assert second.exit_code == 0 and len(key_file.read_text().splitlines()) == 2
    again = runner.invoke(keys_app, ["new", "alice"], env=env)
    assert again.exit_code == 2 and "revoke it first" in again.stderr
    assert runner.invoke(keys_app, ["new", "carol"], env={**env, "ZOORANK_API_KEYS_FILE": ""}).exit_code == 2

    hashed = runner.invoke(keys_app, ["hash"], input=plain + "\n", env=env)
    assert hashed.exit_code == 0 and hashed.stdout.strip() == hash_key(plain)
    short = runner.invoke(keys_app, ["hash"], input="s3cret\n", env=env)
    assert short.exit_code == 2 and "zoorank keys new" in short.stderr and "s3cret" not in short.output


def test_a_plain_key_in_the_settings_is_refused_without_being_shown():
    plain = new_key("x")[0]
    with pytest.raises(ValidationError) as refused:
        Settings(api_keys=[hash_key(OTHER_KEY), plain])
    message = str(refused.value)
    assert "entry 2 of ZOORANK_API_KEYS" in message and "zoorank keys hash" in message
    assert plain[:12] not in message and plain[-12:] not in message  # nor a truncated echo
    assert Settings(api_keys=[f"ci:{hash_key(plain)}", hash_key(OTHER_KEY)]).api_keys
    with pytest.raises(ValidationError, match="PROTECT_READS needs"):
        Settings(protect_reads=True)


def test_key_file_and_setting_both_admit_and_the_file_is_reread(settings, tmp_path, caplog):
    key_file = tmp_path / "keys"
    append_line(key_file, f"alice:{hash_key(KEY)}")
    client = _queued(_with(settings, api_keys=[hash_key(OTHER_KEY)], api_keys_file=key_file))
    # an authorised cancel of an unknown job is a 404; an unauthorised one never gets there
    assert_problem(client.delete("/v1/jobs/nope"), 401)
    assert_problem(client.delete("/v1/jobs/nope", headers=_bearer(KEY)), 404)
    assert_problem(client.delete("/v1/jobs/nope", headers=_bearer(OTHER_KEY)), 404)

    late = new_key("bob")
    append_line(key_file, late[1])  # no restart needed
    assert_problem(client.delete("/v1/jobs/nope", headers=_bearer(late[0])), 404)

    key_file.write_text(late[1] + "\n")  # alice's line removed: her key is revoked
    assert_problem(client.delete("/v1/jobs/nope", headers=_bearer(KEY)), 401)

    pasted = new_key("z")[0]
    key_file.write_text(late[1] + "\n" + pasted + "\n")  # a plain key pasted by mistake
    with caplog.at_level(logging.ERROR, logger="zoorank_app.keys"):
        assert_problem(client.delete("/v1/jobs/nope", headers=_bearer(late[0])), 404)  # previous keys stay
    assert "line 2 of" in caplog.text and pasted not in caplog.text

    key_file.unlink()  # no file, no keys from it: writes stay closed
    assert_problem(client.delete("/v1/jobs/nope", headers=_bearer(late[0])), 401)
    assert_problem(client.delete("/v1/jobs/nope", headers=_bearer(OTHER_KEY)), 404)


def test_a_missing_or_malformed_key_file_stops_the_start(settings, tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        create_app(_with(settings, api_keys_file=tmp_path / "typo"))
    plain = new_key("x")[0]
    bad = tmp_path / "keys"
    bad.write_text(f"# keys\n\nalice:{hash_key(KEY)}\n{plain}\n")
    with pytest.raises(KeyFileError, match="line 4 of") as refused:
        KeyRing([], bad)
    assert plain not in str(refused.value)
    bad.write_text(f"alice:{hash_key(KEY)}\nalice:{hash_key(OTHER_KEY)}\n")
    with pytest.raises(KeyFileError, match="used twice"):
        KeyRing([], bad)


def test_the_plain_key_is_never_in_logs_settings_or_error_responses(settings, tmp_path, caplog):
    key_file = tmp_path / "keys"
    plain, line = new_key("alice")
    append_line(key_file, line)
    wrong = new_key("mallory")[0]
    keyed = _with(settings, api_keys_file=key_file, protect_reads=True)
    for dump in (repr(keyed), str(keyed), keyed.model_dump_json(), str(keyed.model_dump())):
        assert plain not in dump
    responses = []
    with caplog.at_level(logging.DEBUG):
        client = _queued(keyed)
        responses += [
            client.get("/v1/jobs", headers=_bearer(plain)),
            client.get("/v1/jobs", headers=_bearer(wrong)),
            client.get("/", headers=_basic(wrong)),
            client.delete("/v1/jobs/nope", headers=_bearer(wrong)),
            # the browser's key lets the form in; it comes back (bad dataset) without the key typed
            client.post("/jobs/new", data={"dataset": "x", "api_key": wrong}, headers=_basic(plain)),
            client.post("/v1/jobs", content=b"{" + wrong.encode() * 10_000, headers=_bearer(plain)),
        ]
    assert [r.status_code for r in responses] == [200, 401, 401, 401, 422, 413]
    assert "refused" in caplog.text  # the refusals were logged, without the keys
    for secret in (plain, wrong):
        assert secret not in caplog.text
        assert all(secret not in r.text and secret not in str(r.headers) for r in responses)


# --- reads ----------------------------------------------------------------------------------


def test_reads_are_open_by_default_even_with_keys(settings):
    client = _queued(_keyed(settings, KEY))
    for path in ("/v1/jobs", "/v1/scores", "/", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_protected_reads_need_a_key_except_probes_and_assets(settings):
    client = _queued(_with(_keyed(settings, KEY), protect_reads=True))
    refused = client.get("/v1/jobs")
    assert_problem(refused, 401, contains="API key")
    assert refused.headers["www-authenticate"] == "Bearer"
    page = client.get("/datasets")
    assert_problem(page, 401)
    assert page.headers["www-authenticate"].startswith('Basic realm="zoorank"')  # the browser asks
    for path in ("/v1/jobs", "/v1/scores", "/v1/models", "/", "/scores", "/metrics", "/openapi.json"):
        assert_problem(client.get(path), 401)
        assert client.get(path, headers=_bearer(KEY)).status_code == 200, path
    assert client.get("/", headers=_basic(KEY)).status_code == 200
    assert_problem(client.get("/", headers=_basic(OTHER_KEY)), 401)
    assert_problem(client.get("/v1/jobs", headers=_bearer(OTHER_KEY)), 401)
    # probes stay open (metrics do not: their labels name models and scores)
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert client.get("/static/app/sort.js").status_code == 200


# --- rate limit -----------------------------------------------------------------------------


def test_the_token_bucket_refills_evenly_and_forgets_the_oldest_clients():
    clock = FakeClock()
    limiter = RateLimiter(6, clock=clock, max_clients=2)  # one token every 10 s, bursts of 6
    assert [limiter.acquire("a") for _ in range(6)] == [0.0] * 6
    assert limiter.acquire("a") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.acquire("a") == pytest.approx(6.0)  # refused calls take nothing
    clock.now += 6
    assert limiter.acquire("a") == 0.0 and limiter.acquire("a") > 0
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(7)][-2:] == [0.0, pytest.approx(10.0)]  # capped at 6
    assert limiter.acquire("b") == 0.0 and limiter.acquire("c") == 0.0  # "a" is dropped
    assert limiter.acquire("a") == 0.0


def test_rate_limit_per_key_and_per_address_answers_429_with_retry_after(settings):
    client = _queued(_with(_keyed(settings, KEY, OTHER_KEY), rate_limit=7))
    clock = FakeClock()
    client.app.state.rate_limiter.clock = clock
    assert all(client.get("/v1/jobs", headers=_bearer(KEY)).status_code == 200 for _ in range(7))
    refused = client.get("/v1/jobs", headers=_bearer(KEY))
    assert_problem(refused, 429, contains="ZOORANK_RATE_LIMIT")
    assert refused.headers["retry-after"] == "9"  # 60/7 = 8.6 s until the next token, rounded up
    assert client.get("/v1/jobs", headers=_bearer(OTHER_KEY)).status_code == 200  # its own bucket
    assert client.get("/v1/jobs").status_code == 200  # anonymous: this address's bucket
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    clock.now += 8.0
    assert client.get("/v1/jobs", headers=_bearer(KEY)).headers["retry-after"] == "1"
    clock.now += 0.6
    assert client.get("/v1/jobs", headers=_bearer(KEY)).status_code == 200

    assert all(client.get("/v1/jobs").status_code == 200 for _ in range(7))  # refilled to 7
    assert_problem(client.get("/v1/jobs"), 429)  # anonymous, from "testclient"
    elsewhere = TestClient(client.app, client=("192.0.2.7", 50000))
    assert elsewhere.get("/v1/jobs").status_code == 200


def test_rate_limit_zero_is_off(settings):
    client = _queued(_with(settings, rate_limit=0))
    assert client.app.state.rate_limiter is None
    assert all(client.get("/healthz").status_code == 200 for _ in range(3))
    assert all(client.get("/v1/scores").status_code == 200 for _ in range(3))


# --- CORS -----------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://ui.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


def test_cors_is_off_unless_origins_are_set(settings):
    closed = _queued(settings)
    unanswered = closed.options("/v1/jobs", headers=PREFLIGHT)
    assert unanswered.status_code == 405 and "access-control-allow-origin" not in unanswered.headers
    assert (
        "access-control-allow-origin"
        not in closed.get("/v1/jobs", headers={"Origin": "https://ui.example"}).headers
    )

    opened = _queued(_with(settings, cors_origins="https://ui.example,http://localhost:5173", rate_limit=1))
    preflight = opened.options("/v1/jobs", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    stranger = opened.options("/v1/jobs", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers
    origin = {"Origin": "https://ui.example"}
    assert (
        opened.get("/v1/jobs", headers=origin).headers["access-control-allow-origin"] == "https://ui.example"
    )
    limited = opened.get("/v1/jobs", headers=origin)  # a refusal a page's script can read
    assert (
        limited.status_code == 429 and limited.headers["access-control-allow-origin"] == "https://ui.example"
    )
    assert "retry-after" in limited.headers["access-control-expose-headers"].lower()
    with pytest.raises(ValidationError, match="no trailing"):
        _with(settings, cors_origins="https://ui.example/")


# --- request size ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(settings):
    client = _queued(_with(settings, max_request_kb=1))
    big = b"{" + b" " * 2000  # not JSON either: parsed, it would be a 422
    assert_problem(client.post("/v1/jobs", content=big), 413, contains="ZOORANK_MAX_REQUEST_KB")
    streamed = client.post("/v1/jobs", content=iter([b"{", b" " * 600, b" " * 600]))
    assert_problem(streamed, 413)
    assert_problem(client.post("/jobs/new", data={"dataset": "x" * 2000}), 413)  # forms too
    assert_problem(client.post("/v1/jobs", content=b"{" + b" " * 900), 422)  # within: parsed
    assert_problem(client.post("/v1/jobs", content=iter([b"{", b" " * 900])), 422)
    # uploads keep their own limit (MAX_UPLOAD_MB)
    archive = _zip({f"{c}/{i}.png": png for c in ("a", "b") for i, png in enumerate(_images(5, 40))})
    assert len(archive) > 1024
    assert client.post("/v1/datasets", files={"file": ("ab.zip", archive)}).status_code == 201


def test_a_streamed_body_is_counted_as_it_arrives_and_not_read_past_the_limit():
    chunks = [b"x" * 400] * 10
    read: list[int] = []
    sent: list[dict] = []
    reached: list[bool] = []

    async def receive() -> dict:
        read.append(len(read))
        return {"type": "http.request", "body": chunks[len(read) - 1], "more_body": len(read) < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    async def route(scope, receive, send) -> None:
        reached.append(True)

    middleware = AccessMiddleware(
        route, keys=KeyRing([]), limiter=None, protect_reads=False, max_request_bytes=1000
    )
    scope = {"type": "http", "method": "POST", "path": "/v1/jobs", "headers": [], "client": ("a", 1)}
    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["status"] == 413 and len(read) == 3 and not reached  # 1200 bytes > 1000: stop
