"""HTTP plumbing of the rehearsal server: a threaded HTTP/1.1 server that can be shut down
while requests hang, and a responder for JSON bodies and chunked server-sent-event streams.

Streams use chunked transfer encoding so that a deliberately cut stream looks broken to the
client (no terminating chunk) rather than like a short but complete answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class App(Protocol):
    def handle(self, handler: Handler) -> None: ...


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # joined in server_close(): nothing outlives close()
    block_on_close = True
    allow_reuse_address = False

    def __init__(self, app: App) -> None:
        self.app = app
        self.live: set[socket.socket] = set()
        self.live_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.live_lock:
            self.live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.live_lock:
            self.live.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-stream all the time (a killed CLI, a cut we caused): not news.
        pass

    def wake_all(self) -> None:
        with self.live_lock:
            sockets = list(self.live)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HTTPServer
    timeout = 120  # an idle keep-alive connection ends by itself eventually

    def _dispatch(self) -> None:
        self.server.app.handle(self)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the recording is the log


class Responder:
    """How the handler answers: headers first, then a body or a list of events."""

    def __init__(self, handler: Handler) -> None:
        self.h = handler
        self.sent = False

    def json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        self.h.send_response(status)
        self.h.send_header("content-type", "application/json")
        self.h.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.h.send_header(name, value)
        self.h.end_headers()
        self.sent = True
        if self.h.command != "HEAD":
            self.h.wfile.write(data)
        self.h.wfile.flush()

    def events(self, events: list[bytes], cut_after: int | None = None) -> None:
        self.h.send_response(200)
        self.h.send_header("content-type", "text/event-stream")
        self.h.send_header("cache-control", "no-cache")
        self.h.send_header("transfer-encoding", "chunked")
        self.h.end_headers()
        self.sent = True
        for index, event in enumerate(events):
            if cut_after is not None and index >= cut_after:
                self.abort()
                return
            self.h.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.h.wfile.flush()
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()

    def partial_json(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.h.send_response(200)
        self.h.send_header("content-type", "application/json")
        self.h.send_header("content-length", str(len(data)))
        self.h.end_headers()
        self.sent = True
        self.h.wfile.write(data[: len(data) // 2])
        self.abort()

    def abort(self) -> None:
        self.h.close_connection = True
        with contextlib.suppress(OSError):
            self.h.wfile.flush()
            self.h.connection.shutdown(socket.SHUT_RDWR)
