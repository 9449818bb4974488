"""Where the panel works: its title line, naming the workspace, and the field that moves it.

The title line stays the panel's first child with the same opening characters as ever, so a
notebook's stored text/plain of the panel does not change. The field opens a folder on Enter
(not per keystroke); when the folder cannot be opened, it shows the current one again.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..publish import html_widget, set_value
from .layout import flexible, row


def header_html(workspace: Path) -> str:
    return (
        '<div style="font-family:sans-serif"><b>orchestrator-nb</b> · workspace '
        f"<code>{html.escape(str(workspace))}</code></div>"
    )


class WorkspaceField:
    """The title line and the Workspace field; ``opened(path)`` shows a move that happened."""

    def __init__(self, workspace: Path, on_open: Callable[[str], object], wrap: Any) -> None:
        import ipywidgets as widgets

        self.current = workspace
        self._on_open = on_open
        self.header = html_widget(header_html(workspace))
        self.field = flexible(
            widgets.Text(
                value=str(workspace),
                description="Workspace",
                continuous_update=False,
                tooltip="the folder the agents work in; type another and press Enter",
            ),
            "320px",
            grow=4,
        )
        self.field.style.description_width = "72px"
        self.field.observe(wrap("workspace", self._typed), "value")
        self.box = row([self.field])

    def _typed(self) -> None:
        typed = self.field.value.strip()
        if typed == str(self.current):
            return
        try:
            self._on_open(typed)
        except Exception:
            set_value(self.field, str(self.current))  # it shows where the panel still is
            raise

    def opened(self, workspace: Path) -> None:
        self.current = workspace
        set_value(self.field, str(workspace))
        set_value(self.header, header_html(workspace))


__all__ = ["WorkspaceField", "header_html"]
