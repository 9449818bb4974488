"""orchestrator-nb: several AI coding CLIs working together from a Jupyter notebook."""

from __future__ import annotations

__version__ = "0.1.0"
