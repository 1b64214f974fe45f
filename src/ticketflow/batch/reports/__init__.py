"""Reports a data scientist would otherwise build in a notebook, as one self-contained page.

* :func:`build_data_report` profiles a labelled file (``ticketflow report data``): class
  balance, text length in characters and in model tokens, languages, tags, empty fields,
  exact and near duplicates, label co-occurrence between targets, telling terms per class.
  The page is assembled in :mod:`.data_report`; the numbers behind it are computed in
  :mod:`.profiling`.
* :func:`build_performance_report` scores the model's stored labels against the labels people
  gave (corrections) or files gave (imports) in the vector store (``ticketflow report
  performance``): Evidently's classification preset per target plus a plain summary
  (:mod:`.performance`).

What both share lives in :mod:`.page` (sections, tables, figures, links and the HTML
renderer) and :mod:`.plots` (matplotlib figures as PNG bytes). The computations are pure
functions over lists (unit-tested on their own); the renderer writes ``index.html`` with
every plot embedded as a base64 PNG, so the page is one file that opens anywhere, offline.
The methods are written down in docs/reports.md.

The names below are re-exported so that callers (the CLI, the notebooks) keep writing
``reports.build_data_report``; each has one home in a submodule.
"""

from __future__ import annotations

import logging

from ticketflow.batch.reports.data_report import (
    MAX_CLASSES_PLOTTED,
    DataReportOptions,
    build_data_report,
)
from ticketflow.batch.reports.page import (
    Block,
    Figure,
    Link,
    Page,
    Section,
    Table,
    render_html,
    write_page,
)
from ticketflow.batch.reports.performance import (
    Scored,
    build_performance_report,
    evidently_report,
    performance_summary,
    scored_labels,
    store_targets,
)
from ticketflow.batch.reports.plots import bar_figure, heatmap_figure, histogram_figure
from ticketflow.batch.reports.profiling import (
    MISSING,
    NEAR_DUPLICATE_QUERIES,
    NEAR_DUPLICATE_THRESHOLD,
    UNKNOWN,
    Profiled,
    TokenizerInfo,
    class_balance,
    cooccurrence,
    cramers_v,
    exact_duplicates,
    find_tokenizer,
    guess_language,
    guess_targets,
    length_summary,
    missing_fields,
    near_duplicates,
    read_profiled,
    tag_summary,
    telling_terms,
    token_lengths,
    wilson_interval,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_CLASSES_PLOTTED",
    "MISSING",
    "NEAR_DUPLICATE_QUERIES",
    "NEAR_DUPLICATE_THRESHOLD",
    "UNKNOWN",
    "Block",
    "DataReportOptions",
    "Figure",
    "Link",
    "Page",
    "Profiled",
    "Scored",
    "Section",
    "Table",
    "TokenizerInfo",
    "bar_figure",
    "build_data_report",
    "build_performance_report",
    "class_balance",
    "cooccurrence",
    "cramers_v",
    "evidently_report",
    "exact_duplicates",
    "find_tokenizer",
    "guess_language",
    "guess_targets",
    "heatmap_figure",
    "histogram_figure",
    "length_summary",
    "missing_fields",
    "near_duplicates",
    "performance_summary",
    "read_profiled",
    "render_html",
    "scored_labels",
    "store_targets",
    "tag_summary",
    "telling_terms",
    "token_lengths",
    "wilson_interval",
    "write_page",
]
