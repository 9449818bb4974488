"""How the panel fits its cell: rows that wrap, widgets that shrink, wide content that scrolls.

JupyterLab gives an output area about 800 px at its default width, less with the side bar open.
Every row of the panel is a wrapping flex box, every widget may shrink (``min_width="0"``,
widths as flex bases rather than fixed sizes), and what cannot wrap (tables, diffs) scrolls
inside its own box, so the panel itself never shows a horizontal scrollbar. Nothing is
``width: 100%``: widgets keep a 2 px margin, which 100% would add on top of the panel's width;
a box in a column stretches to the column's width by itself.
"""

from __future__ import annotations

from typing import Any

# Long names (a path, a file, a workflow) break anywhere rather than widen the panel.
WRAP = "overflow-wrap:anywhere;word-break:break-word"


def row(children: list[Any], **layout: Any) -> Any:
    """A horizontal row that wraps onto the next line when the cell is narrow."""
    import ipywidgets as widgets

    return widgets.HBox(
        children,
        layout=widgets.Layout(
            width="auto", min_width="0", flex_flow="row wrap", align_items="center", **layout
        ),
    )


def column(children: list[Any], **layout: Any) -> Any:
    import ipywidgets as widgets

    return widgets.VBox(children, layout=widgets.Layout(width="auto", min_width="0", **layout))


def flexible(widget: Any, basis: str, *, grow: int = 1) -> Any:
    """Let ``widget`` take ``basis`` when there is room and shrink below it when there is not."""
    widget.layout.flex = f"{grow} 1 {basis}"
    widget.layout.width = "auto"
    widget.layout.min_width = "0"
    return widget


def scroll_x(html: str) -> str:
    """Wide HTML (a table) in a box that scrolls by itself instead of widening the panel."""
    return f'<div style="max-width:100%;overflow-x:auto">{html}</div>'


__all__ = ["WRAP", "column", "flexible", "row", "scroll_x"]
