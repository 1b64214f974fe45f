"""The Label Studio round trip on 50 held tickets of a store written as the worker writes it
(a real model on a cheap encoder, an embedded ChromaDB): tasks out in Label Studio's import
format, annotated as Label Studio exports them (confirmed, changed, a new label, cancelled,
a case variant of a class, several annotations of one task), back in as exactly the expected
``LabelFeedback`` events; a second import publishes nothing; the labeling config is XML that
survives hostile class names.

The export this file builds follows Label Studio's documented JSON export ("Label Studio JSON
format of annotated tasks", docs/source/guide/export.md): tasks with ``id``, ``data``,
``annotations`` (``id``, ``result``, ``was_cancelled``, ``completed_by``, ``created_at``,
``updated_at`` …) and the imported ``predictions``. tests/cli/test_review.py reuses it.
"""

from __future__ import annotations

import copy
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HashingEncoder
from tests.serve.test_app import _train
from tests.serve.test_desk import write_like_the_worker
from ticketflow.adapters.store import ChromaVectorStore, StoredRecord, open_chroma_client
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.serving import ServingEncoders, make_pipeline
from ticketflow.review.labelstudio import (
    NO_TEXT,
    ImportLedger,
    LabelStudioFormatError,
    Problem,
    Seen,
    feedback_from_export,
    label_config,
    tasks,
    unpublished,
)
from ticketflow.review.queue import HeldTicket, ReviewQueue
from ticketflow.schemas import Ticket
from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.stream.feedback import apply_feedback

pytestmark = pytest.mark.unit

N = 50
NEW_LABEL = "Drones"
ANNOTATOR = 7  # Label Studio's user id, as its export gives completed_by
EMAIL = "ann@example.com"  # older exports give completed_by as an object
T1, T2, T3 = "2026-03-02T10:00:00.000000Z", "2026-03-02T11:30:00.5Z", "2026-03-02T12:00:00Z"
GHOST = "T-not-stored"

Expected = tuple[str, tuple[tuple[str, str], ...], str, str | None, datetime]


@dataclass(frozen=True)
class World:
    registry: ModelRegistry
    version: str
    pipeline: LabelingPipeline

    @property
    def known(self) -> dict[str, list[str]]:
        classifier = self.pipeline.classifier
        return {target: classifier.labels(target) for target in classifier.targets}


def trained_world(root: Path) -> World:
    """A model trained with the cheap encoder, current in a registry under ``root``."""
    data = root / "train.jsonl"
    data.write_text("\n".join(json.dumps(t) for t in generate_tickets(300, seed=1)) + "\n")
    registry = ModelRegistry(root / "registry")
    version = _train(registry, data)
    model = registry.load(version)
    pipeline = make_pipeline(ServingEncoders(HashingEncoder(), registry_dir=registry.root), model)
    return World(registry, version, pipeline)


def held_store(world: World, path: Path, n: int = N) -> ChromaVectorStore:
    """An embedded store at ``path`` holding ``n`` tickets the worker held for review (every
    one: the test cuts hold them all), with their text and tags."""
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=path),
        "tickets",
        embedding_model=world.pipeline.vector_model,
        dimension=world.pipeline.dimension,
    )
    tickets = [Ticket.model_validate(t) for t in generate_tickets(n, seed=9)]
    write_like_the_worker(store, world.pipeline, tickets, world.version)
    return store


def exported_tasks(store: ChromaVectorStore, world: World) -> list[dict[str, Any]]:
    """What ``ticketflow review export`` writes for ``store``."""
    page = ReviewQueue(store, lambda: world.pipeline.classifier.targets).page(limit=10_000)
    ids = [t.ticket_id for t in page.items]
    return tasks(page.items, store.records(ids, documents=True), world.known, world.version)


def _choice(target: str, label: str, origin: str = "manual") -> dict[str, Any]:
    return {
        "id": f"r-{target}",
        "from_name": target,
        "to_name": "text",
        "type": "choices",
        "origin": origin,
        "value": {"choices": [label]},
    }


