"""The scripted model server: one HTTP server on 127.0.0.1 that speaks all four model APIs.

Every run gets a URL prefix ``/r/AGENT/STEP`` in front of the path its CLI uses (all four CLIs
keep a path in their base URL), so the server knows who is asking without trusting headers.
Shutdown is deterministic: a hung or idle keep-alive connection is woken by shutting its
socket down, then every handler thread is joined before :meth:`close` returns.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from orchestrator_nb.errors import RehearsalError

from ..observe.redact import clip
from . import anthropic, gemini, openai_chat, openai_responses
from .context import Exchange
from .httpd import Handler, HTTPServer, Responder
from .recording import RecordedRequest, safe_headers, safe_query, scrub, secret_values
from .scenario import AGENTS, DEFAULT_MODELS, Fault, Scenario
from .script import Planned, plan

NO_STEP = "-"
_PREFIX = re.compile(r"^/r/([^/]+)/([^/]+)(/.*)?$")
_GEMINI = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(\w+)$")


def prefix(agent: str, step: str | None) -> str:
    """The URL path prefix that identifies a run: ``/r/AGENT/STEP``."""
    encoded = NO_STEP if step is None else quote(step, safe="")
    if step == NO_STEP:
        encoded = "%2D"  # a step literally named "-" must not read as "no step"
    return f"/r/{quote(agent, safe='')}/{encoded}"


@dataclass(frozen=True)
class _Protocol:
    name: str
    parse: Callable[[Mapping[str, Any], str, str | None], Exchange]
    stream: Callable[[Planned, str], list[bytes]]
    complete: Callable[[Planned, str], dict[str, Any]]
    error: Callable[[int, str, float | None], dict[str, Any]]


_ANTHROPIC = _Protocol(
    "anthropic", anthropic.parse, anthropic.stream, anthropic.complete, anthropic.error
)
_RESPONSES = _Protocol(
    "openai-responses",
    openai_responses.parse,
    openai_responses.stream,
    openai_responses.complete,
    openai_responses.error,
)
_CHAT = _Protocol(
    "openai-chat", openai_chat.parse, openai_chat.stream, openai_chat.complete, openai_chat.error
)
_NATIVE_AGENT = {"anthropic": "claude", "openai-responses": "codex", "openai-chat": "copilot"}


class ScriptedModelServer:
    """Serves one scenario on ``http://127.0.0.1:PORT`` from a background thread."""

    def __init__(self, scenario: Scenario, *, secrets: Iterable[str] = ()) -> None:
        self.scenario = scenario
        # Where relative paths point when a request does not state its working directory:
        # per run (agent, step) first, then one for the whole rehearsal.
        self.workspace: str | None = None
        self.run_workspaces: dict[tuple[str, str | None], str] = {}
        self._secrets = {s for s in secrets if s}
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._fault_counts: dict[tuple[int, str, str | None], int] = {}
        self._stopping = threading.Event()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        if self._httpd is not None:
            raise RehearsalError("the rehearsal server is already running")
        try:
            self._httpd = HTTPServer(self)
        except OSError as exc:
            raise RehearsalError(
                f"cannot listen on 127.0.0.1: {exc}", hint="is the loopback interface up?"
            ) from exc
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="rehearsal-server",
            daemon=True,
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RehearsalError("the rehearsal server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.wake_all()
        httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    # ------------------------------------------------------------------ requests

    def handle(self, h: Handler) -> None:
        split = urlsplit(h.path)
        match = _PREFIX.match(split.path)
        agent, step, rest = "unknown", None, split.path
        if match:
            agent = unquote(match.group(1))
            raw_step = match.group(2)
            step = None if raw_step == NO_STEP else unquote(raw_step)
            rest = match.group(3) or "/"
        secrets = secret_values(dict(h.headers.items()), split.query) | self._secrets
        base = {
            "method": h.command,
            "path": rest + (f"?{safe_query(split.query)}" if split.query else ""),
            "agent": agent,
            "step": step,
            "headers": safe_headers(dict(h.headers.items())),
            "session": h.headers.get("x-claude-code-session-id") or h.headers.get("session-id"),
        }
        reply = Responder(h)
        try:
            body = self._read_body(h)
            self._route(h, reply, rest, body, base, secrets)
        except (ConnectionError, TimeoutError):
            h.close_connection = True
        except _BadRequest as exc:
            self._record(base, secrets, kind="invalid", protocol="none", status=400)
            if not reply.sent:
                reply.json(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
        except Exception as exc:  # an answer beats a stalled CLI; the recording keeps the cause
            self._record(
                base,
                secrets,
                kind="invalid",
                protocol="none",
                status=500,
                reply_text=f"server error: {exc!r}",
            )
            if not reply.sent:
                reply.json(500, {"error": {"message": f"rehearsal server error: {exc}"}})
            h.close_connection = True

    def _read_body(self, h: Handler) -> bytes:
        if h.headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += h.rfile.read(size)
                h.rfile.readline()
            raw = bytes(data)
        else:
            length = int(h.headers.get("content-length") or 0)
            raw = h.rfile.read(length) if length else b""
        encoding = h.headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            return gzip.decompress(raw)
        if encoding == "deflate":
            return zlib.decompress(raw)
        if encoding not in ("", "identity"):
            raise _BadRequest(f"unsupported content-encoding {encoding!r}")
        return raw

    def _route(
        self,
        h: Handler,
        reply: Responder,
        rest: str,
        raw: bytes,
        base: dict[str, Any],
        secrets: set[str],
    ) -> None:
        path = rest.rstrip("/") or "/"
        agent = base["agent"]
        if h.command in ("HEAD", "GET", "OPTIONS") and path == "/":
            self._record(base, secrets, kind="probe", protocol="none", status=200)
            reply.json(200, None if h.command == "HEAD" else {"ok": True})
            return
        if h.command == "GET" and path.endswith("/models"):
            self._record(base, secrets, kind="models", protocol="none", status=200)
            reply.json(200, self._models(agent))
            return
        if h.command == "POST":
            body = self._json(raw)
            if re.fullmatch(r"(/v1)?/messages/count_tokens", path):
                self._record(base, secrets, kind="count_tokens", protocol="anthropic", status=200)
                reply.json(200, anthropic.count_tokens(body))
                return
            gem = _GEMINI.match(path)
            if gem and gem.group(2) == "countTokens":
                self._record(base, secrets, kind="count_tokens", protocol="gemini", status=200)
                reply.json(200, gemini.count_tokens(body))
                return
            if gem and gem.group(2) in ("streamGenerateContent", "generateContent"):
                model, stream = unquote(gem.group(1)), gem.group(2) == "streamGenerateContent"
                proto = _Protocol(
                    "gemini",
                    lambda b, a, s: gemini.parse(b, a, s, model=model, stream=stream),
                    gemini.stream,
                    gemini.complete,
                    gemini.error,
                )
                self._turn(reply, proto, body, base, secrets, "gemini")
                return
            for pattern, proto in (
                (r"(/v1)?/messages", _ANTHROPIC),
                (r"(/v1)?/responses", _RESPONSES),
                (r"(/v1)?/chat/completions", _CHAT),
            ):
                if re.fullmatch(pattern, path):
                    self._turn(reply, proto, body, base, secrets, _NATIVE_AGENT[proto.name])
                    return
        self._record(base, secrets, kind="unknown", protocol="none", status=404)
        reply.json(404, {"error": {"message": f"the rehearsal server does not serve {rest}"}})

    @staticmethod
    def _json(raw: bytes) -> Mapping[str, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise _BadRequest(f"the request body is not JSON: {exc}") from exc
        if not isinstance(body, Mapping):
            raise _BadRequest("the request body is not a JSON object")
        return body

    def _models(self, agent: str) -> dict[str, Any]:
        name = self.scenario.settings.model_for(agent) or DEFAULT_MODELS.get(agent, "rehearsal")
        if agent == "gemini":
            return gemini.models([name])
        entry = {
            "id": name,
            "object": "model",
            "type": "model",
            "display_name": name,
            "created": 0,
            "created_at": "2025-01-01T00:00:00Z",
            "owned_by": "rehearsal",
        }
        return {"object": "list", "data": [entry], "has_more": False, "models": []}

    def _turn(
        self,
        reply: Responder,
        proto: _Protocol,
        body: Mapping[str, Any],
        base: dict[str, Any],
        secrets: set[str],
        native: str,
    ) -> None:
        agent = base["agent"] if base["agent"] in AGENTS else native
        base = {**base, "agent": agent}
        exchange = proto.parse(body, agent, base["step"])
        if exchange.cwd is None:
            exchange.cwd = self.run_workspaces.get((agent, base["step"]), self.workspace)
        planned = plan(self.scenario, exchange)
        fault = None
        if planned.turn is not None:
            fault = self._take_fault((planned.turn, agent, base["step"]), planned.fault)
        record: dict[str, Any] = {
            "kind": "utility" if exchange.utility else "turn",
            "protocol": proto.name,
            "model": exchange.model,
            "stream": exchange.stream,
            "tools": tuple(t.name for t in exchange.tools),
            "prompt": clip(exchange.prompt, 500),
            "messages": exchange.summary,
            "tool_results": exchange.results_since_prompt,
            "cwd": exchange.cwd,
            "turn": planned.label,
            "reply_text": clip(planned.text, 500),
            "reply_calls": tuple(c.call.name for c in planned.calls),
            "fault": fault.kind if fault else None,
        }
        if fault is not None and fault.kind in ("rate_limit", "error"):
            status = 429 if fault.kind == "rate_limit" else fault.status
            self._record(base, secrets, status=status, **record)
            message = fault.message or _fault_message(status)
            headers = {}
            if status == 429:
                headers = {
                    "retry-after": str(max(0, math.ceil(fault.retry_after))),
                    "retry-after-ms": str(int(fault.retry_after * 1000)),
                }
            retry_after = fault.retry_after if status == 429 else None
            reply.json(status, proto.error(status, message, retry_after), headers)
            return
        if fault is not None and fault.kind == "hang":
            self._record(base, secrets, status=0, **record)
            self._stopping.wait()  # until close(): the answer never comes
            reply.h.close_connection = True
            return
        if fault is not None and fault.kind == "delay" and self._delay(fault):
            reply.h.close_connection = True
            return
        self._record(base, secrets, status=200, **record)
        cut = fault is not None and fault.kind == "cut"
        if exchange.stream:
            if proto.name == "openai-chat":
                events = openai_chat.stream(
                    planned, exchange.model, include_usage=openai_chat.wants_usage(body)
                )
            else:
                events = proto.stream(planned, exchange.model)
            cut_after = None
            if cut and fault is not None:
                default_cut = max(1, len(events) // 2)
                cut_after = fault.after_events if fault.after_events is not None else default_cut
            reply.events(events, cut_after)
        elif cut:
            reply.partial_json(proto.complete(planned, exchange.model))
        else:
            reply.json(200, proto.complete(planned, exchange.model))

    def _delay(self, fault: Fault) -> bool:
        """Wait out a delay fault; True when the server is closing meanwhile."""
        if fault.until is None:
            return self._stopping.wait(fault.seconds)
        gate = Path(fault.until)
        while not gate.exists():
            if self._stopping.wait(0.05):
                return True
        return False

    def new_run(self) -> None:
        """A kept server's next run meets the scenario afresh: its faults fire again, and the
        recording starts over."""
        with self._lock:
            self._fault_counts.clear()
            self._records.clear()

    def _take_fault(self, key: tuple[int, str, str | None], fault: Fault | None) -> Fault | None:
        # `times` counts per turn, agent and step: each CLI of a workflow meets the fault.
        if fault is None:
            return None
        with self._lock:
            used = self._fault_counts.get(key, 0)
            if fault.times is not None and used >= fault.times:
                return None
            self._fault_counts[key] = used + 1
        return fault

    def _record(
        self,
        base: Mapping[str, Any],
        secrets: set[str],
        *,
        kind: str,
        protocol: str,
        status: int,
        **fields: Any,
    ) -> None:
        with self._lock:
            data = scrub({**base, **fields}, secrets)
            record = RecordedRequest(
                seq=len(self._records),
                at=round(time.monotonic() - self._t0, 3),
                kind=kind,
                protocol=protocol,
                status=status,
                **data,
            )
            self._records.append(record)


class _BadRequest(Exception):
    pass


def _fault_message(status: int) -> str:
    if status == 429:
        return "Rate limit reached for requests (scripted by the rehearsal scenario)"
    if status == 529:
        return "Overloaded (scripted by the rehearsal scenario)"
    return f"Internal server error {status} (scripted by the rehearsal scenario)"
