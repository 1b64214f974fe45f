"""The README and docs/ are a contract: every setting and every command is documented, the
configuration reference is current, the README stays short and no link points nowhere."""

import re
from pathlib import Path

import pytest

from ticketflow.cli import build_parser
from ticketflow.config import Settings
from ticketflow.devtools.config_docs import render_markdown

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
CONFIGURATION = ROOT / "docs" / "configuration.md"
DOCUMENTS = [README_PATH, *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) outside code spans; images too. Targets with a scheme or a bare anchor are
# not files in the repository.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE)}


def _links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = CODE_SPAN.sub("", text)
    return LINK.findall(text)


def test_configuration_doc_is_current() -> None:
    assert CONFIGURATION.exists(), (
        "run: python -m ticketflow.devtools.config_docs > docs/configuration.md"
    )
    assert CONFIGURATION.read_text(encoding="utf-8") == render_markdown(), (
        "docs/configuration.md is stale; run: "
        "python -m ticketflow.devtools.config_docs > docs/configuration.md"
    )


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    assert f"`{field.upper()}`" in CONFIGURATION.read_text(encoding="utf-8"), field


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands
    for name in commands:
        assert f"ticketflow {name}" in README, name


def test_readme_is_short() -> None:
    lines = len(README.splitlines())
    assert lines <= 200, f"README.md has {lines} lines; move details to docs/"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_at_files(document: Path) -> None:
    broken = []
    for target in _links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same document
        file_part, _, anchor = target.partition("#")
        path = (document.parent / file_part).resolve()
        if not path.exists():
            broken.append(target)
            continue
        if anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)}: broken links {broken}"
