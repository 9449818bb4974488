"""The output tabs: one per agent, following the agent that is running.

:class:`~.progress.AgentTabs` collects each agent's step areas from the live display; this
class copies them into one ``Output`` widget per agent under a ``Tab``, and selects the tab of
the agent that started a step (or took it over from a role's first agent). It moves the
selection once per change of agent, so a user who clicks back to an earlier tab while the
same agent keeps working is left there.
"""

from __future__ import annotations

from typing import Any

from ..lifecycle import AgentFallback, LifecycleEvent, StepStarted
from .dispatch import batched, set_if_changed
from .progress import AgentTabs


class OutputTabs:
    """Widgets for :class:`AgentTabs`; ``render()`` runs under the panel's render lock."""

    def __init__(self, areas: AgentTabs) -> None:
        import ipywidgets as widgets

        self.areas = areas
        self.tab = widgets.Tab([], layout=widgets.Layout(width="auto", min_width="0"))
        self._outs: dict[str, Any] = {}
        self.agents: tuple[str, ...] = ()
        self.running: str | None = None  # the agent whose tab is to be shown
        self._followed: str | None = None

    def __call__(self, event: LifecycleEvent) -> None:
        """A lifecycle subscriber: remember which agent runs now (the render shows it)."""
        if isinstance(event, StepStarted) and event.kind == "agent" and event.agent:
            self.running = event.agent
        elif isinstance(event, AgentFallback):
            self.running = event.to_agent

    @property
    def selected(self) -> str | None:
        index = self.tab.selected_index
        return self.agents[index] if index is not None and index < len(self.agents) else None

    def reset(self) -> None:
        old = list(self._outs.values())
        self._outs, self.agents = {}, ()
        self.running = self._followed = None
        with batched(self.tab):
            self.tab.children = ()
        for w in old:
            w.close()

    def render(self) -> None:
        import ipywidgets as widgets

        agents = self.areas.agents()
        for agent in agents:
            if agent not in self._outs:
                self._outs[agent] = widgets.Output()
        outs = [self._outs[a] for a in agents]
        with batched(self.tab, *outs):
            for agent, out in zip(agents, outs, strict=True):
                set_if_changed(out, outputs=self.areas.outputs(agent))
            if tuple(agents) != self.agents:  # a new agent, or one that passed its step on
                self.tab.children = tuple(outs)
                self.tab.titles = tuple(agents)
                self.agents = tuple(agents)
            follow = self.running
            if follow is not None and follow != self._followed and follow in agents:
                self.tab.selected_index = agents.index(follow)
                self._followed = follow


__all__ = ["OutputTabs"]
