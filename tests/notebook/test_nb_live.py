"""The live display: one area per step, throttled, final state always sent, no times at the end."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from orchestrator_nb.errors import AgentError
from orchestrator_nb.events import (
    StepResult,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
    UsageEvent,
    WarningEvent,
)
from orchestrator_nb.lifecycle import (
    AgentEventEmitted,
    GateDecided,
    GateRequested,
    StepFinished,
    StepStarted,
)
from orchestrator_nb.notebook.live import Bundle, LiveDisplay


class FakeSink:
    """Records what a display area would show."""

    def __init__(self, live: bool = True) -> None:
        self.live = live
        self.calls: list[tuple[str, str, Bundle]] = []
        self.areas: dict[str, Bundle] = {}

    def show(self, display_id: str, bundle: Bundle) -> None:
        self.calls.append(("show", display_id, bundle))
        self.areas[display_id] = bundle

    def update(self, display_id: str, bundle: Bundle) -> None:
        self.calls.append(("update", display_id, bundle))
        self.areas[display_id] = bundle


class FakeTime:
    """A clock the test moves, and a scheduler whose timers the test fires."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None], list[bool]]] = []

    def clock(self) -> float:
        return self.now

    def schedule(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        cancelled = [False]
        self.timers.append((self.now + delay, fn, cancelled))
        return lambda: cancelled.__setitem__(0, True)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fn, cancelled in due:
            if not cancelled[0]:
                fn()


def agent_event(event: object, step: str = "implement") -> AgentEventEmitted:
    return AgentEventEmitted("r", step, "codex", event)  # type: ignore[arg-type]


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def make(t: FakeTime, sink: FakeSink | None = None, **kw: object) -> tuple[LiveDisplay, FakeSink]:
    sink = sink or FakeSink()
    live = LiveDisplay(sink, clock=t.clock, schedule=t.schedule, **kw)  # type: ignore[arg-type]
    return live, sink


def test_at_most_ten_updates_a_second_and_the_final_state(t: FakeTime) -> None:
    live, sink = make(t)
    live(StepStarted("r", "implement", "codex", "agent"))
    for i in range(200):  # 200 deltas over two seconds
        live(agent_event(TextEvent(f"w{i} ", delta=True)))
        t.advance(0.01)
    area = sink.calls[0][1]
    sent = [c for c in sink.calls if c[1] == area]
    assert len(sent) <= 2 * 10 + 2
    assert len(sent) >= 15  # it did keep updating while text arrived
    result = StepResult("codex", True, text="final", usage=Usage(10, 2, 0, 0.5))
    live(StepFinished("r", "implement", "codex", result))
    final = sink.areas[area]["text/markdown"]
    assert "w199" in final and "· ok ·" in final and "$0.5000" in final
    assert "s ·" not in final.split("\n")[0].replace("tokens", "")  # no elapsed time at the end


def test_a_change_inside_the_interval_is_sent_by_the_timer(t: FakeTime) -> None:
    live, sink = make(t)
    live(StepStarted("r", "implement", "codex", "agent"))
    live(agent_event(TextEvent("Hello", delta=False)))  # sent at once? no: 0 s after show
    assert len(sink.calls) == 1 and [d for d, *_ in t.timers] == [101.0, 100.1]  # tick, flush
    t.advance(0.1)
    assert len(sink.calls) == 2 and "Hello" in sink.calls[-1][2]["text/markdown"]
    assert "0.1s" in sink.calls[-1][2]["text/markdown"]  # elapsed while running


def test_text_tools_usage_and_warnings(t: FakeTime) -> None:
    live, sink = make(t)
    live(StepStarted("r", "implement", "codex", "agent"))
    for event in (
        TextEvent("I'll ", delta=True),
        TextEvent("write it.", delta=True),
        TextEvent("I'll write it.", delta=False),  # the whole message after its deltas
        ToolCallEvent("t1", "write_file", {"path": "calc.py", "content": "..."}),
        ToolResultEvent("t1", True, "ok"),
        ToolCallEvent("t2", "shell", {"command": "pytest -q"}),
        ToolResultEvent("t2", False, "1 failed"),
        TextEvent("Done.", delta=False),
        UsageEvent(Usage(1200, 34)),
        WarningEvent("permission denied: Bash"),
    ):
        live(agent_event(event))
    t.advance(1)
    md = sink.calls[-1][2]["text/markdown"]
    assert md.count("I'll write it.") == 1 and "Done." in md
    assert "<details><summary>2 tool calls</summary>" in md
    assert "- ✓ `write_file` calc.py" in md and "- ✗ `shell` pytest -q" in md
    assert "1,200 in / 34 out tokens" in md and "⚠ permission denied: Bash" in md
    assert "tool calls: write_file, shell" in sink.calls[-1][2]["text/plain"]


def test_each_step_and_iteration_has_its_own_area(t: FakeTime) -> None:
    live, sink = make(t)
    for iteration in (1, 2):
        live(StepStarted("r", "review", "gemini", "agent", iteration))
        result = StepResult("gemini", True, text=f"round {iteration}")
        live(StepFinished("r", "review", "gemini", result, iteration))
    live(StepStarted("r", "loop", None, "loop"))  # not an agent step: no area
    areas = list(dict.fromkeys(c[1] for c in sink.calls))
    assert len(areas) == 2
    assert sink.areas[areas[1]]["text/markdown"].startswith("**review #2 · gemini** · ok")


def test_failed_and_cached_steps(t: FakeTime) -> None:
    live, sink = make(t)
    live(StepStarted("r", "implement", "codex", "agent"))
    error = AgentError.for_kind("timeout", "no output after 5s", agent="codex")
    live(StepFinished("r", "implement", "codex", StepResult("codex", False, error=error)))
    cached = StepResult("gemini", True, text="cached answer", cached=True)
    live(StepFinished("r", "review", "gemini", cached, None, True))
    texts = [b["text/markdown"] for b in sink.areas.values()]
    assert "failed (timeout)" in texts[0] and "no output after 5s" in texts[0]
    assert "ok, cached" in texts[1] and "cached answer" in texts[1]


def test_gate_notes_say_why_the_policy_decides(t: FakeTime) -> None:
    live, sink = make(t, gate_note="batch execution")
    live(GateRequested("r", "approve_plan", "Ship it?"))
    live(GateDecided("r", "approve_plan", "approve", "policy"))
    (notes,) = [b for i, b in sink.areas.items() if i.endswith("-notes")]
    assert notes["text/plain"] == (
        "gate approve_plan: Ship it? (batch execution)\ngate approve_plan: approve by policy"
    )


def test_close_clears_areas_or_marks_running_ones_stopped(t: FakeTime) -> None:
    live, sink = make(t)
    live(StepStarted("r", "a", "codex", "agent"))
    live(StepStarted("r", "b", "claude", "agent"))
    live(StepFinished("r", "a", "codex", StepResult("codex", True, text="x")))
    live(agent_event(TextEvent("partial", delta=True), step="b"))
    live.close()
    a, b = sink.areas.values()
    assert "· ok" in a["text/markdown"] and "· stopped" in b["text/markdown"]
    assert t.timers == [] or all(c[0] for *_, c in t.timers)
    before = len(sink.calls)
    live(agent_event(TextEvent("late", delta=True), step="b"))
    assert len(sink.calls) == before  # closed: nothing more

    live2, sink2 = make(t)
    live2(StepStarted("r", "a", "codex", "agent"))
    live2(StepFinished("r", "a", "codex", StepResult("codex", True, text="x")))
    live2.close(clear=True)
    assert list(sink2.areas.values()) == [{"text/plain": ""}]


def test_without_live_updates_only_final_states_are_shown(t: FakeTime) -> None:
    live, sink = make(t, FakeSink(live=False))
    live(StepStarted("r", "a", "codex", "agent"))
    live(agent_event(TextEvent("hi", delta=True), step="a"))
    live(StepFinished("r", "a", "codex", StepResult("codex", True, text="hi")))
    live(GateDecided("r", "g", "approve", "policy"))
    live.close(clear=True)
    assert [c[0] for c in sink.calls] == ["show", "show"]
    assert sink.calls[1][2] == {"text/plain": "gate g: approve by policy"}


def test_tool_paths_are_shown_relative_to_the_workspace(t: FakeTime) -> None:
    from orchestrator_nb.lifecycle import RunStarted

    live, sink = make(t)
    live(RunStarted("r", "default", "task", "/work/space"))
    live(StepStarted("r", "implement", "codex", "agent"))
    changes = {"changes": [{"path": "/work/space/calc.py", "kind": "add"}]}
    live(agent_event(ToolCallEvent("1", "file_change", changes)))
    live(agent_event(ToolCallEvent("2", "Read", {"file_path": "/work/space/src/a.py"})))
    live(agent_event(ToolCallEvent("3", "odd", ["x"])))
    t.advance(1)
    md = sink.calls[-1][2]["text/markdown"]
    assert "`file_change` calc.py" in md and "`Read` src/a.py" in md and '`odd` ["x"]' in md


def header(sink: FakeSink) -> str:
    return sink.calls[-1][2]["text/plain"].split("\n", 1)[0]


def test_the_timer_ticks_while_the_agent_is_silent_and_stops_with_the_step(t: FakeTime) -> None:
    live, sink = make(t)
    live(StepStarted("r", "implement", "claude", "agent"))
    assert header(sink) == "implement · claude · running · starting the CLI · 0.0s"
    t.advance(1.0)
    t.advance(1.0)
    t.advance(1.0)  # three seconds of silence: nothing came on the bus
    assert header(sink) == "implement · claude · running · starting the CLI · 3.0s"
    assert len(sink.calls) == 4  # one update a second: far under the ten-a-second budget
    live(StepFinished("r", "implement", "claude", StepResult("claude", True, text="done")))
    sent = len(sink.calls)
    assert all(c[0] for *_, c in t.timers)  # the ticker was cancelled with the last step
    t.advance(5.0)
    assert len(sink.calls) == sent and "s ·" not in header(sink) + " "


def test_ticks_never_add_to_a_streaming_step_beyond_the_budget(t: FakeTime) -> None:
    live, sink = make(t)
    live(StepStarted("r", "implement", "codex", "agent"))
    for i in range(300):  # three seconds of deltas, with the ticker running beside them
        live(agent_event(TextEvent(f"w{i} ", delta=True)))
        t.advance(0.01)
    heads = [c[2]["text/plain"].split("\n", 1)[0] for c in sink.calls]
    times = [float(h.split(" · ")[4].rstrip("s")) for h in heads]
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(times))  # 0.1 s apart at least


