"""CSV answers of the API: when a request asks for one (``?format=csv``, or ``Accept: text/csv``
preferred to JSON), and the response that carries a table of :mod:`zoorank.export`."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from fastapi.responses import Response

from zoorank.export import Table, to_csv

CSV = "text/csv"
FORMAT_HELP = "csv: the table of zoorank.export (also asked for by Accept: text/csv); json: the default"
# The 200 answer's second media type, in the OpenAPI schema (the first is the JSON model's).
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON, or with format=csv (or Accept: text/csv) a CSV table whose columns the "
        "README's Export section lists",
        "content": {CSV: {"schema": {"type": "string"}}},
    }
}


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


def _quality(accept: str, media_type: str) -> float | None:
    """The q of ``media_type`` as ``accept`` names it exactly (None when it does not)."""
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        if kind.lower() == media_type:
            for param in params:
                match = re.fullmatch(r"q\s*=\s*([0-9.]+)", param)
                if match:
                    try:
                        return float(match.group(1))
                    except ValueError:
                        return 0.0
            return 1.0
    return None


def wants_csv(accept: str | None, format: ExportFormat | None) -> bool:
    """CSV when ``format`` says so, or, with no ``format``, when the Accept header names
    ``text/csv`` with a higher q than ``application/json``, or CSV and not JSON (a tie: JSON)."""
    if format is not None:
        return format == ExportFormat.CSV
    accept = accept or ""
    csv_q = _quality(accept, CSV)
    if not csv_q:
        return False
    json_q = _quality(accept, "application/json")
    return json_q is None or csv_q > json_q


def csv_response(table: Table, filename: str) -> Response:
    """The table as a download named ``filename``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", filename)
    return Response(
        to_csv(table),
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )
