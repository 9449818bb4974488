"""The ``orchestrate`` magic as registered by ``%load_ext``: a stand-in until its first use.

:class:`~.magics.OrchestratorMagics` opens the session store when it is made, and the store
needs the session models (pydantic); a kernel that loads the extension and never runs a cell
should not pay for them. The stand-in carries the same documentation (``%%orchestrate?``) and, on
the first call, makes the real magics, registers them in its place and hands the call over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from .magics import OrchestratorMagics

if TYPE_CHECKING:
    from collections.abc import Callable

_line_cell_magic: Any = line_cell_magic


def _same_doc(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn.__doc__ = OrchestratorMagics.orchestrate.__doc__
    return fn


@magics_class
class DeferredMagics(Magics):
    """Stands for :class:`OrchestratorMagics` until the magic is first used."""

    def __init__(self, shell: Any, loaded: dict[int, Any]) -> None:
        super().__init__(shell)
        self._loaded = loaded

    def real(self) -> OrchestratorMagics:
        """The real magics of this shell, made and registered on the first call."""
        key = id(self.shell)
        magics = self._loaded.get(key)
        if not isinstance(magics, OrchestratorMagics):
            magics = OrchestratorMagics(self.shell)
            self.shell.register_magics(magics)
            self._loaded[key] = magics
        return magics

    @_line_cell_magic
    @_same_doc
    def orchestrate(self, line: str, cell: str | None = None) -> Any:
        return self.real().orchestrate(line, cell)


__all__ = ["DeferredMagics"]
