"""What every report page is made of and how it is written: sections of sentences, tables,
figures and links, rendered as one self-contained HTML document (no script, no external
asset) next to ``summary.json``. Everything the file shows is escaped here, once.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Report structure and HTML
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: Sequence[tuple[object, ...]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    png: bytes
    alt: str


@dataclass(frozen=True)
class Link:
    href: str
    text: str
    frame: bool = False  # also show the page in an iframe


Block = str | Table | Figure | Link


@dataclass
class Section:
    key: str  # the HTML id; tests and links rely on it
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Page:
    title: str
    subtitle: str
    sections: list[Section]
    summary: dict[str, Any] = field(default_factory=dict)  # written as summary.json


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:1rem 2rem;color:#1b1f24;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
.subtitle{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2rem 0}
figure{margin:.6rem 0 1rem}img{max-width:100%;height:auto}
figcaption{color:#57606a;font-size:.85rem}
nav ol{columns:2}iframe{width:100%;height:900px;border:1px solid #d0d7de}
p.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .7rem}
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        text = "–" if math.isnan(value) else f"{value:,.3f}"
        return f'<td class="num">{text}</td>'
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f'<td class="num">{int(value):,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _render_block(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in block.rows)
        caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        alt = html.escape(block.alt, quote=True)
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(block.alt)}</figcaption></figure>"
        )
    if isinstance(block, Link):
        href = html.escape(block.href, quote=True)
        link = f'<p><a href="{href}">{html.escape(block.text)}</a></p>'
        if block.frame:
            link += f'<iframe src="{href}" title="{html.escape(block.text, quote=True)}"></iframe>'
        return link
    if block.startswith("!"):  # a warning the reader must not miss
        return f'<p class="note">{html.escape(block[1:])}</p>'
    return f"<p>{html.escape(block)}</p>"


def render_html(page: Page) -> str:
    """The page as one HTML document: no script, no external asset."""
    toc = "".join(
        f'<li><a href="#{html.escape(s.key)}">{html.escape(s.title)}</a></li>'
        for s in page.sections
    )
    sections = "".join(
        f'<section id="{html.escape(s.key)}"><h2>{html.escape(s.title)}</h2>'
        + "".join(_render_block(b) for b in s.blocks)
        + "</section>"
        for s in page.sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(page.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(page.title)}</h1>"
        f'<p class="subtitle">{html.escape(page.subtitle)}</p>'
        f"<nav><ol>{toc}</ol></nav>{sections}</body></html>\n"
    )


def write_page(page: Page, out_dir: Path) -> Path:
    """``out_dir/index.html`` and ``out_dir/summary.json`` (the numbers behind the page)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(render_html(page), encoding="utf-8")
    (out_dir / "summary.json").write_text(
        json.dumps(page.summary, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    logger.info("wrote %s", index)
    return index


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path | datetime):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = [
    "Block",
    "Figure",
    "Link",
    "Page",
    "Section",
    "Table",
    "render_html",
    "shorten",
    "write_page",
]
