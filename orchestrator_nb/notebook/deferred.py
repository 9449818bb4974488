"""The ``orchestrate`` magic as registered by ``%load_ext``: a stand-in until its first use.

:class:`~.magics.OrchestratorMagics` opens the session store when it is made, and the store
needs the session models (pydantic); a kernel that loads the extension and never runs a cell
should not pay for them. The stand-in carries the same documentation (``%%orchestrate?``) and, on
the first call, makes the real magics, registers them in its place and hands the call over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from IPython.core.magic import Magics, line_cell_magic, magics_class

from .. import _preload
from .magics import OrchestratorMagics, _empty_body

F = TypeVar("F", bound=Callable[..., Any])
_line_cell_magic: Any = line_cell_magic


def _as_the_magic(fn: F) -> F:
    """A line and cell magic documented as :meth:`OrchestratorMagics.orchestrate` is."""
    fn.__doc__ = OrchestratorMagics.orchestrate.__doc__
    return cast(F, _line_cell_magic(fn))


@magics_class
class DeferredMagics(Magics):
    """Stands for :class:`OrchestratorMagics` until the magic is first used."""

    def __init__(self, shell: Any, loaded: dict[int, Any]) -> None:
        super().__init__(shell)
        self._loaded = loaded
        # The real magics' input transformer must be there before the first cell is parsed.
        cleanup = getattr(shell, "input_transformers_cleanup", None)
        if isinstance(cleanup, list) and _empty_body not in cleanup:
            cleanup.append(_empty_body)

    def real(self) -> OrchestratorMagics:
        """The real magics of this shell, made and registered on the first call."""
        shell: Any = self.shell
        key = id(shell)
        magics = self._loaded.get(key)
        if not isinstance(magics, OrchestratorMagics):
            magics = OrchestratorMagics(shell)
            shell.register_magics(magics)
            self._loaded[key] = magics
        return magics

    @_as_the_magic
    def orchestrate(self, line: str, cell: str | None = None) -> Any:
        _preload.wait()  # never import the package from two threads at once
        return self.real().orchestrate(line, cell)


__all__ = ["DeferredMagics"]