def test_a_step_says_what_it_waits_for(t: FakeTime) -> None:
    from orchestrator_nb.events import RetryEvent, SessionEvent

    live, sink = make(t)
    live(StepStarted("r", "implement", "claude", "agent"))
    seen = []
    for event in (
        SessionEvent("s-1", "opus"),
        ToolCallEvent("t1", "Bash", {"command": "pytest -q"}),
        ToolResultEvent("t1", True),
        RetryEvent(2, "rate_limit: 429 Too Many Requests", 12.0, source="engine"),
    ):
        live(agent_event(event))
        t.advance(0.2)
        seen.append(header(sink).split(" · ")[3])
    assert seen == [
        "waiting for the model",
        "running a tool (Bash)",
        "waiting for the model",
        "retrying after a rate limit in 12s",
    ]
    t.advance(4.0)  # the countdown goes down with the ticks
    assert header(sink).split(" · ")[3] == "retrying after a rate limit in 8s"
    t.advance(9.0)  # the wait is over: the next attempt starts the CLI again
    assert header(sink).split(" · ")[3] == "starting the CLI"
    live(agent_event(RetryEvent(3, "exit 1: crashed", 2.0)))
    t.advance(0.2)
    assert header(sink).split(" · ")[3] == "retrying in 2s"
    live(agent_event(RetryEvent(1, "overloaded_error (429)", 5.0)))  # claude's own retry
    t.advance(0.2)
    assert header(sink).split(" · ")[3] == "retrying after a rate limit in 5s"


