"""A Markdown table (with its heading and notes) as a standalone HTML page, which Snakemake's report shows inline.

The report can only offer Markdown files for download; the rule ``table_html`` renders each table of a study with
markdown-it-py (CommonMark plus GitHub tables: the parser Jupyter and MyST use) into a page with readable table
styling: borders, a sticky header, alternating rows, tabular figures.
"""

from __future__ import annotations

import html
from pathlib import Path

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em; color: #1b1b1b; }
h1, h2, h3 { font-weight: 600; }
p { max-width: 60em; line-height: 1.4; }
table { border-collapse: collapse; font-size: 13px; margin: 0.8em 0 1.6em; }
th, td { border: 1px solid #c8c8c8; padding: 3px 8px; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #eef1f5; position: sticky; top: 0; }
tr:nth-child(even) td { background: #f8f9fb; }
code { background: #f2f2f2; padding: 0 3px; }
"""


def markdown_page(text: str, title: str) -> str:
    """``text`` (Markdown) as an HTML page titled ``title``; raw HTML in the text is escaped, not passed through."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head>\n<body>\n<h2>{html.escape(title)}</h2>\n{body}</body></html>\n")


def write_page(markdown: str | Path, out: str | Path, title: str, log: str | Path | None = None) -> None:
    """The Markdown file ``markdown`` as the HTML page ``out`` (and a line in ``log``)."""
    from .. import io

    text = Path(markdown).read_text()
    io.write_text(markdown_page(text, title), out)
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(f"{markdown} -> {out}: {len(text)} characters of Markdown\n")

