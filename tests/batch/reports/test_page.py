"""The page renderer: everything a file brings is escaped."""

import pytest

from ticketflow.batch.reports.page import Page, Section, Table, render_html

pytestmark = pytest.mark.unit


def test_render_html_escapes_everything_from_the_file() -> None:
    page = Page(
        title="<b>t</b>",
        subtitle="s",
        sections=[Section("x", "X", ["<script>alert(1)</script>", Table(("c",), [("<i>",)])])],
    )
    text = render_html(page)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;i&gt;" in text