def test_an_agent_asking_permission_says_it_waits_for_approval(t: FakeTime) -> None:
    from orchestrator_nb.events import PermissionAsked, PermissionEvent

    live, sink = make(t)
    live(StepStarted("r", "implement", "codex-acp", "agent"))
    live(agent_event(PermissionAsked("t1", "Write hello.txt", "edit", "hello.txt")))
    t.advance(0.2)
    assert header(sink).split(" · ")[3] == "waiting for approval (Write hello.txt)"
    t.advance(5.0)  # nobody answered yet: it still says so, with the time going on
    assert header(sink).split(" · ")[3] == "waiting for approval (Write hello.txt)"
    live(
        agent_event(
            PermissionEvent("t1", "Write hello.txt", "edit", "hello.txt", "allow_once", "user")
        )
    )
    t.advance(0.2)
    assert header(sink).split(" · ")[3] == "waiting for the model"


def test_a_gate_says_it_waits_for_approval(t: FakeTime) -> None:
    live, sink = make(t)
    live(GateRequested("r", "ship", "Ship it?"))
    (notes,) = [b for i, b in sink.areas.items() if i.endswith("-notes")]
    assert notes["text/plain"] == "gate ship: Ship it? (waiting for approval)"


def test_a_rehearsed_step_says_so_and_its_cost_is_scripted(t: FakeTime) -> None:
    from orchestrator_nb.lifecycle import RunStarted

    live, sink = make(t)
    live(RunStarted("r", "default", "task", "/w", rehearsal=True))
    live(StepStarted("r", "implement", "claude", "agent"))
    assert header(sink).startswith("implement · claude · rehearsal · running")
    result = StepResult("claude", True, text="done", usage=Usage(9600, 120, 0, 0.0123))
    live(StepFinished("r", "implement", "claude", result))
    assert header(sink) == (
        "implement · claude · rehearsal · ok · 9,600 in / 120 out tokens, $0.0123 scripted"
    )


