"""Every writer and publisher in the package is listed here; a new one must go through the boundary.

Text leaves the process in two ways: files (through :mod:`orchestrator_nb.fsio`, which redacts
artifacts) and views (display messages, widget values, console lines: through
:mod:`orchestrator_nb.publish`, which redacts them). A static scan of ``orchestrator_nb/`` finds
every call that writes or publishes; each hit must be in one of those two modules or in the list
below, with the reason it is safe. A new ``print(``, ``display(``, ``.value =`` or ``open(...)``
anywhere else fails this test until it uses the boundary (or is listed here, with its reason).
"""

from __future__ import annotations

import re
from pathlib import Path

import orchestrator_nb

PACKAGE = Path(orchestrator_nb.__file__).parent

PATTERNS = {
    "display(": r"(?<![\w.])display\(|\.display\(",
    "update_display": r"update_display",
    "publish_display_data": r"publish_display_data",
    ".publish(": r"\.publish\(",
    ".value =": r"\.value\s*=(?!=)",
    ".outputs =": r"(?<!self)\.outputs\s*=(?!=)",
    # A widget made with text that is not a plain constant.
    "HTML(": r"\bHTML\((?!\"[^\"{]*\"\s*[,)]|\)|'[^'{]*'\s*[,)])",
    # A widget trait built from data (a path, a task) without redact().
    "widget text": r"\b(?:tooltip|description|placeholder)=f[\"']",
    "print(": r"(?<![\w.])print\(",
    "open(": r"(?<![\w.])open\(|\bos\.open\(|\bos\.fdopen\(",
    "os.write": r"\bos\.write\(|\bos\.pwrite\(",
    "write_text": r"(?<!fsio)\.write_text\(|(?<!fsio)\.write_bytes\(",
    # fsio's unredacted writes: only for bytes that must stay exact (copies, keys, signed text).
    "raw fsio write": r"\bfsio\.write_bytes\(|(?<![\w.])write_bytes\(|\bredact=False",
    "os.replace": r"\bos\.replace\(|\bos\.rename\(",
    "stream write": r"sys\.(?:stdout|stderr)\.write\(",
}

BOUNDARY = {"publish.py", "fsio.py"}

# file -> (what it may do, why that cannot leak a secret)
LISTED: dict[str, tuple[set[str], str]] = {
    "cli.py": ({"open("}, "os.open(os.devnull) to silence a child's stdout; writes go via fsio"),
    "acpserver/server.py": (
        {"open("},
        "os.fdopen of the protocol's own stdout: JSON-RPC frames built from redacted updates",
    ),
    "trust_store.py": ({"open("}, "reads a workspace's CLI settings to hash them; writes nothing"),
    "process.py": ({"open("}, "the raw stream log, written only through _RedactedLog (streaming)"),
    "observe/audit.py": (
        {"open(", "os.write", "os.replace", "raw fsio write"},
        "the audit trail: records are redacted before the write; the head file holds hashes",
    ),
    "observe/audit_keys.py": (
        {"raw fsio write"},
        "the audit signing key itself, stored on purpose (0600, the user's config folder)",
    ),
    "observe/receipts.py": (
        {"raw fsio write"},
        "a signed receipt: its payload is redacted before signing and must stay byte-exact",
    ),
    "procio.py": ({"os.write"}, "the prompt written to the agent's stdin pipe: not a file"),
    "proctree.py": ({"open("}, "reads /proc/<pid>/environ to find our processes; writes nothing"),
    "observe/logs.py": (
        {"open(", "os.write", "stream write"},
        "log lines: the structlog chain redacts every event last, before any sink",
    ),
    "session_file.py": (
        {"raw fsio write"},
        "the session log: each record is redacted value by value (_line) before it is joined",
    ),
    "workflow/cache.py": (
        {"raw fsio write"},
        "the step cache: the engine redacts results on put; the HMAC covers the exact text",
    ),
    "batching/journal.py": (
        {"open(", "raw fsio write"},
        "the batch journal: records redacted value by value; raw only the newline ending a torn "
        "one (open( is its own open())",
    ),
    "batching/result.py": (
        {"open(", "write_text"},
        "BatchResult.save: the user's own export of results whose text is redacted",
    ),
    "workspace/safe_write.py": (
        {"open(", "os.write", "os.replace"},
        "the agent's own writes into the user's workspace: the user's files, never rewritten",
    ),
    "workspace/store.py": (
        {"open(", "raw fsio write"},
        "the object store: exact copies of the user's files (and its index of hashes)",
    ),
    "workspace/lock.py": (
        {"raw fsio write"},
        "an isolated run's patch: changes to the user's own files, applied back byte-exact",
    ),
    "workspace/revert.py": ({"open(", "os.write"}, "the revert log: paths and hashes"),
    "workspace/state.py": (
        {"open(", "os.write", "write_text"},
        "the state folder's .gitignore and .git/info/exclude: constant lines",
    ),
    "workspace/worktree.py": ({"os.replace", "write_text"}, "owner.json: pid, host and run id"),
    "scaleout/repo.py": ({"open(", "write_text"}, "a git bundle of the user's repository"),
    "rehearsal/session.py": (
        {"write_text"},
        "the rehearsal's own home folder: constant CLI settings and a git identity",
    ),
    "rehearsal/tools.py": ({"open(", "write_text"}, "a script run by the rehearsed CLI"),
}


def _hits() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("#", 1)[0]
            if re.match(r"\s*(def|class)\s", code):
                continue
            for name, rx in PATTERNS.items():
                if re.search(rx, code):
                    found.setdefault(rel, set()).add(name)
    return found


def test_every_writer_and_publisher_goes_through_the_boundary() -> None:
    hits = _hits()
    assert hits, "the scan found nothing: the patterns no longer match the package"
    bypass = {
        rel: sorted(names - LISTED.get(rel, (set(), ""))[0])
        for rel, names in hits.items()
        if rel not in BOUNDARY and names - LISTED.get(rel, (set(), ""))[0]
    }
    assert not bypass, (
        f"writers or publishers outside orchestrator_nb.fsio / orchestrator_nb.publish: {bypass}; "
        "use fsio.write_text/write_json/append_* for files and publish.show/emit/say/set_value "
        "for views, or list the call here with the reason it cannot leak a secret"
    )


def test_the_scan_sees_a_new_bypass(tmp_path: Path) -> None:
    # The patterns must catch the calls this test exists for (else it cannot fail).
    samples = {
        "print(": "print(task)",
        "widget text": 'Button(tooltip=f"diff of {path}")',
        "display(": "display(HTML(body))",
        ".value =": "self.status.value = text",
        ".outputs =": "area.outputs = (bundle,)",
        "HTML(": "widgets.HTML(f'<b>{task}</b>')",
        "open(": "with open(path, 'w') as f:",
        "write_text": "path.write_text(text)",
        "os.replace": "os.replace(tmp, path)",
        "raw fsio write": "fsio.write_text(path, text, redact=False)",
        ".publish(": "shell.display_pub.publish(data=bundle)",
    }
    for name, code in samples.items():
        assert re.search(PATTERNS[name], code), name
    assert re.search(PATTERNS["raw fsio write"], "write_bytes(path, data)")  # imported by name
    assert not re.search(PATTERNS["HTML("], 'widgets.HTML("idle")')
