"""The one place that runs git: argv lists, a clean environment, errors translated at the edge."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import WorkspaceError
from ..observe.redact import clip_tail

# Variables a parent process (a git hook, another tool) may have set that would silently point
# our commands at a different repository, index or worktree.
_INHERITED_GIT_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
)

# Synthetic commits (worktree bases, patches) must not depend on the user's identity settings.
IDENTITY_ENV = {
    "GIT_AUTHOR_NAME": "orchestrator-nb",
    "GIT_AUTHOR_EMAIL": "orchestrator-nb@localhost",
    "GIT_COMMITTER_NAME": "orchestrator-nb",
    "GIT_COMMITTER_EMAIL": "orchestrator-nb@localhost",
}

ZERO_OIDS = frozenset({"0" * 40, "0" * 64})


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_GIT_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    # Paths are data: '*' or ':' in a file name must never act as a glob or pathspec magic.
    env["GIT_LITERAL_PATHSPECS"] = "1"
    if extra:
        env.update(extra)
    return env


def run_git(
    args: Sequence[str],
    cwd: str | os.PathLike[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git -c core.quotepath=off <args>`` in ``cwd`` and return the completed process."""
    argv = ["git", "-c", "core.quotepath=off", *args]
    try:
        proc = subprocess.run(
            argv,
            cwd=os.fspath(cwd),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env=git_env(env),
            check=False,
        )
    except FileNotFoundError as exc:
        raise WorkspaceError(
            "git is not installed or not on PATH",
            hint="install git (apt-get install git) or use a workspace outside a git repository",
        ) from exc
    if check and proc.returncode != 0:
        try:
            proc.check_returncode()
        except subprocess.CalledProcessError as exc:
            raise git_error(argv, proc.returncode, proc.stderr) from exc
    return proc


def git_error(argv: Sequence[str], code: int, stderr: bytes) -> WorkspaceError:
    tail = clip_tail(stderr.decode("utf-8", "replace").strip(), 2000)
    shown = (
        " ".join(argv[3:]) if argv[:3] == ["git", "-c", "core.quotepath=off"] else " ".join(argv)
    )
    return WorkspaceError(
        f"`git {shown}` failed with exit {code}: {tail or '(no output)'}",
        hint="run the same git command in the workspace to see the problem",
    )


@dataclass(frozen=True)
class RepoInfo:
    """Where a workspace sits inside its git repository."""

    toplevel: Path
    prefix: str  # the workspace folder relative to ``toplevel``: "" or "sub/dir/"
    git_dir: Path
    common_dir: Path
    object_format: str  # "sha1" or "sha256"

    def git_path(self, name: str) -> Path:
        """A path inside the git dir as git resolves it (``info/`` lives in the common dir)."""
        out = run_git(["rev-parse", "--path-format=absolute", "--git-path", name], self.toplevel)
        return Path(out.stdout.decode("utf-8", "surrogateescape").rstrip("\n"))


def discover(path: Path) -> RepoInfo | None:
    """The repository ``path`` lies in, or None when it is not inside a work tree."""
    proc = run_git(
        [
            "rev-parse",
            "--path-format=absolute",
            "--is-inside-work-tree",
            "--show-toplevel",
            "--show-prefix",
            "--git-dir",
            "--git-common-dir",
            "--show-object-format",
        ],
        path,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        if "dubious ownership" in err:
            raise WorkspaceError(
                f"git refuses to work in {path}: the repository is owned by another user",
                hint=f"git config --global --add safe.directory {path}",
            )
        return None
    lines = proc.stdout.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) < 6 or lines[0] != "true":
        return None
    return RepoInfo(
        toplevel=Path(lines[1]),
        prefix=lines[2],
        git_dir=Path(lines[3]),
        common_dir=Path(lines[4]),
        object_format=lines[5] or "sha1",
    )


def drop_worktrees(top: Path, roots: Iterable[Path], branches: Sequence[str] = ()) -> None:
    """Remove worktrees the project made: their folders (a link is removed itself, never
    followed), then git's record of them in one prune, and ``branches`` in one ``branch -D``.

    The caller vouches that each root is its own (made by it, inside its state folder): the
    folder is deleted whatever git says, and two git calls serve any number of worktrees.
    """
    for root in roots:
        if root.is_symlink():
            root.unlink()
        elif root.exists():
            shutil.rmtree(root, ignore_errors=True)
    run_git(["worktree", "prune"], top, check=False)
    if branches:
        run_git(["branch", "-D", "--quiet", *branches], top, check=False)


def split_z(data: bytes) -> list[str]:
    """NUL-separated git output as str, keeping undecodable bytes round-trippable."""
    text = data.decode("utf-8", "surrogateescape")
    parts = text.split("\0")
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def cat_blobs(cwd: Path, oids: Iterable[str]) -> dict[str, bytes]:
    """Read many blobs with one ``git cat-file --batch``; missing ones are left out."""
    wanted = sorted(set(oids))
    if not wanted:
        return {}
    proc = run_git(["cat-file", "--batch"], cwd, input=("\n".join(wanted) + "\n").encode())
    out = proc.stdout
    found: dict[str, bytes] = {}
    pos = 0
    for _ in wanted:
        end = out.index(b"\n", pos)
        header = out[pos:end].decode("ascii", "replace").split()
        pos = end + 1
        if len(header) == 2 and header[1] == "missing":
            continue
        oid, kind, size = header[0], header[1], int(header[2])
        if kind == "blob":
            found[oid] = out[pos : pos + size]
        pos += size + 1
    return found