def _annotation(
    annotation_id: int,
    result: list[dict[str, Any]],
    *,
    by: object = ANNOTATOR,
    at: str = T1,
    cancelled: bool = False,
) -> dict[str, Any]:
    return {
        "id": annotation_id,
        "completed_by": by,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": at,
        "updated_at": at,
        "lead_time": 4.2,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"u-{annotation_id}",
        "import_id": None,
        "last_action": None,
        "task": annotation_id // 10,
        "project": 3,
        "updated_by": by if isinstance(by, int) else None,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Annotated:
    """A simulated Label Studio export of exported tasks, and what importing it must give."""

    export: list[dict[str, Any]]
    expected: set[Expected]  # (ticket, labels, by, comment, at) of every feedback event
    refused: set[str]  # ticket ids (or "-" without one) of the refused tasks
    unanswered: set[str]  # ticket ids of tasks without an answer to publish


def annotate(
    exported: Sequence[Mapping[str, Any]], known: Mapping[str, Sequence[str]]
) -> Annotated:
    """Label Studio's JSON export after annotators answered ``exported`` tasks, by position:
    0-3 of every 10 confirm the pre-annotations, 4-5 change the queue (annotator given as an
    object with an email), 6 give a new queue with a comment, 7 are cancelled, 8 give a known
    queue in capitals, 9 are answered twice (the later one confirms) and cancelled once
    more. Then a task that is not ticketflow's, a stored ticket nobody annotated, and a
    ticket the store does not hold."""
    export: list[dict[str, Any]] = []
    expected: set[Expected] = set()
    refused: set[str] = set()
    unanswered: set[str] = set()
    who = f"label-studio:{ANNOTATOR}"
    for i, task in enumerate(exported):
        ticket_id = task["data"]["ticket_id"]
        predicted = {
            r["from_name"]: r["value"]["choices"][0] for r in task["predictions"][0]["result"]
        }
        confirm = [_choice(t, label, "prediction") for t, label in predicted.items()]
        other = next(k for k in known["queue"] if k != predicted["queue"])
        kind = i % 10
        if kind <= 3:
            annotations = [_annotation(10 * i, confirm)]
            expected.add((ticket_id, tuple(sorted(predicted.items())), who, None, _at(T1)))
        elif kind <= 5:
            changed = {**predicted, "queue": other}
            result = [
                _choice("queue", other),
                _choice("priority", predicted["priority"], "prediction"),
            ]
            annotations = [_annotation(10 * i, result, by={"id": 8, "email": EMAIL}, at=T2)]
            expected.add(
                (ticket_id, tuple(sorted(changed.items())), f"label-studio:{EMAIL}", None, _at(T2))
            )
        elif kind == 6:
            comment = {
                "id": "c",
                "from_name": "comment",
                "to_name": "text",
                "type": "textarea",
                "value": {"text": ["a queue the model does not know"]},
            }
            annotations = [_annotation(10 * i, [_choice("queue", NEW_LABEL), comment])]
            expected.add(
                (
                    ticket_id,
                    (("queue", NEW_LABEL),),
                    who,
                    "a queue the model does not know",
                    _at(T1),
                )
            )
        elif kind == 7:
            annotations = [_annotation(10 * i, [], cancelled=True)]
            unanswered.add(ticket_id)
        elif kind == 8:
            shouted = known["queue"][0].upper()
            assert shouted not in known["queue"]
            annotations = [_annotation(10 * i, [_choice("queue", shouted)])]
            refused.add(ticket_id)
        else:
            annotations = [
                _annotation(10 * i + 2, [], at=T3, cancelled=True),
                _annotation(10 * i + 1, confirm, at=T2),
                _annotation(10 * i, [_choice("queue", other)], at=T1),
            ]
            expected.add((ticket_id, tuple(sorted(predicted.items())), who, None, _at(T2)))
        export.append(
            {
                "id": 100 + i,
                "data": copy.deepcopy(task["data"]),
                "annotations": annotations,
                "predictions": [{**task["predictions"][0], "id": 500 + i, "created_ago": "1 hour"}],
                "drafts": [],
                "meta": {},
                "created_at": T1,
                "updated_at": T2,
                "inner_id": i + 1,
                "total_annotations": len(annotations),
                "cancelled_annotations": 0,
                "total_predictions": 1,
                "comment_count": 0,
                "unresolved_comment_count": 0,
                "last_comment_updated_at": None,
                "project": 3,
                "updated_by": None,
                "file_upload": "tasks.json",
                "comment_authors": [],
            }
        )
    queue = known["queue"][0]
    export.append(
        {
            "id": 900,
            "data": {"text": "someone else's task"},
            "annotations": [_annotation(9000, [_choice("queue", queue)])],
        }
    )
    refused.add("-")
    export.append(
        {"id": 901, "data": {"ticket_id": "T-unannotated", "text": "x"}, "annotations": []}
    )
    unanswered.add("T-unannotated")
    export.append(
        {
            "id": 902,
            "data": {"ticket_id": GHOST, "text": "x"},
            "annotations": [_annotation(9020, [_choice("queue", queue)])],
        }
    )
    expected.add((GHOST, (("queue", queue),), who, None, _at(T1)))
    return Annotated(export, expected, refused, unanswered)


def as_expected(feedback: LabelFeedback) -> Expected:
    labels = tuple(sorted(feedback.labels.items()))
    return (
        feedback.ticket_id,
        labels,
        feedback.corrected_by,
        feedback.comment,
        feedback.corrected_at,
    )


def current(store: ChromaVectorStore, feedback: Sequence[LabelFeedback]) -> dict[str, Any]:
    records = store.records([f.ticket_id for f in feedback])
    return {ticket_id: record.metadata for ticket_id, record in records.items()}


def through_a_file(data: Any) -> Any:
    """What a reader of the written file gets back."""
    return json.loads(json.dumps(data, ensure_ascii=False))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return trained_world(tmp_path_factory.mktemp("labelstudio"))


@pytest.fixture
def store(world: World, tmp_path: Path) -> ChromaVectorStore:
    return held_store(world, tmp_path / "chroma")


def test_held_tickets_become_tasks_with_the_models_labels_as_pre_annotations(
    world: World, store: ChromaVectorStore
) -> None:
    exported = through_a_file(exported_tasks(store, world))
    assert len(exported) == N
    records = store.records([t["data"]["ticket_id"] for t in exported], documents=True)
    targets = world.pipeline.classifier.targets
    margins = [task["data"]["review_margin"] for task in exported]
    assert margins == sorted(margins)  # the most informative first, as on the desk
    for task in exported:
        data = task["data"]
        record = records[data["ticket_id"]]
        held = HeldTicket.of(record, targets)
        assert data["text"] == record.document and data["text_missing"] is False
        assert data["tags"] == json.loads(record.metadata["tags"])
        assert data["unsure"] == list(held.unsure) and data["unsure"]
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == world.version
        assert prediction["score"] == pytest.approx(min(held.probability.values()), abs=1e-6)
        assert prediction["result"] == [
            {"from_name": t, "to_name": "text", "type": "choices", "value": {"choices": [label]}}
            for t, label in held.predicted.items()
        ]


def test_a_ticket_without_stored_text_says_so() -> None:
    held = HeldTicket(
        ticket_id="T-1",
        processed_at=0.0,
        margin=0.1,
        model_version="",
        predicted={"queue": "Billing", "priority": "urgent-ish"},
        probability={"queue": 0.4, "priority": 0.9},
        unsure=("queue",),
        top={},
    )
    record = StoredRecord("T-1", {"tags": '["refund"]'}, document=None)
    known = {"queue": ["Billing", "IT"], "priority": ["high", "low"]}
    (task,) = tasks([held], {"T-1": record}, known, "v-served")
    assert task["data"]["text"] == NO_TEXT and task["data"]["text_missing"] is True
    assert task["data"]["tags"] == ["refund"]
    # A label that is no choice of the config is not pre-annotated; the version is the served
    # one when the record does not name it.
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "v-served" and prediction["score"] == 0.4
    assert [r["from_name"] for r in prediction["result"]] == ["queue"]
    (bare,) = tasks([held], {}, {"queue": ["IT"]}, "v")
    assert "predictions" not in bare and bare["data"]["text_missing"] is True


def test_fifty_tickets_round_trip_into_exactly_the_expected_feedback(
    world: World, store: ChromaVectorStore
) -> None:
    annotated = annotate(exported_tasks(store, world), world.known)
    feedback, problems = feedback_from_export(through_a_file(annotated.export), world.known, "x")
    assert {as_expected(f) for f in feedback} == annotated.expected
    assert len(feedback) == len(annotated.expected) == 40 + 1
    refused = [p for p in problems if p.refused]
    assert {p.ticket_id or "-" for p in refused} == annotated.refused
    assert {p.ticket_id for p in problems if not p.refused} == annotated.unanswered
    shouted = next(p for p in refused if p.ticket_id)
    assert "is the known label" in shouted.reason and str(shouted).startswith("task 1")
    assert {f.ticket_id for f in feedback if f.labels.get("queue") == NEW_LABEL}
    # The store decides the rest: the ticket it does not hold is refused, as the worker
    # would dead-letter it.
    new, old, missing = unpublished(feedback, current(store, feedback), ImportLedger())
    assert len(new) == 40 and old == []
    assert missing == [Problem(None, GHOST, "not in the vector store")]


def test_a_second_import_publishes_nothing(world: World, store: ChromaVectorStore) -> None:
    annotated = annotate(exported_tasks(store, world), world.known)

    def imported(
        ledger: ImportLedger,
    ) -> tuple[list[LabelFeedback], list[tuple[LabelFeedback, Seen]]]:
        feedback, _ = feedback_from_export(through_a_file(annotated.export), world.known, "x")
        new, old, _ = unpublished(feedback, current(store, feedback), ledger)
        return new, old

    ledger = ImportLedger()
    first, _ = imported(ledger)
    assert len(first) == 40
    for event in first:  # published: the broker acknowledged them
        ledger.record(event, time.time())
    ledger = ImportLedger.from_json(ledger.to_json())  # as the command keeps it
    # Before the worker applied them, the ledger knows.
    again, old = imported(ledger)
    assert again == [] and {why for _, why in old} == {Seen.LEDGER} and len(old) == 40
    # Once it applied them, the store knows too: a ledger lost (another machine) is no harm.
    assert apply_feedback(store.collection, first).unknown == []
    again, old = imported(ImportLedger())
    assert again == [] and {why for _, why in old} == {Seen.STORE}
    again, _ = imported(ledger)
    assert again == []


def test_an_answer_changed_in_label_studio_is_published_again(
    world: World, store: ChromaVectorStore
) -> None:
    exported = exported_tasks(store, world)
    annotated = annotate(exported, world.known)
    feedback, _ = feedback_from_export(annotated.export, world.known, "x")
    ledger = ImportLedger()
    new, _, _ = unpublished(feedback, current(store, feedback), ledger)
    for event in new:
        ledger.record(event, time.time())
    apply_feedback(store.collection, new)
    task = annotated.export[0]
    first = task["annotations"][0]
    first["result"] = [_choice("queue", NEW_LABEL)]
    first["updated_at"] = T3
    feedback, _ = feedback_from_export(annotated.export, world.known, "x")
    changed, _, _ = unpublished(feedback, current(store, feedback), ledger)
    assert [(f.ticket_id, f.labels) for f in changed] == [
        (task["data"]["ticket_id"], {"queue": NEW_LABEL})
    ]


def test_a_later_answer_in_the_store_is_not_overwritten(
    world: World, store: ChromaVectorStore
) -> None:
    annotated = annotate(exported_tasks(store, world), world.known)
    feedback, _ = feedback_from_export(annotated.export, world.known, "x")
    event = feedback[0]
    desk = LabelFeedback(
        ticket_id=event.ticket_id,
        labels={"queue": NEW_LABEL},
        corrected_by="bob",
        corrected_at=_at(T3),
    )
    assert desk.corrected_at > event.corrected_at
    apply_feedback(store.collection, [desk])
    new, old, _ = unpublished([event], current(store, [event]), ImportLedger())
    assert new == [] and old == [(event, Seen.NEWER)]


def test_a_ticket_labelled_again_since_gets_its_answer_again(
    world: World, store: ChromaVectorStore
) -> None:
    annotated = annotate(exported_tasks(store, world), world.known)
    feedback, _ = feedback_from_export(annotated.export, world.known, "x")
    event = feedback[0]
    ledger = ImportLedger()
    ledger.record(event, time.time() - 60)  # published a minute ago and applied
    apply_feedback(store.collection, [event])
    ticket = next(
        Ticket.model_validate(t)
        for t in generate_tickets(N, seed=9)
        if t["ticket_id"] == event.ticket_id
    )
    # Replayed: the worker stores the model's labels again; the correction is gone.
    write_like_the_worker(store, world.pipeline, [ticket], world.version)
    new, _, _ = unpublished([event], current(store, [event]), ledger)
    assert new == [event]


def test_the_labeling_config_is_xml_that_escapes_hostile_class_names() -> None:
    hostile = [
        '"><script>alert(1)</script>',
        "Billing & Payments",
        "it's <b>",
        "</Choices></View>",
        "$text",
    ]
    unwritable = ["bell\x07", "new\nline"]  # control characters: no answer may give them
    known = {"queue": [*hostile, *unwritable], "priority": ["high", "low"]}
    config = label_config(known)
    root = ET.fromstring(config)
    assert root.tag == "View"
    (text,) = root.findall("Text")
    assert text.attrib == {"name": "text", "value": "$text"}
    choices = {c.attrib["name"]: c for c in root.findall("Choices")}
    assert list(choices) == ["queue", "priority"]
    for target, element in choices.items():
        assert element.attrib["toName"] == "text" and element.attrib["choice"] == "single"
        values = [c.attrib["value"] for c in element.findall("Choice")]
        # Every class comes back as it was, but those with control characters.
        assert values == [v for v in known[target] if v not in unwritable]
    assert [t.attrib["name"] for t in root.findall("TextArea")] == ["comment"]
    assert "<script>" not in config
    with pytest.raises(ValueError, match="clashes"):
        label_config({"text": ["a"]})
    assert root.findall("TextArea") and not ET.fromstring(label_config({"comment": ["a"]})).findall(
        "TextArea"
    )


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ({"data": {}}, "expected a list of tasks, got dict"),
        ([1, 2], "item 1 is int"),
        ([{"text": "x", "queue": "Billing", "annotator": 1, "annotation_id": 3}], "JSON_MIN"),
        ([{"id": 1, "annotations": []}], "task 1 has no data object"),
    ],
)
def test_what_is_not_a_label_studio_export_is_refused_whole(items: Any, reason: str) -> None:
    with pytest.raises(LabelStudioFormatError, match=reason):
        feedback_from_export(items, {"queue": ["Billing"]}, "x")


