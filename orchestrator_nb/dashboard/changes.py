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
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..display import FileDiff, counts_html, file_diff_html, plural, split_files
from ..errors import WorkspaceError
from ..events import FileChange
from ..observe.redact import redact
from ..publish import html_widget, set_value
from ..workspace import RevertResult, SafeWriter, Workspace
from ..workspace.revert import RecordedChange, compose, revert_changes
from ..workspace.store import load_contents
from .dispatch import Dispatcher, batched, set_if_changed
from .layout import WRAP, column, row

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
        f"{plural(len(wanted), 'file')} of run {run_id}",
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

    def restores(self) -> list[str]:
        """What its Revert will do, one line per file, in words."""
        counts = ""
        if self.diff is not None and (self.diff.added or self.diff.removed):
            counts = f" (undoes {self.diff.added} added and {self.diff.removed} removed lines)"
        if self.kind == "added":
            return [f"delete {self.path}, which this run created"]
        if self.kind == "deleted":
            return [f"bring back {self.path}, which this run deleted"]
        if self.kind == "renamed" and len(self.paths) == 2:
            old, new = self.paths
            return [f"rename {new} back to {old}{counts}"]
        return [f"restore {self.path} as it was before this run{counts}"]

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
        self.final = True  # False while the run still goes: rows show, Revert waits for the end
        self.pending: str | None = None  # the file whose Revert awaits confirmation
        self.summary = html_widget(f'<span style="color:{_GREY}">no changes yet</span>')
        self.list = column([])
        layout = widgets.Layout(max_height="420px", width="auto", min_width="0")
        self.diff_view = widgets.HTML("", layout=layout)
        self.diff_view.layout.overflow = "auto"
        self.confirm_html = html_widget("")
        self.confirm_html.layout.flex, self.confirm_html.layout.min_width = "1 1 300px", "0"
        self.confirm_button = widgets.Button(
            description="Revert", icon="undo", button_style="danger", tooltip="do it"
        )
        self.cancel_button = widgets.Button(description="Cancel", tooltip="leave the file as it is")
        for button in (self.confirm_button, self.cancel_button):
            button.layout.width = "auto"
        self.confirm_button.on_click(dispatcher.wrap("revert", self.confirm))
        self.cancel_button.on_click(dispatcher.wrap("cancel revert", self.cancel))
        self.confirm_box = row([self.confirm_html, self.confirm_button, self.cancel_button])
        self.confirm_box.layout.display = "none"
        self._buttons: dict[str, tuple[Any, Any, Any]] = {}
        self._steps: tuple[list[FileChange], str] | None = None  # reported, not yet shown
        self._steps_lock = threading.Lock()
        self._steps_new = False
        self.box = column([self.summary, self.list, self.confirm_box, self.diff_view])

    # -- what the panel calls -------------------------------------------------------------

    def clear(self) -> None:
        self.show([], "", None, None)

    def show(
        self,
        changes: list[FileChange],
        diff: str,
        workspace: str | None,
        run_id: str | None,
        *,
        final: bool = True,
    ) -> None:
        """Rows for a run's changes, the first file's diff shown. ``final=False``: the run
        still goes (rows after each step); Revert waits for its end, when the files stay put."""
        by_path: dict[str, FileDiff] = {}
        for f in split_files(diff) if diff else []:
            if f.path in by_path:  # changed by two steps: both hunks, in order
                f = FileDiff(f.path, by_path[f.path].lines + f.lines)
            by_path[f.path] = f
        keep = self.selected
        self.rows = {c.path: FileRow(c.path, c.kind, by_path.get(c.path)) for c in changes}
        self.workspace = Path(workspace) if workspace else None
        self.run_id = run_id
        self.final = final
        self.cancel()
        self._buttons = {}
        children = []
        for file in self.rows.values():
            label = html_widget(self._label(file))
            label.layout.flex, label.layout.min_width = "1 1 200px", "0"
            view = self._w.Button(
                description="diff", tooltip=redact(f"show the diff of {file.path}")
            )
            view.layout.width = "auto"
            revert = self._w.Button(
                description="Revert",
                icon="undo",
                button_style="warning",
                disabled=not final,
                tooltip=redact(
                    f"put {file.path} back as it was before this run"
                    if final
                    else "Revert is available when the run ends"
                ),
            )
            revert.layout.width = "auto"
            path = file.path
            view.on_click(self._dispatch.wrap(f"diff {path}", functools.partial(self.select, path)))
            revert.on_click(
                self._dispatch.wrap(f"revert {path}", functools.partial(self.ask, path))
            )
            self._buttons[path] = (label, view, revert)
            children.append(row([revert, view, label]))
        n = len(self.rows)
        summary = f"{plural(n, 'file')} changed" if n else ""
        summary = summary or ("no files changed yet" if not final else "no files changed")
        if n and not final:
            summary += " so far"
        with batched(self.summary, self.list):
            set_value(
                self.summary,
                f"<b>{summary}</b>" if n else f'<span style="color:{_GREY}">{summary}</span>',
            )
            self.list.children = tuple(children)
        self.select(keep if keep in self.rows else next(iter(self.rows), None))

    # -- while the run goes: the changes of each finished step --------------------------

    def step_finished(self, changes: list[FileChange], diff: str) -> None:
        """Record a step's changes (any thread); :meth:`show_steps` shows them."""
        with self._steps_lock:
            before, shown = self._steps or ([], "")
            self._steps = (merge_changes(before, changes), shown + diff)
            self._steps_new = True

    def show_steps(self) -> None:
        with self._steps_lock:
            if self._steps is None or not self._steps_new:
                return
            self._steps_new = False
            changes, diff = self._steps
        self.show(changes, diff, None, None, final=False)

    def drop_steps(self) -> None:
        with self._steps_lock:
            self._steps, self._steps_new = None, False

    # -- Revert, after a confirmation that lists what it will restore --------------------

    def ask(self, path: str) -> list[str]:
        """What a row's Revert button does: show what would be restored, with Revert/Cancel."""
        file = self._row(path)
        if not self.final:
            raise WorkspaceError("the run is still going: Revert waits for its end")
        lines = file.restores()
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        with batched(self.confirm_html, self.confirm_box):
            set_value(
                self.confirm_html,
                f'<div style="{WRAP}"><b>Revert {html.escape(path)}?</b> This will:'
                f'<ul style="margin:2px 0">{items}</ul>'
                f'<span style="color:{_GREY}">Other files stay as they are.</span></div>',
            )
            self.confirm_box.layout.display = "flex"
        self.pending = path
        return lines

    def confirm(self) -> RevertResult | None:
        """The confirmation's Revert button: undo the pending file's change."""
        path = self.pending
        if path is None:
            return None
        self.cancel()
        return self.revert(path)

    def cancel(self) -> None:
        self.pending = None
        with batched(self.confirm_html, self.confirm_box):
            set_value(self.confirm_html, "")
            self.confirm_box.layout.display = "none"

    def _row(self, path: str) -> FileRow:
        file = self.rows.get(path)
        if file is None:
            raise KeyError(f"{path!r} is not among the changed files: {list(self.rows)}")
        return file

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
        """Undo this run's change to ``path`` at once (what a confirmed Revert does)."""
        row = self._row(path)
        if not self.final:
            raise WorkspaceError("the run is still going: Revert waits for its end")
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
        return f'<span style="{WRAP}"><code>{kind}</code> <code>{path}</code>{counts}{state}</span>'

    def state(self) -> list[dict[str, Any]]:
        return [{"path": r.path, "kind": r.kind, "state": r.state} for r in self.rows.values()]


def merge_changes(before: list[FileChange], step: list[FileChange]) -> list[FileChange]:
    """A run's changes so far, after one more step's: a file it added stays added, one it
    added and then deleted is no change at all."""
    merged = {c.path: c for c in before}
    for change in step:
        earlier = merged.get(change.path)
        if earlier is not None and earlier.kind == "added":
            if change.kind == "deleted":
                del merged[change.path]
                continue
            change = FileChange(change.path, "added")
        merged[change.path] = change
    return list(merged.values())


__all__ = ["ChangesPanel", "FileRow", "merge_changes", "revert_paths"]
