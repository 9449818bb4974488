"""The one way out to a person: display messages, widget values, console lines.

Everything the project shows passes through here and is redacted on the way
(:mod:`orchestrator_nb.observe.redact`), so a new view cannot forget it; files go through
:mod:`orchestrator_nb.fsio` the same way. ``tests/observe/test_obs_boundary.py`` lists every
writer and publisher in the package and fails when one bypasses these two modules.

Text that is still growing (a step streaming) must be cut with
:func:`~orchestrator_nb.observe.redact.redact_live` by the view that accumulates it: only the view
knows that the end of its text is not the end of the stream.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from .observe.redact import redact, redact_obj

Bundle = Mapping[str, Any]


def redact_bundle(bundle: Bundle) -> dict[str, Any]:
    """A display bundle (mime type to data) with every string in it redacted."""
    return {
        str(k): redact_obj(v) if not isinstance(v, str) else redact(v) for k, v in bundle.items()
    }


def emit(
    publisher: Any,
    bundle: Bundle,
    *,
    display_id: str | None = None,
    update: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Send one display message (or an update of ``display_id``) through ``publisher``.

    ``publisher`` is an IPython ``DisplayPublisher`` (``shell.display_pub``).
    """
    transient = {"display_id": display_id} if display_id is not None else None
    publisher.publish(
        data=redact_bundle(bundle),
        metadata=redact_obj(dict(metadata or {})),
        transient=transient,
        update=update,
    )


def _shell() -> Any:
    from IPython.core.getipython import get_ipython

    return get_ipython()


def format_bundle(obj: Any) -> dict[str, Any]:
    """What IPython would display for ``obj``, redacted."""
    shell = _shell()
    if shell is None:
        return {"text/plain": redact(str(obj))}
    data, _metadata = shell.display_formatter.format(obj)
    return redact_bundle(data)


def show(obj: Any, *, display_id: str | None = None, update: bool = False) -> None:
    """Display ``obj`` in the current cell (or update ``display_id``); print it without IPython."""
    shell = _shell()
    if shell is None:
        say(obj)
        return
    emit(shell.display_pub, format_bundle(obj), display_id=display_id, update=update)


def say(*parts: object, file: TextIO | None = None, sep: str = " ", end: str = "\n") -> None:
    """``print`` for the console and the cell's stream output, redacted."""
    out = file if file is not None else sys.stdout
    out.write(redact(sep.join(str(p) for p in parts)) + end)
    out.flush()


def set_value(widget: Any, value: Any, trait: str = "value") -> None:
    """Set a widget's trait (sent to every frontend), redacted; an unchanged value is not sent."""
    if isinstance(value, str):
        clean: Any = redact(value)
    elif isinstance(value, tuple) and all(isinstance(v, Mapping) for v in value):
        clean = tuple(redact_obj(v) for v in value)  # Output.outputs: a tuple of dicts
    elif value is None or isinstance(value, (bool, int, float, tuple, list)):
        clean = value  # numbers, flags and widget children are not text
    else:
        clean = redact_obj(value)
    if getattr(widget, trait, None) != clean:
        setattr(widget, trait, clean)


def set_outputs(area: Any, bundles: Iterable[Bundle]) -> None:
    """Replace what an ``ipywidgets.Output`` shows with these display bundles, redacted."""
    outputs = tuple(
        {"output_type": "display_data", "data": redact_bundle(b), "metadata": {}} for b in bundles
    )
    if tuple(getattr(area, "outputs", ())) != outputs:
        area.outputs = outputs


def _ours(obj: object) -> bool:
    return type(obj).__module__.split(".", 1)[0] == __name__.split(".", 1)[0]


def install(shell: Any) -> None:
    """Redact every bundle IPython formats for the project's objects (cell results included).

    Objects returned by a magic or left as a cell's last value are formatted by IPython's
    display hook, not by :func:`show`; wrapping the formatter puts them behind the same boundary.
    The user's own objects are left as they are.
    """
    formatter = shell.display_formatter
    if getattr(formatter.format, "_redacts", False):
        return
    original = formatter.format

    def format(obj: Any, include: Any = None, exclude: Any = None) -> Any:
        data, metadata = original(obj, include=include, exclude=exclude)
        if _ours(obj):
            return redact_bundle(data), redact_obj(metadata)
        return data, metadata

    format._redacts = True  # type: ignore[attr-defined]
    formatter.format = format


def html_widget(value: str = "", **kwargs: Any) -> Any:
    """An ``ipywidgets.HTML`` whose first value is redacted like every later one."""
    import ipywidgets as widgets

    return widgets.HTML(redact(value), **kwargs)


__all__ = [
    "emit",
    "format_bundle",
    "html_widget",
    "install",
    "redact_bundle",
    "say",
    "set_outputs",
    "set_value",
    "show",
]
