"""The panel's inputs: task, workflow, limits, rehearsal, conversation mode, and agent lights.

The agent lights run each CLI's ``--version`` (cached per file), which takes a moment per CLI,
so they are filled in from threads: showing the panel must not wait for node to start four
times.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ..agents.availability import AgentStatus, status
from ..config import Settings
from ..display import one_line
from ..errors import ConfigError
from ..observe.redact import redact
from ..publish import html_widget, set_value
from .dispatch import batched
from .layout import flexible, row

NO_REHEARSAL = "none (real agents)"
NO_LIMIT = "no limit"
WORKFLOW_LABEL_CHARS = 44
_OK, _BAD, _GREY = "#1a7f37", "#cf222e", "#8c959f"
_VERSION = re.compile(r"\d+(?:\.\d+)+")


def light_html(name: str, s: AgentStatus | None) -> str:
    """A coloured dot, the agent's name and its version (or why it is missing)."""
    if s is None:
        colour, detail = _GREY, "checking…"
    elif s.found:
        found = _VERSION.search(s.version or "")
        colour, detail = _OK, found.group(0) if found else "found"
    else:
        colour, detail = _BAD, "missing"
    return (
        f'<span style="white-space:nowrap;margin-right:10px">'
        f'<span style="color:{colour}">●</span> <b>{html.escape(name)}</b> '
        f'<span style="color:#57606a;font-size:85%">{html.escape(detail)}</span></span>'
    )


def light_tooltip(s: AgentStatus) -> str:
    if s.found:
        return f"{s.name}: {s.version or 'found'} at {s.path}"
    why = f" — {s.problem}" if s.problem else ""
    return f"{s.name} is missing{why}. Install: {s.install_hint}"


class AgentLights:
    """One light per configured agent; ``refresh()`` checks them (in a thread by default)."""

    def __init__(self, settings: Settings, on_error: Callable[[str, BaseException], None]) -> None:

        self.settings = settings
        self._on_error = on_error
        self.lights: dict[str, Any] = {}
        self.statuses: dict[str, AgentStatus] = {}
        self.box = row([])
        self.box.layout.flex = "1 1 0"
        self.done = threading.Event()
        self.use(settings)

    def use(self, settings: Settings) -> None:
        """Lights for these settings' agents (another workspace's), unchecked."""
        self.settings = settings
        self.statuses = {}
        self.lights = {
            name: html_widget(light_html(name, None), tooltip=redact(f"{name}: checking…"))
            for name in settings.agents
        }
        self.box.children = tuple(self.lights.values())

    def refresh(self, *, background: bool = True) -> None:
        self.done.clear()
        if not background:
            self._check()
            return
        thread = threading.Thread(target=self._check, name="orchestrator-nb agent lights")
        thread.daemon = True
        thread.start()

    def _check(self) -> None:
        # One thread per agent: each --version starts node, about a second apiece.
        try:
            with ThreadPoolExecutor(max_workers=max(len(self.lights), 1)) as pool:
                futures = {pool.submit(self._check_one, name): name for name in self.lights}
                for future in as_completed(futures):
                    error = future.exception()
                    if error is not None:  # shown in the panel: a thread has no one to raise to
                        self._on_error(f"agent status of {futures[future]}", error)
        finally:
            self.done.set()

    def _check_one(self, name: str) -> None:
        one = self.settings.model_copy(update={"agents": {name: self.settings.agents[name]}})
        for s in status(one):
            self.statuses[s.name] = s
            light = self.lights.get(s.name)
            if light is None:  # the panel moved to another workspace meanwhile
                continue
            with batched(light):
                set_value(light, light_html(s.name, s))
                set_value(light, light_tooltip(s), "tooltip")


