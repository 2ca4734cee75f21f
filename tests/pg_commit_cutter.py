"""A TCP proxy on loopback in front of PostgreSQL that can lose the answer to a COMMIT.

While ``cutting`` is set, a connection that sends ``COMMIT`` has it forwarded to the server, waits for the
server's answer (so the transaction did commit), and is then closed without that answer reaching the client:
the client sees a lost connection at commit, the case where it cannot know whether its transaction landed.
Everything else is forwarded byte for byte.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

# psycopg commits with a simple-protocol Query message: 'Q', its length (4 + 7), "COMMIT\0".
COMMIT_MESSAGE = b"Q\x00\x00\x00\x0bCOMMIT\x00"


@dataclass
class CommitCutter:
    upstream_port: int
    port: int = 0
    cutting: bool = False
    commits_cut: int = 0
    _listener: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its port replaced by the proxy's."""
        return database_url.replace(f":{self.upstream_port}/", f":{self.port}/")

    def serve(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            link = _Link(client, server)
            threading.Thread(target=self._client_to_server, args=(link,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(link,), daemon=True).start()

    def _client_to_server(self, link: _Link) -> None:
        while data := link.receive(link.client):
            if self.cutting and COMMIT_MESSAGE in data:
                link.drop_next_answer.set()
            if not link.send(link.server, data):
                break
        link.close()

    def _server_to_client(self, link: _Link) -> None:
        while data := link.receive(link.server):
            if link.drop_next_answer.is_set():
                with self._lock:
                    self.commits_cut += 1
                break
            if not link.send(link.client, data):
                break
        link.close()


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    drop_next_answer: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def receive(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    @staticmethod
    def send(sock: socket.socket, data: bytes) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            return False
        return True

    def close(self) -> None:
        for sock in (self.client, self.server):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@contextmanager
def commit_cutter(upstream_port: int) -> Iterator[CommitCutter]:
    cutter = CommitCutter(upstream_port)
    cutter.serve()
    try:
        yield cutter
    finally:
        cutter.close()
