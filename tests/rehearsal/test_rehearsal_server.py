"""The scripted model server over plain HTTP: every protocol, faults, recording, shutdown."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.rehearsal import Rehearsal, parse_scenario, rehearsal

SCENARIO = """
name: unit
turns:
  - name: hello
    words: hello
    usage: {input: 1200, output: 34, cached: 200}
    actions:
      - say: I'll create the file.
      - write: {path: hello.txt, content: "hi\\n"}
      - say: Done.
  - name: only codex
    agent: codex
    step: review
    say: codex reviews
  - name: throttled
    words: throttle
    fault: {kind: rate_limit, retry_after: 2, times: 2}
    say: finally through
  - name: broken
    words: broken
    fault: {kind: error, status: 529}
    say: never
  - name: slow
    words: slow
    fault: {kind: delay, seconds: 0.4}
    say: slow but fine
  - name: cut
    words: cut
    fault: {kind: cut, after_events: 2}
    say: this stream is cut before the end
  - name: hang
    words: hang
    fault: {kind: hang}
    say: never sent
default:
  say: Nothing scripted.
"""

KEY = "sk-test-SECRET-0123456789"
CWD_SYSTEM = "You are an agent.\nPrimary working directory: /work/space\n"


@pytest.fixture
def r() -> Iterator[Rehearsal]:
    with rehearsal(parse_scenario(SCENARIO), package_cache=None) as reh:
        yield reh


def post(
    url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers.items()), err.read()


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def sse(raw: bytes) -> list[tuple[str | None, Any]]:
    events: list[tuple[str | None, Any]] = []
    for block in raw.decode().split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                payload = line[6:]
                data = payload if payload == "[DONE]" else json.loads(payload)
        if data is not None:
            events.append((name, data))
    return events


# ----------------------------------------------------------------------------- anthropic

CLAUDE_TOOLS = [
    {
        "name": "Write",
        "description": "Write a file.",
        "input_schema": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["file_path", "content"],
        },
    },
    {
        "name": "Bash",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
]


def claude_body(messages: list[dict[str, Any]], stream: bool = True) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": CWD_SYSTEM}],
        "messages": messages,
        "tools": CLAUDE_TOOLS,
        "max_tokens": 1000,
        "stream": stream,
    }


def test_anthropic_stream_tool_call_then_final_text(r: Rehearsal) -> None:
    url = r.base_url("claude", "implement") + "/v1/messages?beta=true"
    prompt = {
        "role": "user",
        "content": [
            {"type": "text", "text": "<system-reminder>today is Monday</system-reminder>"},
            {"type": "text", "text": "Create hello.txt please"},
        ],
    }
    status, headers, raw = post(url, claude_body([prompt]), {"x-api-key": KEY})
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = sse(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    usage = events[0][1]["message"]["usage"]
    assert usage["input_tokens"] == 1000 and usage["cache_read_input_tokens"] == 200
    text = "".join(
        d["delta"]["text"] for n, d in events if n == "content_block_delta" and "text" in d["delta"]
    )
    assert text == "I'll create the file."
    start = next(d for n, d in events if n == "content_block_start" and d["index"] == 1)
    tool = start["content_block"]
    assert tool["type"] == "tool_use" and tool["name"] == "Write"
    args = json.loads(
        next(
            d["delta"]["partial_json"]
            for n, d in events
            if d.get("index") == 1 and n == "content_block_delta"
        )
    )
    assert args == {"file_path": "/work/space/hello.txt", "content": "hi\n"}
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 34

    history = [
        prompt,
        {"role": "assistant", "content": [tool | {"input": args}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "ok"}],
        },
    ]
    status, _, raw = post(url, claude_body(history, stream=False))
    message = json.loads(raw)
    assert message["content"] == [{"type": "text", "text": "Done."}]
    assert message["stop_reason"] == "end_turn"
    turns = r.requests_for(agent="claude", kind="turn")
    assert [q.step for q in turns] == ["implement", "implement"]
    assert turns[0].prompt == "Create hello.txt please"
    assert turns[0].reply_calls == ("Write",) and turns[1].tool_results == 1
    assert turns[0].cwd == "/work/space" and turns[0].turn == "turn 0 (hello)"


def test_anthropic_side_calls(r: Rehearsal) -> None:
    base = r.base_url("claude")
    status, raw = get(base, "HEAD")
    assert status == 200 and raw == b""
    status, _, raw = post(
        base + "/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "x" * 400}]}
    )
    assert status == 200 and json.loads(raw)["input_tokens"] > 50
    title = {
        "model": "claude-haiku",
        "messages": [{"role": "user", "content": "Generate a title"}],
        "output_config": {
            "format": {
                "type": "json_schema",
                "schema": {
                    "type": "object",
                    "properties": {"title": {"type": "string"}},
                    "required": ["title"],
                },
            }
        },
    }
    status, _, raw = post(base + "/v1/messages", title)
    assert json.loads(json.loads(raw)["content"][0]["text"]) == {"title": "Rehearsal"}
    plain = {"model": "claude-haiku", "messages": [{"role": "user", "content": "Summarize"}]}
    assert (
        "Rehearsal (unit)"
        in json.loads(post(base + "/v1/messages", plain)[2])["content"][0]["text"]
    )
    status, raw = get(base + "/v1/models")
    assert json.loads(raw)["data"][0]["id"] == "claude-sonnet-4-5"
    kinds = [q.kind for q in r.requests]
    assert kinds == ["probe", "count_tokens", "utility", "utility", "models"]


# ----------------------------------------------------------------------------- codex


def codex_body(items: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    env = {
        "type": "message",
        "role": "user",
        "content": [
            {
                "type": "input_text",
                "text": "<environment_context>\n  <cwd>/repo</cwd>\n</environment_context>",
            }
        ],
    }
    return {"model": "gpt-5.5", "stream": True, "input": [env, *items], "tools": tools}


EXEC = {
    "type": "function",
    "name": "exec_command",
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
    },
}


def test_responses_function_call_and_completion(r: Rehearsal) -> None:
    url = r.base_url("codex", "implement") + "/v1/responses"
    prompt = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hello there"}],
    }
    status, _, raw = post(url, codex_body([prompt], [EXEC]), {"authorization": f"Bearer {KEY}"})
    assert status == 200
    events = sse(raw)
    kinds = [d["type"] for _, d in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    done = [d["item"] for _, d in events if d["type"] == "response.output_item.done"]
    assert done[0]["type"] == "message"
    call = done[1]
    assert call["type"] == "function_call" and call["name"] == "exec_command"
    assert "printf '%s' 'hi\n' > hello.txt" in json.loads(call["arguments"])["cmd"]
    usage = events[-1][1]["response"]["usage"]
    assert usage["input_tokens"] == 1200 and usage["input_tokens_details"]["cached_tokens"] == 200

    follow = [
        prompt,
        call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "ok"},
    ]
    events = sse(post(url, codex_body(follow, [EXEC]))[2])
    final = [d["item"] for _, d in events if d["type"] == "response.output_item.done"]
    assert final == [final[0]] and final[0]["content"][0]["text"] == "Done."


def test_responses_apply_patch_and_step_keyed_turn(r: Rehearsal) -> None:
    patch_tool = {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}
    prompt = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hello"}],
    }
    raw = post(r.base_url("codex") + "/v1/responses", codex_body([prompt], [EXEC, patch_tool]))[2]
    items = [d["item"] for _, d in sse(raw) if d["type"] == "response.output_item.done"]
    assert items[1]["type"] == "custom_tool_call"
    assert items[1]["input"].startswith("*** Begin Patch\n*** Add File: hello.txt\n+hi\n")
    other = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}]}
    review = post(r.base_url("codex", "review") + "/v1/responses", codex_body([other], [EXEC]))[2]
    texts = [d["delta"] for _, d in sse(review) if d["type"] == "response.output_text.delta"]
    assert "".join(texts) == "codex reviews"
    # The same prompt from another step or agent does not get codex's review turn.
    elsewhere = post(
        r.base_url("codex", "implement") + "/v1/responses", codex_body([other], [EXEC])
    )[2]
    assert "default answer" in json.dumps(sse(elsewhere))


# ----------------------------------------------------------------------------- copilot

COPILOT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "create",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "file_text": {"type": "string"}},
                "required": ["path", "file_text"],
            },
        },
    }
]


def test_chat_completions_stream_and_plain(r: Rehearsal) -> None:
    url = r.base_url("copilot", "apply") + "/v1/chat/completions"
    messages = [
        {"role": "system", "content": "* Current working directory: /proj\n"},
        {"role": "user", "content": "<current_datetime>now</current_datetime>\n\nhello"},
    ]
    body = {
        "model": "gpt-4.1",
        "messages": messages,
        "tools": COPILOT_TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, _, raw = post(url, body, {"authorization": f"Bearer {KEY}"})
    events = sse(raw)
    assert status == 200 and events[-1][1] == "[DONE]"
    chunks = [d for _, d in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["function"]["name"] == "create" and calls[0]["id"].startswith("call_rh_")
    args = json.loads(calls[1]["function"]["arguments"])
    assert args == {"path": "/proj/hello.txt", "file_text": "hi\n"}
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 1200

    follow = [
        *messages,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": "create", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "Created"},
    ]
    plain = json.loads(
        post(url, {"model": "gpt-4.1", "messages": follow, "tools": COPILOT_TOOLS})[2]
    )
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": "Done."}
    assert plain["choices"][0]["finish_reason"] == "stop"
    no_usage = sse(post(url, {**body, "stream_options": None})[2])
    assert all(d == "[DONE]" or d["choices"] for _, d in no_usage)


# ----------------------------------------------------------------------------- gemini

GEMINI_CONTEXT = "<session_context>\n- **Workspace Directories:**\n  - /g/ws\n</session_context>"
GEMINI_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "write_file",
                "parametersJsonSchema": {
                    "type": "object",
                    "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
                },
            }
        ]
    }
]


def test_gemini_stream_utility_and_count(r: Rehearsal) -> None:
    base = r.base_url("gemini", "review") + "/v1beta/models/gemini-2.5-flash"
    contents = [
        {
            "role": "user",
            "parts": [
                {"text": GEMINI_CONTEXT},
                {"text": "hello gemini"},
            ],
        }
    ]
    _, _, raw = post(
        base + ":streamGenerateContent?alt=sse",
        {"contents": contents, "tools": GEMINI_TOOLS},
        {"x-goog-api-key": KEY},
    )
    chunks = [d for _, d in sse(raw)]
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    assert "".join(p.get("text", "") for p in parts) == "I'll create the file."
    call = next(p["functionCall"] for p in parts if "functionCall" in p)
    assert call["name"] == "write_file" and call["args"] == {
        "file_path": "/g/ws/hello.txt",
        "content": "hi\n",
    }
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["cachedContentTokenCount"] == 200

    contents += [
        {"role": "model", "parts": [{"functionCall": call}]},
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": call["id"],
                        "name": "write_file",
                        "response": {"output": "ok"},
                    }
                }
            ],
        },
    ]
    final = json.loads(
        post(base + ":generateContent", {"contents": contents, "tools": GEMINI_TOOLS})[2]
    )
    assert final["candidates"][0]["content"]["parts"] == [{"text": "Done."}]

    router = {
        "contents": [{"role": "user", "parts": [{"text": "route me"}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {
                "type": "OBJECT",
                "properties": {
                    "next_speaker": {"type": "STRING", "enum": ["model", "user"]},
                    "complexity_score": {"type": "INTEGER"},
                    "reasoning": {"type": "STRING"},
                },
            },
        },
    }
    text = json.loads(post(base + ":generateContent", router)[2])["candidates"][0]["content"][
        "parts"
    ][0]["text"]
    assert json.loads(text) == {
        "next_speaker": "user",
        "complexity_score": 1,
        "reasoning": "rehearsal",
    }
    counted = json.loads(post(base + ":countTokens", {"contents": contents})[2])
    assert counted["totalTokens"] > 0
    assert json.loads(get(r.base_url("gemini") + "/v1beta/models")[1])["models"][0][
        "name"
    ].startswith("models/")


def test_agent_inferred_without_prefix_and_unknown_paths(r: Rehearsal) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "tools": COPILOT_TOOLS,
        "stream": False,
    }
    assert post(r.url + "/v1/chat/completions", body)[0] == 200
    status, raw = get(r.url + "/r/claude/-/v2/whatever")
    assert status == 404 and b"does not serve" in raw
    status, _, raw = post(r.url + "/v1/messages", b"{not json")
    assert status == 400
    records = r.requests
    assert (records[0].agent, records[0].step, records[0].protocol) == (
        "copilot",
        None,
        "openai-chat",
    )
    assert (records[1].kind, records[1].agent, records[1].path) == (
        "unknown",
        "claude",
        "/v2/whatever",
    )
    assert records[2].kind == "invalid"


def test_step_names_survive_the_url(r: Rehearsal) -> None:
    for step in ("review / 2", "-", "naïve step"):
        url = r.base_url("claude", step) + "/v1/messages"
        post(url, claude_body([{"role": "user", "content": "hi"}], stream=False))
    assert [q.step for q in r.requests] == ["review / 2", "-", "naïve step"]


# ----------------------------------------------------------------------------- faults


def chat(
    r: Rehearsal, prompt: str, agent: str = "copilot", timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": prompt}],
        "tools": COPILOT_TOOLS,
        "stream": True,
    }
    return post(r.base_url(agent) + "/v1/chat/completions", body, timeout=timeout)


def test_rate_limit_with_retry_after_then_through(r: Rehearsal) -> None:
    for _ in range(2):
        status, headers, raw = chat(r, "throttle")
        assert status == 429
        assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
        assert json.loads(raw)["error"]["type"] == "rate_limit_exceeded"
    status, _, raw = chat(r, "throttle")
    assert status == 200 and b"finally through" in raw
    assert [q.fault for q in r.requests] == ["rate_limit", "rate_limit", None]
    assert [q.status for q in r.requests] == [429, 429, 200]
    # `times` counts per agent and step: another CLI of the workflow meets the fault too.
    assert chat(r, "throttle", agent="claude")[0] == 429


def test_error_bodies_speak_each_protocol(r: Rehearsal) -> None:
    messages = [{"role": "user", "content": "broken"}]
    status, _, raw = post(r.base_url("claude") + "/v1/messages", claude_body(messages))
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"
    body = {"contents": [{"role": "user", "parts": [{"text": "throttle"}]}], "tools": GEMINI_TOOLS}
    status, _, raw = post(
        r.base_url("gemini") + "/v1beta/models/g:streamGenerateContent?alt=sse", body
    )
    error = json.loads(raw)["error"]
    assert status == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][0]["retryDelay"] == "2s"


def test_delay(r: Rehearsal) -> None:
    started = time.monotonic()
    status, _, raw = chat(r, "slow")
    assert status == 200 and b"slow but fine" in raw
    assert time.monotonic() - started >= 0.4


def test_a_gated_delay_answers_once_the_test_opens_the_gate(tmp_path: Path) -> None:
    gate = tmp_path / "open"
    text = f"""
