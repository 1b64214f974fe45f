"""The reports' plots: matplotlib figures returned as PNG bytes, to embed in a page
(:class:`~ticketflow.batch.reports.page.Figure`) or show in a notebook.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ticketflow.batch.reports.page import shorten

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, PNG bytes)
# ---------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def bar_figure(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str) -> bytes:
    """Horizontal bars, the first label on top."""
    plt = _pyplot()
    shown = [shorten(label, 40) for label in labels]
    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.28 * len(shown) + 1.2)))
    ax.barh(range(len(shown)), values, color="#4c72b0")
    ax.set_yticks(range(len(shown)), labels=shown, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def histogram_figure(
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    cuts: Sequence[tuple[float, str]] = (),
    bins: int = 60,
) -> bytes:
    """A histogram with vertical lines at ``cuts`` (value, legend label); the x axis stops at
    the 99.5th percentile (or past the last cut) so one huge ticket does not flatten it."""
    plt = _pyplot()
    data = np.asarray(values, dtype=np.float64)
    top = float(np.percentile(data, 99.5)) if len(data) else 1.0
    top = max([top, *(c * 1.1 for c, _ in cuts), 1.0])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.hist(np.clip(data, 0, top), bins=bins, range=(0, top), color="#4c72b0")
    for (value, label), colour in zip(cuts, ("#c44e52", "#dd8452", "#55a868"), strict=False):
        ax.axvline(value, color=colour, linestyle="--", linewidth=1.5, label=label)
    if cuts:
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tickets")
    ax.set_title(title)
    return _png(fig)


def heatmap_figure(
    matrix: npt.NDArray[np.float64],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    counts: npt.NDArray[np.int64] | None = None,
    xlabel: str = "",
    ylabel: str = "",
) -> bytes:
    """A heatmap of values in [0, 1]; ``counts`` are written in the cells when few enough."""
    plt = _pyplot()
    width = max(5.0, 0.45 * len(columns) + 3)
    height = max(3.0, 0.35 * len(rows) + 2)
    fig, ax = plt.subplots(figsize=(min(width, 14), min(height, 14)))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), labels=[shorten(c, 25) for c in columns], rotation=45)
    ax.set_yticks(range(len(rows)), labels=[shorten(r, 30) for r in rows])
    plt.setp(ax.get_xticklabels(), ha="right", fontsize=7)
    plt.setp(ax.get_yticklabels(), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if counts is not None and len(rows) * len(columns) <= 400:
        for i in range(len(rows)):
            for j in range(len(columns)):
                if counts[i, j]:
                    colour = "white" if matrix[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=colour
                    )
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _png(fig)


__all__ = [
    "bar_figure",
    "heatmap_figure",
    "histogram_figure",
]