def test_bad_answers_are_problems_never_crashes() -> None:
    known = {"queue": ["Billing", "IT"]}

    def task(task_id: int, result: Any, **extra: Any) -> dict[str, Any]:
        annotation = {**_annotation(task_id, [], **extra), "result": result}
        return {"id": task_id, "data": {"ticket_id": f"T-{task_id}"}, "annotations": [annotation]}

    items: list[Any] = [
        task(1, [_choice("queue", "bell\x07")]),
        task(2, [_choice("queue", "x" * 201)]),
        task(3, [_choice("team", "A")]),
        task(4, [{**_choice("queue", "IT"), "value": {"choices": ["IT", "Billing"]}}]),
        task(5, []),
        task(6, "not a list"),
        task(7, [{**_choice("queue", "IT"), "value": {"choices": [1]}}]),
        {"id": 8, "data": {"ticket_id": "T-8"}, "annotations": "many"},
        {
            "id": 9,
            "data": {"ticket_id": "x" * 300},
            "annotations": [_annotation(9, [_choice("queue", "IT")])],
        },
        {"data": {"ticket_id": " "}},
    ]
    feedback, problems = feedback_from_export(items, known, "x")
    assert feedback == []
    assert all(p.refused for p in problems)
    reasons = {p.task: p.reason for p in problems}
    assert "without control" in reasons[1] and "at most 200" in reasons[2]
    assert "not a target" in reasons[3] and "one label per target" in reasons[4]
    assert "no labels" in reasons[5] and "no labels" in reasons[6]
    assert "not a list of labels" in reasons[7] and "annotations is not a list" in reasons[8]
    assert "ticket_id" in reasons[9] and "no data.ticket_id" in reasons["#10"]