turns:
  - words: gated
    fault: {{kind: delay, until: "{gate}"}}
    say: through the gate
"""
    with rehearsal(parse_scenario(text), package_cache=None) as reh:
        answers: list[tuple[int, bytes]] = []

        def ask() -> None:
            status, _, raw = chat(reh, "gated", timeout=60)
            answers.append((status, raw))

        asking = threading.Thread(target=ask)
        asking.start()
        asking.join(1.0)  # however long we wait, nothing comes while the gate is shut
        assert asking.is_alive() and not answers
        gate.touch()
        asking.join(30)
    assert answers and answers[0][0] == 200 and b"through the gate" in answers[0][1]


def test_a_gated_delay_ends_when_the_server_closes(tmp_path: Path) -> None:
    text = f"""
turns:
  - fault: {{kind: delay, until: "{tmp_path / "never"}"}}
    say: never sent
"""
    reh = rehearsal(parse_scenario(text), package_cache=None)
    try:
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            chat(reh, "anything", timeout=0.5)
    finally:
        started = time.monotonic()
        reh.close()
    assert time.monotonic() - started < 3


def test_cut_stream_is_incomplete(r: Rehearsal) -> None:
    with pytest.raises(http.client.IncompleteRead):
        chat(r, "cut")
    assert r.requests[-1].fault == "cut"


def test_hang_never_answers_and_close_still_returns() -> None:
    reh = rehearsal(parse_scenario(SCENARIO), package_cache=None)
    try:
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            chat(reh, "hang", timeout=0.5)
        assert reh.requests[-1].fault == "hang" and reh.requests[-1].status == 0
    finally:
        started = time.monotonic()
        reh.close()
    assert time.monotonic() - started < 3
    assert reh.closed


def test_parallel_requests() -> None:
    with rehearsal(parse_scenario(SCENARIO), package_cache=None) as reh:
        results: list[int] = []

        def one() -> None:
            results.append(chat(reh, "hello")[0])

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 8
        assert sorted(q.seq for q in reh.requests) == list(range(8))


# ----------------------------------------------------------------------------- recording


def test_recording_never_holds_keys(r: Rehearsal, tmp_path: Any) -> None:
    body = claude_body([{"role": "user", "content": f"hello, my key is {KEY}"}], stream=False)
    post(
        r.base_url("claude") + "/v1/messages",
        body,
        {"x-api-key": KEY, "authorization": f"Bearer {KEY}"},
    )
    post(
        r.base_url("gemini") + f"/v1beta/models/g:generateContent?key={KEY}&alt=json",
        {"contents": []},
    )
    dumped = r.dump(tmp_path / "rec.jsonl").read_text()
    assert KEY not in dumped and KEY not in repr(r.requests)
    first = r.requests[0]
    assert "x-api-key" not in first.headers and "authorization" not in first.headers
    # Masked where it was: by the recording's own key stripping or the redaction before a cut.
    assert KEY not in first.prompt and ("***" in first.prompt or "[REDACTED" in first.prompt)
    assert r.requests[1].path.endswith("key=***&alt=json")
    assert all(json.loads(line)["agent"] for line in dumped.splitlines())


def test_close_is_idempotent_and_leaves_no_threads() -> None:
    before = threading.active_count()
    reh = rehearsal(parse_scenario(SCENARIO), package_cache=None)
    chat(reh, "hello")
    reh.close()
    reh.close()
    assert threading.active_count() == before


def test_a_new_run_meets_the_scenario_afresh(r: Rehearsal, tmp_path: Path) -> None:
    # A session's rehearsed cells share one server (runs/rehearsals.py): each run's CLIs meet
    # the scenario's faults again, and the recording is of that run.
    assert [chat(r, "throttle")[0] for _ in range(3)] == [429, 429, 200]
    r.new_run(tmp_path)
    assert r.requests == [] and r.workspace == tmp_path.resolve()
    assert [chat(r, "throttle")[0] for _ in range(3)] == [429, 429, 200]
