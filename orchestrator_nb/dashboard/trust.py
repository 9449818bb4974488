"""The dashboard's trust row: the workspace's trust state, what it asks for, and a Trust button."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import trust_store
from ..config import Settings, load_settings
from ..publish import html_widget, set_value
from .layout import WRAP, row


class TrustRow:
    """Shows whether the workspace is trusted; Trust records it and reloads the settings."""

    def __init__(self, workspace: Path, config: Any, on_trusted: Callable[[Settings], None]):
        import ipywidgets as widgets

        self.workspace = workspace
        self.config = config
        self.on_trusted = on_trusted
        self.label = html_widget("")
        self.label.layout.flex, self.label.layout.min_width = "1 1 300px", "0"
        self.button = widgets.Button(
            description="Trust",
            tooltip="record that you trust what this workspace configures",
            layout=widgets.Layout(width="auto"),
        )
        self.box = row([self.label, self.button])
        self.refresh()

    def settings(self, workspace: Path | None = None) -> Settings:
        """The settings a listing may use: an untrusted workspace's agents are left out."""
        return load_settings(self.config, cwd=workspace or self.workspace, untrusted="ignore")

    def move(self, workspace: Path) -> trust_store.TrustReport:
        """Show another folder's trust state (the panel moved there)."""
        self.workspace = workspace
        return self.refresh()

    def refresh(self) -> trust_store.TrustReport:
        report = trust_store.report(self.workspace)
        colour = "#1a7f37" if report.trusted else "#9a6700"
        asks = "".join(
            f'<li style="{WRAP}"><code>{html.escape(str(f))}</code></li>' for f in report.findings
        )
        listing = f"<ul style='margin:2px 0'>{asks}</ul>" if asks else ""
        label = (
            f'<div style="font-family:sans-serif"><b>Trust</b>&nbsp;'
            f'<span style="color:{colour}">{html.escape(report.state)}</span>{listing}</div>'
        )
        set_value(self.label, label)
        self.button.layout.display = "none" if report.trusted else ""
        return report

    def trust(self) -> trust_store.TrustReport:
        """What the Trust button does (after showing the listing above it)."""
        report = trust_store.trust(self.workspace)
        self.on_trusted(load_settings(self.config, cwd=self.workspace))
        self.refresh()
        return report

    def check_run(self) -> None:
        """Refuse a run that untrusted configuration would change (as every entry point does)."""
        load_settings(self.config, cwd=self.workspace)
