"""What the broker holds, read without consuming anything: how the sweeper (:mod:`app.sweeper`)
tells work that is lost from work that waits behind other work.

* :meth:`BrokerContents.instance`: an id of the broker's running process (Redis ``run_id``);
  another id means the broker restarted, and a Redis that keeps nothing on disk lost every
  message queued before;
* :meth:`BrokerContents.waiting`: the work (:data:`Work`) of every message that some worker will
  still run: in the queues, or reserved by a worker and not yet acknowledged (Redis keeps those
  in its ``unacked`` hash until the ack, or until the visibility timeout puts them back). For the
  embedded filesystem broker, the message files in its folder (a worker deletes a file when it
  takes the message).

Messages are matched by what they run (task name and arguments), not by task id: a chain's
later task, a re-send and a late duplicate carry other ids for the same work. Each answers None
where the transport cannot tell (RabbitMQ's queues cannot be read without consuming them; a
broker that does not answer).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from typing import Any

from celery import Celery
from kombu import Connection
from zoorank_app.celery_client import QUEUES
from zoorank_app.settings import Settings
from zoorank_app.task_names import CONFIRM_UNIT, EXTRACT_MODEL, RANK_MODEL

log = logging.getLogger(__name__)

# ("model", job_id, model) or ("unit", confirmation_id, model, rung)
Work = tuple[Any, ...]
# The tasks that run a model of a ranking job (its two stages) and a unit of a confirmation.
_WORK_OF_TASK = {
    EXTRACT_MODEL: "model",
    RANK_MODEL: "model",
    CONFIRM_UNIT: "unit",
}


def model_work(job_id: str, model: str) -> Work:
    return ("model", job_id, model)


def unit_work(confirmation_id: str, model: str, rung: int) -> Work:
    return ("unit", confirmation_id, model, rung)


def message_work(payload: dict[str, Any]) -> Work | None:
    """The work one message runs (kombu's JSON envelope of a Celery protocol-2 message), or
    None for any other task or a message that cannot be read."""
    try:
        kind = _WORK_OF_TASK.get(payload["headers"]["task"])
        if kind is None:
            return None
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        work = (kind, *json.loads(body)[0])
        hash(work)  # arguments of our tasks are strings and numbers; anything else is not ours
        return work
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _works(payloads: Iterable[str | bytes]) -> set[Work]:
    found = set()
    for raw in payloads:
        try:
            payload = json.loads(raw)
        except ValueError:
            continue
        # Redis' unacked hash holds [message, exchange, routing key]
        work = message_work(payload[0] if isinstance(payload, list) and payload else payload)
        if work is not None:
            found.add(work)
    return found


def _channel(connection: Connection) -> Any:
    """The connection's channel, failing within seconds when the broker does not answer (the
    default retries for longer than a sweep should wait)."""
    connection.ensure_connection(max_retries=1, timeout=2)
    return connection.default_channel


class BrokerContents:
    """Reads the broker of ``settings`` through ``celery``'s connection pool."""

    def __init__(self, celery: Celery, settings: Settings) -> None:
        self.celery = celery
        self.settings = settings
        url = settings.broker_url
        self.transport = (
            "redis" if url.startswith(("redis://", "rediss://")) else url.partition("://")[0] or "unknown"
        )

    def instance(self) -> str | None:
        """The Redis server's ``run_id`` (new at every start); None for other brokers (the
        filesystem broker's messages outlive a restart) or when Redis does not answer."""
        if self.transport != "redis":
            return None
        try:
            with self.celery.connection_for_read() as connection:
                return str(_channel(connection).client.info("server")["run_id"])
        except Exception as exc:
            log.warning("the broker's run_id is unknown: %s", exc)
            return None

    def waiting(self) -> set[Work] | None:
        """The work of every message waiting in a queue or reserved by a worker; None where
        the transport cannot list them."""
        try:
            if self.transport == "redis":
                return self._redis_waiting()
            if self.transport == "filesystem":
                return self._folder_waiting()
        except Exception as exc:
            log.warning("the broker's messages are unknown: %s", exc)
        return None

    def _redis_waiting(self) -> set[Work]:
        with self.celery.connection_for_read() as connection:
            channel = _channel(connection)
            # kombu keeps a queue's messages of priority p > 0 in the list QUEUE + sep + p
            lists = [
                f"{queue}{channel.sep}{p}" if p else queue for queue in QUEUES for p in channel.priority_steps
            ]
            # One round trip, not one snapshot: a worker pops a message from its list and then
            # records it in the unacked hash, so the hash is read last.
            with channel.client.pipeline(transaction=False) as pipe:
                for key in lists:
                    pipe.lrange(key, 0, -1)
                pipe.hvals(channel.unacked_key)
                answers = pipe.execute()
        return _works(raw for answer in answers for raw in answer)

    def _folder_waiting(self) -> set[Work]:
        folder = self.settings.broker_folder / "in"  # app.celery_client's data folders
        payloads = []
        for path in folder.glob("*.msg"):
            try:
                payloads.append(path.read_bytes())
            except OSError:  # taken by a worker meanwhile
                continue
        return _works(payloads)