def test_no_timer_thread_outlives_the_display() -> None:
    import threading

    from orchestrator_nb.notebook.live import TIMER_THREAD

    def ours() -> list[threading.Thread]:
        return [th for th in threading.enumerate() if th.name == TIMER_THREAD]

    for how in ("finished", "closed"):  # a run that ends, and one interrupted mid-step
        live = LiveDisplay(FakeSink(), tick=0.05)
        live(StepStarted("r", "implement", "claude", "agent"))
        assert ours()  # the ticker is armed while the step runs
        if how == "finished":
            live(StepFinished("r", "implement", "claude", StepResult("claude", True)))
        live.close()
        for th in ours():
            th.join(5)  # a cancelled Timer ends at once; join only waits for its thread to exit
        assert ours() == []


def test_unattended_cells_keep_notes_only_and_leave_the_steps_to_the_result(t: FakeTime) -> None:
    live, sink = make(t, FakeSink(live=False), steps=False)
    live(StepStarted("r", "a", "codex", "agent"))
    live(agent_event(TextEvent("hi", delta=True), step="a"))
    live(StepFinished("r", "a", "codex", StepResult("codex", True, text="hi")))
    live(GateDecided("r", "g", "approve", "policy"))
    live.close(clear=True)
    assert sink.calls == [("show", sink.calls[0][1], {"text/plain": "gate g: approve by policy"})]
