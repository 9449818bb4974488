"""``python -m orchestrator_nb.acpserver [ARGS]``: the same as ``orchestrator-nb acp [ARGS]``.

Clients that start the agent themselves (Jupyter AI's persona) use this form: it needs no
console script on ``PATH``, only the interpreter the package is installed in.
"""

from __future__ import annotations

import sys

from ..cli import main

if __name__ == "__main__":
    raise SystemExit(main(["acp", *sys.argv[1:]]))
