"""What the four npm-installed agent CLIs' drivers have in common.

Each subclass names its CLI, its permission modes and its version line, and builds its argv;
validation of the mode, the genuineness check, the install hint and the environment are here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from typing import ClassVar

from ..errors import AgentConfigError
from ..events import Usage
from ..userdirs import user_cache_dir
from .base import AgentRequest, StreamParser


def node_env(executable: str) -> dict[str, str]:
    """``PATH`` with the executable's folder first when a ``node`` was installed beside it, and
    Node's compile cache in the user's cache folder.

    The CLIs are ``#!/usr/bin/env node`` scripts, so the first ``node`` on PATH runs them. On a
    machine whose Node is too old for them, ``make agents`` installs a Node from npm into the
    same ``node_modules/.bin`` folder: putting that folder first makes the CLIs run on it.

    A Node CLI compiles tens of megabytes of bundled JavaScript on every start (gemini: most of
    its second); Node 22's compile cache keeps that work between starts (a gemini step 1.05 s ->
    0.87 s). It holds compiled code only, checked against the source, so it is shared by every
    run, rehearsed or not; older Nodes ignore the variable, ``NODE_DISABLE_COMPILE_CACHE=1``
    turns it off, and a cache the user set already is kept.
    """
    env: dict[str, str] = {}
    if not os.environ.get("NODE_COMPILE_CACHE"):
        env["NODE_COMPILE_CACHE"] = str(user_cache_dir() / "node-compile-cache")
    folder = os.path.dirname(executable)
    if folder and node_beside(folder):
        env["PATH"] = os.pathsep.join([folder, os.environ.get("PATH", os.defpath)])
    return env


def node_beside(folder: str | os.PathLike[str]) -> str | None:
    """The ``node`` that ``make agents`` installed in ``folder`` (a CLI's own folder), if any:
    the one the CLIs there run on (see :func:`node_env`)."""
    node = os.path.join(folder, "node")
    return node if os.path.isfile(node) and os.access(node, os.X_OK) else None


class NpmCliDriver:
    name: str
    executable: str
    npm_package: str | None = None
    prompt_via = "arg"
    default_permission_mode: ClassVar[str]
    permission_modes: ClassVar[Collection[str]]
    mode_label: ClassVar[str] = "permission mode"  # what the CLI itself calls it
    version_re: ClassVar[re.Pattern[str]]
    extra_env: ClassVar[dict[str, str]] = {}
    parser_class: ClassVar[Callable[[], StreamParser]]

    def permission_mode(self, request: AgentRequest) -> str:
        mode = request.permission_mode or self.default_permission_mode
        if mode not in self.permission_modes:
            raise AgentConfigError(
                f"unknown {self.name} {self.mode_label} {mode!r}",
                agent=self.name,
                hint=f"use one of: {', '.join(self.permission_modes)}",
            )
        return mode

    def env(self, request: AgentRequest) -> dict[str, str]:
        return {"NO_COLOR": "1", **self.extra_env, **node_env(request.executable)}

    def new_parser(self, previous_usage: Usage | None = None) -> StreamParser:
        # Most streams report usage per run, so a resumed session has nothing to subtract.
        return type(self).parser_class()

    def is_genuine(self, version_output: str) -> bool:
        return bool(self.version_re.search(version_output))

    def install_hint(self) -> str:
        return f"npm install -g {self.npm_package}"