class Controls:
    """Every input of the panel, laid out; the panel reads their values when Run is clicked."""

    def __init__(
        self,
        settings: Settings,
        scenarios: list[str],
        *,
        task: str = "",
        workflow: str | None = None,
        rehearsal: str | None = None,
        max_iterations: int = 3,
        budget: float = 0.0,
    ) -> None:
        import ipywidgets as widgets

        self.task = widgets.Textarea(
            value=task,
            placeholder="What should the agents do? e.g. Create hello.txt saying hi",
            layout=widgets.Layout(width="auto", min_width="0", height="64px"),
        )
        choices = [(s, s) for s in scenarios]
        if rehearsal and rehearsal not in scenarios:
            if not Path(rehearsal).expanduser().is_file():
                raise ConfigError(
                    f"unknown rehearsal scenario {rehearsal!r}",
                    key="rehearsal",
                    hint=f"a YAML file, or one of: {', '.join(scenarios)}",
                )
            choices.append((Path(rehearsal).name, rehearsal))  # the user's own scenario file
        self.workflow = flexible(widgets.Dropdown(description="Workflow"), "300px", grow=2)
        self.workflow.observe(lambda _change: self._workflow_tooltip(), "value")
        self.use(settings, workflow)
        self.rehearsal = flexible(
            widgets.Dropdown(
                options=[(NO_REHEARSAL, ""), *choices],
                value=rehearsal or "",
                description="Rehearsal",
                tooltip="run the real CLIs against a scripted model server: no keys, no cost",
            ),
            "240px",
        )
        self.max_iterations = flexible(
            widgets.IntSlider(
                value=max_iterations,
                min=1,
                max=10,
                description="Max iter.",
                tooltip="the most rounds a review loop may take",
            ),
            "240px",
        )
        self.budget = flexible(
            widgets.Text(
                value=f"{budget:g}" if budget > 0 else "",
                placeholder=NO_LIMIT,
                description="Budget $",
                tooltip="stop the run once it has cost this many dollars (empty: no limit)",
            ),
            "180px",
        )
        self.conversation = widgets.ToggleButton(
            value=False,
            description="Conversation",
            icon="comments",
            tooltip="every Run continues the session (the agents see the previous turns)",
        )
        self.run = widgets.Button(description="Run", icon="play", button_style="success")
        self.stop = widgets.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True
        )
        for button in (self.conversation, self.run, self.stop):
            button.layout.width, button.layout.min_width = "auto", "0"
        self.status = flexible(widgets.HTML("idle"), "200px", grow=3)
        self.followup = flexible(
            widgets.Text(
                placeholder="A follow-up: it continues the last turn, e.g. now add a test"
            ),
            "260px",
            grow=3,
        )
        self.followup_button = widgets.Button(
            description="Follow up", icon="reply", tooltip="run the follow-up in this session"
        )
        self.followup_button.layout.width = "auto"
        for w in (self.workflow, self.rehearsal, self.max_iterations, self.budget):
            w.style.description_width = "72px"
        self.box = widgets.VBox(
            [
                self.task,
                row([self.workflow, self.rehearsal]),
                row([self.max_iterations, self.budget, self.conversation]),
                row([self.run, self.stop, self.status]),
                row([self.followup, self.followup_button]),
            ],
            layout=widgets.Layout(width="auto", min_width="0"),
        )

    def use(self, settings: Settings, workflow: str | None = None) -> None:
        """Offer these settings' workflows (another workspace's); keep the choice if it is there."""
        flows = list(settings.workflows)
        if workflow is not None and workflow not in flows:
            raise ConfigError(
                f"unknown workflow {workflow!r}", key="workflow", hint=f"known: {', '.join(flows)}"
            )
        self._described = {n: workflow_title(n, settings.workflows[n].description) for n in flows}
        keep = workflow if workflow is not None else self.workflow.value
        if keep not in flows:
            keep = "default" if "default" in flows else (flows[0] if flows else None)
        with batched(self.workflow):
            self.workflow.options = [
                (one_line(self._described[n], WORKFLOW_LABEL_CHARS), n) for n in flows
            ]
            set_value(self.workflow, keep)
        self._workflow_tooltip()

    def _workflow_tooltip(self) -> None:
        # The list shows shortened names; the whole name and description are a hover away.
        set_value(self.workflow, self._described.get(self.workflow.value, ""), "tooltip")

    def overrides(self) -> dict[str, Any]:
        """The engine overrides the inputs ask for (an empty budget means no limit)."""
        out: dict[str, Any] = {"max_iterations": int(self.max_iterations.value)}
        budget = budget_value(self.budget.value)
        if budget is not None:
            out["max_cost_usd"] = budget
        return out


def workflow_title(name: str, description: str | None) -> str:
    return f"{name} — {description}" if description else name


def budget_value(text: str) -> float | None:
    """The Budget box's dollars: None when empty (no limit); a ConfigError when not a number."""
    raw = text.strip().lstrip("$").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"the budget {text!r} is not a number of dollars",
            key="budget",
            hint="type e.g. 1.50, or leave it empty for no limit",
        ) from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"the budget {text!r} must be a positive amount", key="budget")
    return value or None


__all__ = [
    "NO_LIMIT",
    "NO_REHEARSAL",
    "AgentLights",
    "Controls",
    "budget_value",
    "light_html",
    "light_tooltip",
    "workflow_title",
]
