"""The HTTP client of a running zoorank server: its URL and key from the settings, and one error
line with its exit code for a server that cannot be reached or refuses a request."""

from __future__ import annotations

from typing import Any

from zoorank.cli.options import fail, refused
from zoorank.settings import ClientSettings

UNREACHABLE_EXIT = 3  # the server could not be reached (2: the request was refused, 1: it failed)


def server_client(given: str | None) -> Any:
    """An HTTP client for ``--server`` or ``ZOORANK_SERVER``, with ``ZOORANK_API_KEY`` as the
    bearer key when set (:class:`zoorank.settings.ClientSettings`). A server that cannot be
    reached ends the command with one line and exit code 3."""
    import httpx
    from pydantic import ValidationError

    try:
        settings = ClientSettings.load(given)
    except ValidationError as exc:
        fail(refused(exc))
        raise  # unreachable: fail exits
    server = settings.server

    class Client(httpx.Client):
        base = server  # for links to the server's pages

        def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
            try:
                return super().request(*args, **kwargs)
            except httpx.TransportError as exc:
                fail(
                    f"cannot reach the zoorank server at {server} ({type(exc).__name__}: {exc});"
                    " start one with `zoorank run`, or pass --server / ZOORANK_SERVER",
                    code=UNREACHABLE_EXIT,
                )
                raise  # unreachable: fail exits

    key = settings.api_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(base_url=server, headers=headers, timeout=60)


def answer(response: Any, expected: int | tuple[int, ...] = 200) -> Any:
    """The JSON body, or the problem's detail printed and exit 1 (4xx: 2)."""
    codes = expected if isinstance(expected, tuple) else (expected,)
    if response.status_code in codes:
        return response.json()
    try:
        body = response.json()
        detail = body.get("detail") or body
        field = f" (field {body['field']})" if body.get("field") else ""
    except ValueError:
        detail, field = response.text[:300], ""
    fail(f"{response.status_code}: {detail}{field}", code=2 if 400 <= response.status_code < 500 else 1)
