"""``ticketflow review export|import`` as users run them, on 50 held tickets of an embedded
store written as the worker writes it: the export's files, an import's one-line refusals of
files that are not Label Studio's JSON, its fail-fast without a broker, ``--dry-run`` without
one, and the round trip on the real broker: the events read back from the feedback topic are
exactly the expected ones, and a second import publishes none."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.test_unreachable_broker import closed_port
from tests.review.test_labelstudio import N, annotate, as_expected, held_store, trained_world
from ticketflow.adapters.kafka.dlq import read_topic
from ticketflow.adapters.kafka.topics import create_topics, delete_topics
from ticketflow.cli import main
from ticketflow.config import Settings
from ticketflow.schemas.feedback import LabelFeedback

# The round trip's numbers (tests/review/test_labelstudio.py's annotate): 40 answers for
# stored tickets; 5 cancelled and 1 not annotated; 5 known queues in capitals, 1 task that is
# not ticketflow's and 1 ticket the store does not hold refused.
PUBLISHED, UNANSWERED, REFUSED = 40, 6, 7


@dataclass(frozen=True)
class Setup:
    root: Path
    known: dict[str, list[str]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("review-cli")
    world = trained_world(root)
    held_store(world, root / "chroma")
    return Setup(root, world.known)


@pytest.fixture
def env(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings of the setup's registry and store only (no .env, no ticketflow variable of
    the caller), state under ``tmp_path``; runs in an empty directory, returned."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(setup.root / "registry"))
    monkeypatch.setenv("CHROMA_PATH", str(setup.root / "chroma"))
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRIFT_REFERENCE_DIR", str(tmp_path / "reference"))
    return cwd


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def exported(setup: Setup, capsys: pytest.CaptureFixture[str]) -> Path:
    """``review export`` of every held ticket, annotated as Label Studio exports it."""
    assert exit_code(["review", "export", "--out", "tasks.json", "--config", "config.xml"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {N} of {N} held tickets as Label Studio tasks to tasks.json" in out
    tasks = json.loads(Path("tasks.json").read_text(encoding="utf-8"))
    annotated = annotate(tasks, setup.known)
    path = Path("project-3-at-2026-03-02.json")
    path.write_text(json.dumps(annotated.export, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.unit
def test_export_writes_tasks_and_the_labeling_config(
    setup: Setup, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported(setup, capsys)
    tasks = json.loads(Path("tasks.json").read_text(encoding="utf-8"))
    assert len(tasks) == N and all(task["predictions"] for task in tasks)
    config = ET.fromstring(Path("config.xml").read_text(encoding="utf-8"))
    assert [c.attrib["name"] for c in config.findall("Choices")] == list(setup.known)
    # Onto stdout: the tasks alone (the summary goes to stderr); --limit and --target.
    assert exit_code(["review", "export", "--limit", "3", "--target", "priority"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 3
    assert "wrote 3 of" in captured.err and "add --config FILE" in captured.err
    assert exit_code(["review", "export", "--target", "team"]) == 2
    assert "--target 'team': not a target of the served model" in capsys.readouterr().err


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        ("ticket_id,queue\nT-1,Billing\n", "not JSON at line 1"),
        ('{"data": {"ticket_id": "T-1"}}', "expected a list of tasks, got dict"),
        ('[{"ticket_id": "T-1", "queue": "IT", "annotation_id": 1}]', "JSON_MIN"),
    ],
)
def test_import_refuses_a_file_that_is_not_label_studio_json(
    env: Path, capsys: pytest.CaptureFixture[str], content: str | None, reason: str
) -> None:
    path = Path("export.json")
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert exit_code(["review", "import", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticketflow review: error: export.json: ")
    assert reason in lines[0]


@pytest.mark.unit
def test_import_fails_fast_without_a_broker(
    setup: Setup, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = exported(setup, capsys)
    servers = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", servers)
    assert exit_code(["review", "import", str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and servers in lines[0] and "KAFKA_BOOTSTRAP_SERVERS" in lines[0]


@pytest.mark.unit
def test_a_dry_run_prints_the_events_and_needs_no_broker(
    setup: Setup, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = exported(setup, capsys)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{closed_port()}")
    assert exit_code(["review", "import", str(path), "--dry-run"]) == 2  # some were refused
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    events = [LabelFeedback.model_validate_json(line) for line in lines[:-1]]
    tasks = json.loads(Path("tasks.json").read_text(encoding="utf-8"))
    expected = annotate(tasks, setup.known).expected
    assert {as_expected(e) for e in events} == {e for e in expected if e[0] != "T-not-stored"}
    assert lines[-1] == (
        f"would publish {PUBLISHED} answers to ticket-feedback; already published 0; "
        f"not answered {UNANSWERED} (cancelled, not annotated or answered again); "
        f"refused {REFUSED} (of {N + 3} tasks)"
    )
    refusals = [line for line in captured.err.splitlines() if line.startswith(f"{path}: ")]
    assert len(refusals) == REFUSED and all(": refused: task " in line for line in refusals)
    assert any("ticket T-not-stored: not in the vector store" in line for line in refusals)
    assert not (env.parent / "state").exists()  # nothing recorded as published


@pytest.fixture
def feedback_topic(kafka_config: dict[str, str]) -> Iterator[str]:
    topic = f"review-feedback-{uuid.uuid4().hex[:12]}"
    create_topics(kafka_config, [topic], partitions=3, replication=1)
    yield topic
    delete_topics(kafka_config, [topic], timeout=10.0)


@pytest.mark.integration
def test_import_publishes_each_answer_once_on_the_broker(
    setup: Setup,
    env: Path,
    kafka_bootstrap: str,
    kafka_config: dict[str, str],
    feedback_topic: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC_FEEDBACK", feedback_topic)
    path = exported(setup, capsys)
    tasks = json.loads(Path("tasks.json").read_text(encoding="utf-8"))
    expected = {e for e in annotate(tasks, setup.known).expected if e[0] != "T-not-stored"}

    assert exit_code(["review", "import", str(path)]) == 2  # some were refused
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(f"published {PUBLISHED} answers to {feedback_topic}; ")
    records = list(read_topic(kafka_config, feedback_topic))
    events = [LabelFeedback.model_validate_json(r.value or b"") for r in records]
    assert [r.key for r in records] == [e.ticket_id.encode() for e in events]
    assert len(events) == PUBLISHED and {as_expected(e) for e in events} == expected

    assert exit_code(["review", "import", str(path)]) == 2
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(
        f"published 0 answers to {feedback_topic}; already published {PUBLISHED} "
        f"({PUBLISHED} published by an earlier import); "
    )
    assert len(list(read_topic(kafka_config, feedback_topic))) == PUBLISHED
