"""Tell orchestrator-nb which values are secrets, beyond what it finds on its own.

It already masks the values of environment variables whose names look like credentials
(``*_API_KEY``, ``*_TOKEN``, ``*_PASSWORD`` ...) and well-known key formats (``sk-…``,
``ghp_…``). Add what it cannot guess::

    import orchestrator_nb
    orchestrator_nb.secrets.add(my_value)            # this exact value, wherever it appears
    orchestrator_nb.secrets.add_names("DATABASE_URL") # whatever this variable holds

The ``secrets:`` list in the settings and the agents' configured ``env:`` are registered the same
way when the settings are built. Values under 8 characters and common words (``true``) are ignored.
Masking happens at one boundary (:mod:`orchestrator_nb.observe.redact`), before anything is
written, shown, logged or exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .observe.redact import add_secret, add_secret_names, redact

if TYPE_CHECKING:
    from .config import Settings


def add(*values: str, source: str = "secret") -> None:
    """Mask these exact values from now on; ``source`` is shown in the ``[REDACTED:…]`` marker."""
    add_secret(*values, source=source)


def add_names(*names: str) -> None:
    """Mask whatever these environment variables hold, now and after they change."""
    add_secret_names(*names)


def register_settings(settings: Settings) -> None:
    """The ``secrets:`` names of ``settings`` and every agent's ``env:`` (names and values)."""
    add_secret_names(*settings.secrets)
    for name, agent in settings.agents.items():
        add_secret_names(*agent.env)
        for var, value in agent.env.items():
            add_secret(value, source=var or f"agents.{name}.env")


__all__ = ["add", "add_names", "redact", "register_settings"]
