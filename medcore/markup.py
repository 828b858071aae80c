"""Stored text shown literally: labels, folder and file names that came from users never act as markup.

A class name from an uploaded CSV, the folder name inside an uploaded zip or a file name can hold Markdown
(links, images), HTML or Plotly's own tags. Every place that renders such text as Markdown or in a chart
passes it through one of these first.
"""

from __future__ import annotations

import html

_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


def escape_markdown(text: str) -> str:
    """User-supplied text (a file name, a label) shown literally in Markdown: no links, no markup, no HTML."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(text))


def escape_chart_text(text: str) -> str:
    """Text for a Plotly label, tick or legend: Plotly renders <a href>, <b> and friends, entities it shows as text."""
    return html.escape(str(text), quote=False)
