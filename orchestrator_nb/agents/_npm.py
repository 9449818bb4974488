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
from .base import AgentRequest, StreamParser


def node_env(executable: str) -> dict[str, str]:
    """``PATH`` with the executable's folder first when a ``node`` was installed beside it.

    The CLIs are ``#!/usr/bin/env node`` scripts, so the first ``node`` on PATH runs them. On a
    machine whose Node is too old for them, ``make agents`` installs a Node from npm into the
    same ``node_modules/.bin`` folder: putting that folder first makes the CLIs run on it.
    """
    folder = os.path.dirname(executable)
    node = os.path.join(folder, "node")
    if not folder or not (os.path.isfile(node) and os.access(node, os.X_OK)):
        return {}
    return {"PATH": os.pathsep.join([folder, os.environ.get("PATH", os.defpath)])}


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
