"""Planted secrets and the searches for them, shared by the end-to-end secrets tests.

Fake values only; none is a working credential. Each is searched for whole and as every
12-character window, so a partly masked value counts as a leak.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OPENAI = "sk-proj-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0UvWx"
TOKEN = "svc7f3a9b2c4d5e6f708192a3b4c5d6"  # no known format: caught by its name only
PASSWORD = 'hunter2-Correct&Horse"Staple'  # escapes differently in HTML and JSON
MODEL = "model-" + "Qz8Xw7Vu6Ts5Rq4Po3"  # a model name the user registers as secret
ENV = {"OPENAI_API_KEY": OPENAI, "MY_SERVICE_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD}
PLANTED = (OPENAI, TOKEN, PASSWORD, MODEL)
# A file the agent writes, named after a secret (its name shows in diffs and change lists).
SECRET_FILE = f"leak-{TOKEN}.txt"


def windows(secret: str, size: int = 12) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)] or [secret]


def leaks(text: str, secrets: Iterable[str] = PLANTED) -> list[str]:
    """The secrets of which some 12-character piece occurs in ``text``."""
    return sorted({s for s in secrets for w in windows(s) if w in text})


def spoken() -> str:
    """What the scripted model says: every secret, each split by the rehearsal's 48-char deltas.

    The rehearsal cuts text into deltas at spaces within 48 characters; runs without spaces
    before each secret put the cut inside it.
    """
    parts = []
    for i, secret in enumerate((OPENAI, TOKEN, PASSWORD)):
        parts.append("p" * (30 + i * 7) + secret + "q" * 20)
    return "Found these: " + " ".join(parts) + " and a diff."


def scenario(path: Path) -> Path:
    """A scenario (JSON is YAML) where any agent says the secrets and writes a file with one."""
    body = {
        "name": "secrets",
        "description": "the model says every planted secret, in pieces",
        "turns": [
            {
                "actions": [
                    {"say": spoken()},
                    {"write": {"path": SECRET_FILE, "content": f"token={TOKEN}\n"}},
                    {"say": f"Wrote {SECRET_FILE}. Again: {spoken()}"},
                ]
            }
        ],
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def leaks_in(obj: Any, secrets: Iterable[str] = PLANTED) -> list[str]:
    return leaks(json.dumps(obj, ensure_ascii=False, default=str), secrets)
