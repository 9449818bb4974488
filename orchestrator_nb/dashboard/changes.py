"""The files a run changed: one row per file with its diff on demand and its own Revert.

:func:`revert_paths` undoes a run's changes to some files only. The workspace layer reverts a
whole step or run; per file, it composes the run's journal the same way, keeps only the chosen
paths, restores their old versions through the safe writer (backups first) and journals the
revert, so a later ``revert()`` of the run sees the files as already restored.
"""

from __future__ import annotations

import functools
import html
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..display import FileDiff, counts_html, file_diff_html, split_files
from ..errors import WorkspaceError
from ..events import FileChange
from ..observe.redact import redact
from ..publish import html_widget, set_value
from ..workspace import RevertResult, SafeWriter, Workspace
from ..workspace.revert import RecordedChange, compose, revert_changes
from ..workspace.store import load_contents
from .dispatch import Dispatcher, batched, set_if_changed

_GREY = "#57606a"
_RENAME_FROM = re.compile(r"^rename from (.+)$", re.MULTILINE)


def revert_paths(
    workspace: str | os.PathLike[str], run_id: str, paths: Iterable[str], *, force: bool = False
) -> RevertResult:
    """Put ``paths`` back as they were before run ``run_id``; other files are left alone.

    Raises :class:`~orchestrator_nb.errors.RevertConflict` when a file changed again since
    the run (unless ``force``), and ``WorkspaceError`` when the run did not change a path.
    """
    ws = Workspace(workspace, run_id=run_id)
    wanted = list(dict.fromkeys(paths))
    net = compose(ws.journal.entries())
    unknown = [p for p in wanted if p not in net]
    if unknown:
        raise WorkspaceError(
            f"run {run_id} leaves no change to revert in {', '.join(unknown)}",
            hint="it was reverted already, or the run did not change it",
        )
    key = "revert-files"
    writer = SafeWriter(
        ws.root,
        step_id=key,
        backup_dir=ws.state.backup_dir(run_id, f"{key}-{secrets.token_hex(3)}"),
        store=ws.store,
    )
    git_cwd = ws.repo.toplevel if ws.repo else None
    result = revert_changes(
        f"{len(wanted)} file(s) of run {run_id}",
        {p: net[p] for p in wanted},
        root=ws.root,
        store=ws.store,
        load=lambda oids, hints: load_contents(oids, ws.store, git_cwd, hints),
        writer=writer,
        force=force,
    )
    ws.journal.append(
        key,
        "revert",
        [RecordedChange(r.path, r.before, r.after, r.backup) for r in result.records if r.changed],
    )
    return result


@dataclass
class FileRow:
    path: str
    kind: str
    diff: FileDiff | None
    state: str = "changed"  # changed | reverted | revert failed

    @property
    def paths(self) -> list[str]:
        """What reverting this row touches: a rename also restores its old name."""
        if self.kind == "renamed" and self.diff is not None:
            found = _RENAME_FROM.search("\n".join(self.diff.lines))
            if found:
                return [found.group(1), self.path]
        return [self.path]