@pytest.mark.parametrize(
    ("completed_by", "who"),
    [
        (7, "label-studio:7"),
        ({"id": 8, "email": EMAIL, "first_name": "Ann"}, f"label-studio:{EMAIL}"),
        ({"id": 8}, "label-studio:8"),
        ("ann", "label-studio:ann"),
        (None, "default"),
        ({"email": ""}, "default"),
        ("\x1b\x07 ", "default"),
        ("ann\x1b[31m", "label-studio:ann[31m"),
    ],
)
def test_who_answered(completed_by: object, who: str) -> None:
    annotation = _annotation(1, [_choice("queue", "IT")], by=completed_by)
    items = [{"id": 1, "data": {"ticket_id": "T-1"}, "annotations": [annotation]}]
    (feedback,), _ = feedback_from_export(items, {"queue": ["IT"]}, "default")
    assert feedback.corrected_by == who


def test_several_tasks_of_one_ticket_give_its_latest_answer() -> None:
    def task(task_id: int, label: str, at: str) -> dict[str, Any]:
        annotation = _annotation(task_id, [_choice("queue", label)], at=at)
        return {"id": task_id, "data": {"ticket_id": "T-1"}, "annotations": [annotation]}

    items = [task(1, "IT", T2), task(2, "Billing", T1)]
    (feedback,), (problem,) = feedback_from_export(items, {"queue": ["IT", "Billing"]}, "x")
    assert feedback.labels == {"queue": "IT"} and feedback.corrected_at == _at(T2)
    assert problem == Problem(2, "T-1", "task 1 holds a later answer for the same ticket", False)


def test_a_ledger_that_is_not_one_is_refused() -> None:
    for text in ("[]", '{"published": []}', '{"published": {"T-1": {"a": 1}}}', "{"):
        with pytest.raises(ValueError):
            ImportLedger.from_json(text)
