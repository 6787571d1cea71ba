"""Load on the job API (issue 13 §2): job submissions and status polls from concurrent clients
against ``zoorank serve`` + ``zoorank worker`` on PostgreSQL + Redis, all on 127.0.0.1.

    python -m benchmarks.load [--clients 50] [--submissions 500] [--polls 5000]
                              [--poll-interval 1.0] [--api-workers 1] [--commit REV]
                              [--label NAME] [--out benchmarks/results/load]

What it does, bounded in time and in what it touches:
1. A fresh database ``zoorank_load`` on 127.0.0.1:5432 (dropped at the end), Redis database 7
   (flushed before and after), a temporary ``ZOORANK_VAR_DIR``; ``zoorank db upgrade``, then
   ``zoorank serve`` (``--workers`` ``--api-workers``: API processes on one socket) and one
   ``zoorank worker --concurrency 1`` (niced, so that it takes the cores the API leaves idle).
2. One warm-up job, waited for (it fills the feature cache and the API's dataset index).
3. ``--clients`` clients (asyncio, one keep-alive HTTP/1.1 connection each), each: submit a
   job, poll it every ``--poll-interval`` seconds (``--polls`` / ``--submissions`` times),
   submit the next, until ``--submissions`` and ``--polls`` are reached (no request starts
   after ``--max-seconds``). Latency per request, errors (non-2xx or transport errors), CPU
   seconds per process tree and PostgreSQL connections opened during the load.
4. The workers then drain the queue (at most ``--drain`` seconds); the database is checked:
   every accepted submission has exactly one job row and exactly one row per requested model,
   no other job rows exist (lost, duplicated); and every job ended.

The pace: the service's own clients poll a job every second (the job page, ``zoorank jobs
submit --wait``), so 1 s is the default; ``--poll-interval 0.25`` is a stress at four times
that rate. The clients' starts are spread over one cycle (independent users); ``--spread 0``
starts them together, so that every cycle brings ``--clients`` submissions within a second.
The rate limit is off (every client is 127.0.0.1). ``--commit REV`` runs the service from a
commit (``git archive``), so that two commits are compared with one command.

The jobs: ``builtin:digits``, one model (``mobilenetv2_100@random``), one score (``logme``),
5 images per class at 32 px, no resamples. After the warm-up every job's features come from
the cache, so a job costs the worker a fraction of a second (LogME on 50 cached feature rows,
the result rows, the chord callback): the figures measure the API, with the worker busy
beside it as in production, not a forward pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
HOST = "127.0.0.1"
DATABASE = "zoorank_load"
ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
DATABASE_URL = f"postgresql+psycopg://postgres@{HOST}:5432/{DATABASE}"
REDIS_URL = f"redis://{HOST}:6379/7"
JOB: dict[str, Any] = {
    "dataset": "builtin:digits",
    "models": ["mobilenetv2_100@random"],
    "scores": ["logme"],
    "options": {
        "samples_per_class": 5,
        "input_size": 32,
        "tap_images_per_class": 0,
        "bootstrap_resamples": 0,
    },
}
TERMINAL = {"succeeded", "partial", "failed", "cancelled"}
PACKAGE_DIRS = {
    "zoorank_app": "app",
    "zoorank_workers": "workers",
    "zoorank_bench": "benchmarks",
    "zoorank_migrations": "migrations",
}


@dataclass
class Tally:
    submit: list[float] = field(default_factory=list)
    poll: list[float] = field(default_factory=list)
    started: float = 0.0  # perf_counter at the start of the load
    timeline: list[tuple[float, str, float]] = field(default_factory=list)  # (start, kind, seconds)
    accepted: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    submissions_left: int = 0
    polls_left: int = 0
    deadline: float = float("inf")  # perf_counter: no request starts after it

    def more(self) -> bool:
        return time.perf_counter() < self.deadline

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values`` in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 1)


def slowest(timeline: list[tuple[float, str, float]]) -> dict[str, Any]:
    """When the slowest 1 % of requests started (seconds into the load), by 1 s bucket: a tail
    that comes in bursts (a periodic task, a checkpoint) shows here."""
    worst = sorted(timeline, key=lambda t: t[2], reverse=True)[: max(1, len(timeline) // 100)]
    buckets: dict[int, int] = {}
    for start, _, _ in worst:
        buckets[int(start)] = buckets.get(int(start), 0) + 1
    return {
        "requests": len(worst),
        "by_second": dict(sorted(buckets.items())),
        "kinds": {kind: sum(1 for t in worst if t[1] == kind) for kind in ("submit", "poll")},
    }


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": round(max(values) * 1000, 1) if values else None,
        "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else None,
    }


# -- services -----------------------------------------------------------------------------


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql)


def _flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def _environment(var_dir: Path, source: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(source),
        "HF_HUB_OFFLINE": "1",
        "ZOORANK_VAR_DIR": str(var_dir),
        "ZOORANK_DATABASE_URL": DATABASE_URL,
        "ZOORANK_BROKER_URL": REDIS_URL,
        "ZOORANK_RESULT_BACKEND": REDIS_URL,
        "ZOORANK_DEVICE": "cpu",
        "ZOORANK_AUTO_MIGRATE": "false",  # one `zoorank db upgrade` before the processes start
        "ZOORANK_LOG_FORMAT": "text",
        # Every client is 127.0.0.1: a per-address limit would refuse most of the load.
        "ZOORANK_RATE_LIMIT": "0",
    }


def _zoorank(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoorank.cli", *args]


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def service(args: argparse.Namespace, var_dir: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """API + worker on a fresh database and Redis db; everything removed on the way out."""
    source = Path(args.source).resolve()
    env = _environment(var_dir, source)
    _admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    _admin(f"CREATE DATABASE {DATABASE}")
    _flush_redis()
    processes: list[subprocess.Popen[bytes]] = []
    logs = var_dir / "logs"
    logs.mkdir(parents=True)
    try:
        subprocess.run(_zoorank("db", "upgrade"), env=env, cwd=source, check=True, capture_output=True)
        serve = [
            *_zoorank("serve", "--host", HOST, "--port", str(args.port)),
            *(["--workers", str(args.api_workers)] if args.api_workers > 1 else []),
            *args.serve_arg,
        ]
        with (logs / "api.log").open("wb") as out:
            processes.append(
                subprocess.Popen(serve, env=env, cwd=source, stdout=out, stderr=subprocess.STDOUT)
            )
        worker = ["nice", "-n", "10", *_zoorank("worker", "--concurrency", str(args.worker_concurrency))]
        with (logs / "worker.log").open("wb") as out:
            processes.append(
                subprocess.Popen(worker, env=env, cwd=source, stdout=out, stderr=subprocess.STDOUT)
            )
        base = f"http://{HOST}:{args.port}"
        _wait_ready(base, processes, logs)
        yield base, {"api (zoorank serve)": processes[0].pid, "worker (zoorank worker)": processes[1].pid}
    finally:
        for process in processes:
            _stop(process)
        if args.keep_logs:
            shutil.copytree(logs, Path(args.keep_logs), dirs_exist_ok=True)
        _flush_redis()
        _admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def _wait_ready(
    base: str, processes: list[subprocess.Popen[bytes]], logs: Path, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            tails = {f.name: f.read_text(errors="replace")[-2000:] for f in logs.iterdir()}
            raise RuntimeError(f"a service process exited at start: {tails}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base}/readyz did not answer 200 within {timeout:.0f} s")


# -- load ---------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection, written by hand on asyncio streams: a load generator
    that costs the shared cores a small fraction of what the server spends (httpx's async client
    took as much CPU as the API it measured)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        try:
            status_line = await self.reader.readuntil(b"\r\n")
            headers: dict[str, str] = {}
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding") == "chunked":
                payload = b""
                while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                    payload += (await self.reader.readexactly(size + 2))[:-2]
                await self.reader.readuntil(b"\r\n")
            else:
                payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError)


async def client(base: str, tally: Tally, polls_per_job: int, interval: float, spread: float) -> None:
    host, port = base.removeprefix("http://").split(":")
    connection = Connection(host, int(port))
    body = json.dumps(JOB).encode()
    # Independent users: the starts are spread over one cycle (a submission and its polls), or
    # every client would submit within the same second, cycle after cycle (a burst of
    # --clients submissions at once; what that costs shows at --spread 0).
    await asyncio.sleep(random.uniform(0, interval + spread * polls_per_job * interval))
    while (tally.submissions_left > 0 or tally.polls_left > 0) and tally.more():
        job_id = None
        if tally.submissions_left > 0:
            tally.submissions_left -= 1
            began = time.perf_counter()
            try:
                status, payload = await asyncio.wait_for(connection.request("POST", "/v1/jobs", body), 60)
                tally.submit.append(time.perf_counter() - began)
                tally.timeline.append((began - tally.started, "submit", tally.submit[-1]))
                if status == 202:
                    job_id = json.loads(payload)["id"]
                    tally.accepted.append(job_id)
                else:
                    tally.error(f"submit {status}")
            except TRANSPORT_ERRORS as exc:
                connection.close()
                tally.error(f"submit {type(exc).__name__}")
        if job_id is None:
            job_id = random.choice(tally.accepted) if tally.accepted else None
        for _ in range(polls_per_job):
            if tally.polls_left <= 0 or job_id is None or not tally.more():
                break
            tally.polls_left -= 1
            await asyncio.sleep(interval)
            began = time.perf_counter()
            try:
                status, payload = await asyncio.wait_for(connection.request("GET", f"/v1/jobs/{job_id}"), 60)
                tally.poll.append(time.perf_counter() - began)
                tally.timeline.append((began - tally.started, "poll", tally.poll[-1]))
                if status != 200:
                    tally.error(f"poll {status}")
            except TRANSPORT_ERRORS as exc:
                connection.close()
                tally.error(f"poll {type(exc).__name__}")
    connection.close()


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


async def sample_cpu(pids: dict[str, int], samples: list[dict[str, float]], stop: asyncio.Event) -> None:
    """Every second: CPU seconds used in that second by each process tree, and by everything
    else on the machine (other people's work): what a slow second was spent on."""
    last, last_busy = cpu_seconds(pids), machine_busy_seconds()
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        now, busy = cpu_seconds(pids), machine_busy_seconds()
        used = {k: round(now[k] - last[k], 2) for k in now}
        used["everything else"] = round(busy - last_busy - sum(used.values()), 2)
        samples.append(used)
        last, last_busy = now, busy


async def load(
    base: str, args: argparse.Namespace, pids: dict[str, int]
) -> tuple[Tally, float, list[dict[str, float]]]:
    tally = Tally(submissions_left=args.submissions, polls_left=args.polls)
    polls_per_job = -(-args.polls // args.submissions)
    samples: list[dict[str, float]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_cpu(pids, samples, stop))
    began = tally.started = time.perf_counter()
    tally.deadline = began + args.max_seconds
    random.seed(args.seed)
    await asyncio.gather(
        *(client(base, tally, polls_per_job, args.poll_interval, args.spread) for _ in range(args.clients))
    )
    stop.set()
    await sampler
    return tally, time.perf_counter() - began, samples


def warm_up(base: str, timeout: float = 300.0) -> float:
    """One job, waited for: the feature cache and the API's first imports and dataset index."""
    began = time.perf_counter()
    response = httpx.post(f"{base}/v1/jobs", json=JOB, timeout=120)
    response.raise_for_status()
    job_id = response.json()["id"]
    while time.perf_counter() - began < timeout:
        status = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()["status"]
        if status in TERMINAL:
            if status != "succeeded":
                raise RuntimeError(f"warm-up job {job_id} ended {status}")
            return time.perf_counter() - began
        time.sleep(0.5)
    raise RuntimeError(f"warm-up job {job_id} did not finish in {timeout:.0f} s")


def drain(accepted: list[str], timeout: float) -> tuple[float, dict[str, int]]:
    """Wait until every accepted job ended (or ``timeout``); returns the seconds and statuses."""
    import psycopg

    began = time.perf_counter()
    statuses: dict[str, int] = {}
    with psycopg.connect(DATABASE_URL.replace("+psycopg", ""), autocommit=True) as connection:
        while True:
            rows = connection.execute(
                "SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status", (accepted,)
            ).fetchall()
            statuses = {status: count for status, count in rows}
            if sum(c for s, c in statuses.items() if s in TERMINAL) == len(accepted):
                break
            if time.perf_counter() - began > timeout:
                break
            time.sleep(1.0)
    return time.perf_counter() - began, statuses


def check_database(accepted: list[str], warm_up_jobs: int) -> dict[str, int]:
    """Jobs lost (accepted, no row), duplicated (a row twice, or rows nobody was told of) and
    model rows wrong (not exactly one per requested model)."""
    import psycopg

    with psycopg.connect(DATABASE_URL.replace("+psycopg", ""), autocommit=True) as connection:
        rows: dict[str, Any] = dict(connection.execute("SELECT id, models FROM jobs").fetchall())
        per_job = connection.execute(
            "SELECT job_id, model, count(*) FROM job_models GROUP BY job_id, model"
        ).fetchall()
    models: dict[str, dict[str, int]] = {}
    for job_id, model, count in per_job:
        models.setdefault(job_id, {})[model] = count
    wanted = JOB["models"]
    return {
        "accepted": len(accepted),
        "accepted_distinct": len(set(accepted)),
        "job_rows": len(rows),
        "lost": sum(1 for job_id in set(accepted) if job_id not in rows),
        "duplicated": (len(accepted) - len(set(accepted)))
        + max(0, len(rows) - warm_up_jobs - len(set(accepted))),
        "model_rows_wrong": sum(
            1 for job_id in set(accepted) if job_id in rows and models.get(job_id) != {m: 1 for m in wanted}
        ),
    }


def gc_pauses(base: str) -> dict[str, dict[str, float]]:
    """The API's garbage-collector passes so far, from its ``/metrics``, by generation:
    passes, seconds, and passes that took over 50 ms (none: a commit without the metric)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    pauses: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("zoorank_gc_pause_seconds"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        labels = dict(part.split("=", 1) for part in name_labels[name_labels.index("{") + 1 : -1].split(","))
        generation = pauses.setdefault(labels["generation"].strip('"'), {})
        if name_labels.startswith("zoorank_gc_pause_seconds_count"):
            generation["passes"] = float(value)
        elif name_labels.startswith("zoorank_gc_pause_seconds_sum"):
            generation["seconds"] = float(value)
        elif labels.get("le") == '"0.05"':
            generation["within_50ms"] = float(value)
    return pauses


def gc_during(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """What the collector did between two :func:`gc_pauses` readings."""
    during: dict[str, Any] = {}
    for generation, now in after.items():
        then = before.get(generation, {})
        passes = now["passes"] - then.get("passes", 0.0)
        over = passes - (now["within_50ms"] - then.get("within_50ms", 0.0))
        during[generation] = {
            "passes": int(passes),
            "seconds": round(now["seconds"] - then.get("seconds", 0.0), 3),
            "over_50ms": int(over),
        }
    return during


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, name, CPU seconds used so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree, by every ``postgres`` and
    ``redis-server`` process on the machine (shared with whoever else uses them), and by
    this process (the clients)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    used: dict[str, float] = {}
    for label, root in roots.items():
        tree, stack = [], [root]
        while stack:
            pid = stack.pop()
            tree.append(pid)
            stack.extend(children.get(pid, []))
        used[label] = sum(table[pid][2] for pid in tree if pid in table)
    for name in ("postgres", "redis-server"):
        used[f"{name} (all)"] = sum(cpu for _, n, cpu in table.values() if n == name)
    times = os.times()
    used["load clients (this process)"] = times.user + times.system
    return used


def database_sessions() -> int:
    """Connections opened to the load database so far (PostgreSQL's own count)."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        row = connection.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
    return int(row[0]) if row else 0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def export(revision: str, target: Path) -> tuple[Path, str]:
    """The tree of ``revision`` written to ``target`` (``git archive``); and its short hash."""
    target.mkdir(parents=True)
    short = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "archive", short], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    # A tree with import names mapped to its folders (pyproject's package-dir): without these
    # links, zoorank_app & co. would be imported from the editable install (the working tree).
    for name, folder in PACKAGE_DIRS.items():
        if (target / folder).is_dir() and not (target / name).exists():
            (target / name).symlink_to(folder)
    return target, short


def commit(source: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=source, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--submissions", type=int, default=500)
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds a client waits between polls"
    )
    parser.add_argument(
        "--spread", type=float, default=1.0, help="client starts spread over this many cycles (0: lockstep)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=8642)
    parser.add_argument("--worker-concurrency", type=int, default=1)
    parser.add_argument(
        "--api-workers", type=int, default=1, help="API processes (zoorank serve --workers; 1: one process)"
    )
    parser.add_argument("--max-seconds", type=float, default=600.0, help="no request starts after this long")
    parser.add_argument("--drain", type=float, default=600.0, help="at most this long for the queue to empty")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="an extra argument to `zoorank serve`"
    )
    parser.add_argument(
        "--commit",
        default=None,
        help="run the service from this commit of the repository (exported with git archive); "
        "default: the working tree",
    )
    parser.add_argument("--label", default="", help="a name for this run in the output")
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    parser.add_argument("--keep-logs", default=None, help="copy the API and worker logs to this folder")
    args = parser.parse_args(argv)
    if args.submissions < 1 or args.clients < 1 or args.api_workers < 1:
        parser.error("--submissions, --clients and --api-workers must be at least 1")
    command = "python -m benchmarks.load " + " ".join(argv if argv is not None else sys.argv[1:])
    # A stop (timeout, kill) still stops the service processes and drops the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    before = load_average()
    var_dir = Path(tempfile.mkdtemp(prefix="zoorank-load-"))
    try:
        args.source, revision = (
            export(args.commit, var_dir / "source") if args.commit else (REPO, commit(REPO))
        )
        with service(args, var_dir) as (base, pids):
            warm = warm_up(base)
            cpu_before, sessions_before = cpu_seconds(pids), database_sessions()
            gc_before = gc_pauses(base)
            tally, seconds, samples = asyncio.run(load(base, args, pids))
            cpu_after, sessions_after = cpu_seconds(pids), database_sessions()
            gc_after = gc_pauses(base)
            during = load_average()
            drained, statuses = drain(tally.accepted, args.drain)
            checks = check_database(tally.accepted, warm_up_jobs=1)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    requests = len(tally.submit) + len(tally.poll)
    result = {
        "label": args.label or f"{revision}, poll every {args.poll_interval:g} s",
        "command": command,
        "commit": revision,
        "cpu_count": os.cpu_count(),
        "load_average_before": before,
        "load_average_at_end_of_load": during,
        "clients": args.clients,
        "api_processes": args.api_workers,
        "poll_interval_s": args.poll_interval,
        "start_spread_cycles": args.spread,
        "job": JOB,
        "warm_up_s": round(warm, 2),
        "load_seconds": round(seconds, 1),
        "requests_per_second": round(requests / seconds, 1),
        "cpu_seconds_during_load": {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_after},
        "database_connections_opened_during_load": sessions_after - sessions_before,
        "api_gc_during_load": gc_during(gc_before, gc_after),
        "submit": summary(tally.submit),
        "poll": summary(tally.poll),
        "slowest_1_percent": slowest(tally.timeline),
        "cpu_seconds_per_second": samples,
        "errors": tally.errors,
        "unfinished": {"submissions": tally.submissions_left, "polls": tally.polls_left},
        "database": checks,
        "drain_seconds": round(drained, 1),
        "job_statuses": statuses,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        write(Path(args.out), result)
    ok = (
        not tally.errors
        and tally.submissions_left <= 0
        and tally.polls_left <= 0
        and checks["lost"] == checks["duplicated"] == checks["model_rows_wrong"] == 0
    )
    return 0 if ok else 1


def write(out: Path, result: dict[str, Any]) -> None:
    """Add the run to ``OUT.json`` (replacing an earlier run with the same label) and put a
    table of every run in ``OUT.md`` (between its markers: the text around them stays)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_suffix(".json")
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs = [run for run in runs if run["label"] != result["label"]] + [result]
    path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    markdown = out.with_suffix(".md")
    text = markdown.read_text() if markdown.exists() else ""
    begin, end = "<!-- runs: written by benchmarks/load.py -->\n", "<!-- /runs -->\n"
    if begin in text and end in text:  # the table is replaced, the text around it kept
        text = text[: text.index(begin)] + begin + table(runs) + text[text.index(end) :]
    else:
        text = begin + table(runs) + end
    markdown.write_text(text)


def _slow_gc(run: dict[str, Any]) -> str:
    gc = run.get("api_gc_during_load")
    if not gc:
        return "not measured"
    return str(sum(generation["over_50ms"] for generation in gc.values()))


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| run | commit | API processes | poll every | req/s | submit p50 / p99 ms | poll p50 / p99 ms "
        "| errors | lost | duplicated | API CPU s | API GC passes > 50 ms | DB connections opened "
        "| load average before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        submit, poll, db = run["submit"], run["poll"], run["database"]
        lines.append(
            f"| {run['label']} | {run['commit']} | {run.get('api_processes', 1)} "
            f"| {run['poll_interval_s']} s | {run['requests_per_second']} "
            f"| {submit['p50_ms']} / {submit['p99_ms']} | {poll['p50_ms']} / {poll['p99_ms']} "
            f"| {sum(run['errors'].values())} | {db['lost']} | {db['duplicated']} "
            f"| {run['cpu_seconds_during_load'].get('api (zoorank serve)')} | {_slow_gc(run)} "
            f"| {run['database_connections_opened_during_load']} | {run['load_average_before'][0]} |"
        )
    commands = "\n".join(f"* {run['label']}: `{run['command']}`" for run in runs)
    return "\n".join(lines) + "\n\nCommands:\n\n" + commands + "\n"


if __name__ == "__main__":
    sys.exit(main())
