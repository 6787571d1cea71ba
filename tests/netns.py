"""Several hosts on one machine, for tests of what crosses a network: each host is a network
namespace joined to this one by a veth pair (iproute2), with its own address; services that
listen on 127.0.0.1 here are reached through small TCP forwarders on each link's address.

Cutting a host (its link down) is what a host crash or a network partition looks like to the
rest of the system: its connections stop answering, nothing is closed cleanly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"zrp{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass(frozen=True)
class Host:
    """One namespace: ``address`` is its own, ``gateway`` this machine's end of its link."""

    name: str
    namespace: str
    inner: str  # the veth end inside the namespace
    address: str
    gateway: str

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        _ip("-n", self.namespace, "link", "set", "dev", self.inner, "down")

    def restore(self) -> None:
        _ip("-n", self.namespace, "link", "set", "dev", self.inner, "up")


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    """``count`` hosts on subnets 10.213.N.0/24 (this machine .1, the host .2); removed after."""
    tag = uuid.uuid4().hex[:6]
    made: list[Host] = []
    try:
        for n in range(1, count + 1):
            host = Host(
                name=f"h{n}",
                namespace=f"zr{tag}h{n}",
                inner=f"zr{tag}i{n}",
                address=f"10.213.{n}.2",
                gateway=f"10.213.{n}.1",
            )
            outer = f"zr{tag}o{n}"
            _ip("netns", "add", host.namespace)
            made.append(host)
            _ip("link", "add", outer, "type", "veth", "peer", "name", host.inner)
            _ip("link", "set", host.inner, "netns", host.namespace)
            _ip("addr", "add", f"{host.gateway}/24", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.inner)
            _ip("-n", host.namespace, "link", "set", host.inner, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:  # deleting the namespace deletes its veth pair too
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", host.namespace)


class Forwarder:
    """Accepts on ``(listen, port)`` and relays each connection to ``(target, port)``."""

    def __init__(
        self, listen: str, port: int, target: str = "127.0.0.1", target_port: int | None = None
    ) -> None:
        self.server = socket.create_server((listen, port), reuse_port=False)
        self.target = (target, target_port or port)
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.server.close()
