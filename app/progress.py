"""How far a job has come and when it will end: the one ETA rule (the work left times the
seconds one unit of work took so far), used by ranking and validation jobs and by the
confirmation stage (:func:`zoorank_app.confirmations.progress`), and the ETA in words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from zoorank.states import TERMINAL


def eta_seconds(done: float, total: float, seconds_per_unit: float | None) -> float | None:
    """Seconds left at the pace measured so far: the units not done times ``seconds_per_unit``
    (None while no pace is known)."""
    if seconds_per_unit is None or not math.isfinite(seconds_per_unit):
        return None
    return max(0.0, (total - done) * seconds_per_unit)


def duration(seconds: float | None) -> str:
    """A duration in words for an ETA: "about 40 s", "about 3 min", "about 1.5 h"."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def validation_step(status: str, done: int, total: int) -> str:
    """What a model of a validation job is doing, from its row: ``images_done`` of
    ``images_total`` counts its steps (scoring, when scores were asked for, then training)."""
    if status in TERMINAL:
        return status
    scoring = total > 1 and done == 0
    if status == "running":
        return "scoring" if scoring else "training"
    return "scored; waiting to train" if done > 0 else "waiting"


def job_progress(
    *, kind: str, status: str, started_at: datetime | None, models: Sequence[Any], now: datetime
) -> dict[str, Any]:
    """The whole job's progress: units done of the total (a ranking's models; a validation's
    steps, each model scored then trained), the fraction, the time elapsed since the job
    started and the ETA at the elapsed time per finished unit (unknown until one has finished).
    ``models``: the job's model rows (``status``, ``images_done``, ``images_total``)."""
    steps = kind == "validation" and any(m.images_total for m in models)
    if steps:
        done = sum(m.images_total if m.status in TERMINAL else m.images_done for m in models)
        total = sum(m.images_total for m in models)
    else:
        done = sum(m.status in TERMINAL for m in models)
        total = len(models)
    unit = "steps" if steps else "models"
    elapsed = max(0.0, (now - started_at).total_seconds()) if started_at is not None else None
    ended = status in TERMINAL
    eta = 0.0 if ended else eta_seconds(done, total, elapsed / done if done and elapsed else None)
    text = f"{done} of {total} {unit} done"
    if not ended:
        text += f"; {duration(eta)} left" if eta is not None else "; ETA after the first finishes"
    return {
        "done": done,
        "total": total,
        "unit": unit,
        "fraction": min(1.0, done / total) if total else (1.0 if ended else 0.0),
        "elapsed_seconds": elapsed,
        "eta_seconds": eta,
        "text": text,
    }