class ChangesPanel:
    """Rows of changed files (a diff button and a Revert button each) above one diff view."""

    def __init__(self, dispatcher: Dispatcher, on_reverted: Callable[[str], None]) -> None:
        import ipywidgets as widgets

        self._w = widgets
        self._dispatch = dispatcher
        self._on_reverted = on_reverted
        self.rows: dict[str, FileRow] = {}
        self.workspace: Path | None = None
        self.run_id: str | None = None
        self.selected: str | None = None
        self.summary = html_widget(f'<span style="color:{_GREY}">no changes yet</span>')
        self.list = widgets.VBox([])
        self.diff_view = widgets.HTML("", layout=widgets.Layout(max_height="420px"))
        self.diff_view.layout.overflow = "auto"
        self._buttons: dict[str, tuple[Any, Any, Any]] = {}
        self.box = widgets.VBox([self.summary, self.list, self.diff_view])

    # -- what the panel calls -------------------------------------------------------------

    def clear(self) -> None:
        self.show([], "", None, None)

    def show(
        self, changes: list[FileChange], diff: str, workspace: str | None, run_id: str | None
    ) -> None:
        """Rows for a finished run's changes; the first file's diff is shown."""
        by_path = {f.path: f for f in split_files(diff)} if diff else {}
        self.rows = {c.path: FileRow(c.path, c.kind, by_path.get(c.path)) for c in changes}
        self.workspace = Path(workspace) if workspace else None
        self.run_id = run_id
        self._buttons = {}
        children = []
        for row in self.rows.values():
            label = html_widget(self._label(row), layout=self._w.Layout(width="auto"))
            view = self._w.Button(
                description="diff", tooltip=redact(f"show the diff of {row.path}")
            )
            view.layout.width = "64px"
            revert = self._w.Button(
                description="Revert",
                icon="undo",
                button_style="warning",
                tooltip=redact(f"put {row.path} back as it was before this run"),
            )
            revert.layout.width = "96px"
            path = row.path
            view.on_click(self._dispatch.wrap(f"diff {path}", functools.partial(self.select, path)))
            revert.on_click(
                self._dispatch.wrap(f"revert {path}", functools.partial(self.revert, path))
            )
            self._buttons[path] = (label, view, revert)
            children.append(self._w.HBox([revert, view, label]))
        n = len(self.rows)
        summary = f"{n} file(s) changed" if n else "no files changed"
        with batched(self.summary, self.list):
            set_value(
                self.summary,
                f"<b>{summary}</b>" if n else f'<span style="color:{_GREY}">{summary}</span>',
            )
            self.list.children = tuple(children)
        self.select(next(iter(self.rows), None))

    def select(self, path: str | None) -> None:
        """Show ``path``'s diff in the diff view (None: empty it)."""
        if path is not None and path not in self.rows:
            raise KeyError(f"{path!r} is not among the changed files: {list(self.rows)}")
        self.selected = path
        row = self.rows.get(path) if path is not None else None
        if row is None:
            body = ""
        elif row.diff is None:
            body = f'<div style="color:{_GREY}">{html.escape(row.path)}: no textual diff</div>'
        else:
            body = file_diff_html(row.diff, fold_lines=10**9)  # the one selected file: open
        set_if_changed(self.diff_view, value=body)

    def revert(self, path: str, *, force: bool = False) -> RevertResult:
        """Undo this run's change to ``path`` (its Revert button)."""
        row = self.rows.get(path)
        if row is None:
            raise KeyError(f"{path!r} is not among the changed files: {list(self.rows)}")
        if self.workspace is None or self.run_id is None:
            raise WorkspaceError("this run recorded no workspace to revert in")
        if row.state == "reverted":
            raise WorkspaceError(f"{path} is reverted already")
        try:
            result = revert_paths(self.workspace, self.run_id, row.paths, force=force)
        except Exception:
            row.state = "revert failed"
            self._refresh(row)
            raise
        row.state = "reverted"
        self._refresh(row)
        self._on_reverted(
            f"reverted {path}: {', '.join(result.restored + result.deleted) or 'nothing to do'}"
        )
        return result

    def _refresh(self, row: FileRow) -> None:
        label, _view, revert = self._buttons[row.path]
        with batched(label, revert):
            set_value(label, self._label(row))
            revert.disabled = row.state == "reverted"

    @staticmethod
    def _label(row: FileRow) -> str:
        counts = ""
        if row.diff is not None:
            counts = " " + counts_html(row.diff.added, row.diff.removed)
        state = "" if row.state == "changed" else f' <i style="color:{_GREY}">({row.state})</i>'
        kind, path = html.escape(row.kind), html.escape(row.path)
        return f"<code>{kind}</code> <code>{path}</code>{counts}{state}"

    def state(self) -> list[dict[str, Any]]:
        return [{"path": r.path, "kind": r.kind, "state": r.state} for r in self.rows.values()]


__all__ = ["ChangesPanel", "FileRow", "revert_paths"]
