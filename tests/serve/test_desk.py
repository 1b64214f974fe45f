"""The review desk over a real model (cheap encoder) and an embedded ChromaDB written as the
worker writes it: login, queue, one ticket, answers, CSRF, escaping, the JSON API.

The feedback producer is a recording sink here (its broker side is
tests/serve/test_desk_browser.py, with the real broker and worker)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import HashingEncoder
from tests.serve.test_app import AUTH, SIGNED, TOKEN, _train
from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.record import Stamp, labeled_ticket
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.review import ReviewCuts
from ticketflow.models.serving import ServingEncoders, make_pipeline
from ticketflow.runtime.similar import similar_to_stored
from ticketflow.schemas import SourcePosition, Ticket
from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.schemas.store import correction_metadata, labeled_metadata
from ticketflow.serve.app import create_app
from ticketflow.serve.desk import SESSION_COOKIE, DeskConfig, NeighbourCache
from ticketflow.serve.holder import ModelHolder, Served

pytestmark = pytest.mark.unit

# Cuts that hold every ticket (gated on priority, a cut above 1) and some of the queues.
CUTS = ReviewCuts(thresholds={"queue": 0.995, "priority": 1.01}, gate=("priority",))
HOSTILE = [
    "<script>alert('body')</script>",
    '<img src=x onerror="alert(1)">',
    "</textarea><svg onload=alert(2)>",
    "{{ 7*7 }} {% raw %}",
    '"><a href="javascript:alert(3)">click</a>',
]


@dataclass
class Sink:
    """Records what the desk publishes; ``down`` makes it fail like an unreachable broker."""

    sent: list[LabelFeedback] = field(default_factory=list)
    down: bool = False

    def publish(self, key: bytes, value: bytes) -> None:
        if self.down:
            raise RuntimeError("broker unreachable")
        feedback = LabelFeedback.model_validate_json(value)
        assert key == feedback.ticket_id.encode()
        self.sent.append(feedback)


@dataclass
class Desk:
    app: Any
    sink: Sink
    store: ChromaVectorStore
    pipeline: LabelingPipeline
    ids: list[str]
    served: Served


def write_like_the_worker(
    store: ChromaVectorStore, pipeline: LabelingPipeline, tickets: list[Ticket], version: str
) -> None:
    result = pipeline.run(tickets)
    stamp = Stamp(version, pipeline.encoder.name, CUTS, datetime.now(UTC))
    labeled = [
        labeled_ticket(
            tickets[i], p, stamp, source=SourcePosition(topic="t", partition=0, offset=i)
        )
        for i, p in zip(result.indices, result.predictions, strict=True)
    ]
    store.upsert(
        [t.ticket_id for t in labeled],
        result.vectors,
        [
            labeled_metadata(t, tickets[i].tags)
            for t, i in zip(labeled, result.indices, strict=True)
        ],
        result.texts,
    )


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    root = tmp_path_factory.mktemp("desk")
    data = root / "train.jsonl"
    data.write_text("\n".join(json.dumps(t) for t in generate_tickets(300, seed=1)) + "\n")
    registry = ModelRegistry(root / "registry")
    version = _train(registry, data)
    model = registry.load(version)
    pipeline = make_pipeline(ServingEncoders(HashingEncoder(), registry_dir=registry.root), model)
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=root / "chroma"),
        "tickets",
        embedding_model=pipeline.vector_model,
        dimension=pipeline.dimension,
    )
    tickets = [Ticket.model_validate(t) for t in generate_tickets(40, seed=9)]
    tickets += [
        Ticket(ticket_id=f"evil-{i}", subject=f"Refund {payload}", body=payload, tags=[payload])
        for i, payload in enumerate(HOSTILE)
    ]
    write_like_the_worker(store, pipeline, tickets, version)
    sink = Sink()
    served = Served(model, pipeline)
    app = create_app(
        ModelHolder(served),
        store,
        auth=AUTH,
        desk=DeskConfig(publisher=sink, queue_max_age_s=0.5),
    )
    yield Desk(app, sink, store, pipeline, [t.ticket_id for t in tickets], served)


def logged_in(desk: Desk) -> TestClient:
    client = TestClient(desk.app, follow_redirects=False)
    answer = client.post("/login", data={"token": TOKEN, "next": "/review"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/review"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def test_pages_and_api_need_a_login(desk: Desk) -> None:
    client = TestClient(desk.app, follow_redirects=False)
    for path in ("/review", f"/review/{desk.ids[0]}"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    assert client.get("/v1/review").status_code == 401
    posted = client.post("/v1/feedback", json={"ticket_id": desk.ids[0], "labels": {"queue": "x"}})
    assert posted.status_code == 401
    assert client.post(f"/review/{desk.ids[0]}", data={"label.queue": "x"}).status_code == 303
    assert client.post("/login", data={"token": "wrong-token-0123456789"}).status_code == 401
    forged = client.get("/review", cookies={SESSION_COOKIE: "caller=tests"})
    assert forged.status_code == 303
    assert desk.sink.sent == []


def test_a_login_does_not_redirect_off_the_site(desk: Desk) -> None:
    client = TestClient(desk.app, follow_redirects=False)
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        answer = client.post("/login", data={"token": TOKEN, "next": bad})
        assert answer.headers["location"] == "/review"


def test_the_queue_lists_held_tickets_with_counts(desk: Desk) -> None:
    client = logged_in(desk)
    page = client.get("/review")
    assert page.status_code == 200
    assert "signed in as <strong>tests</strong>" in page.text
    listed = re.findall(r'<tr data-href="/review/([^"?]+)', page.text)
    assert len(listed) == len(desk.ids)
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    api = client.get("/v1/review", params={"limit": 5}, headers=SIGNED).json()
    assert api["total"] == len(desk.ids) and len(api["tickets"]) == 5
    margins = [t["margin"] for t in api["tickets"]]
    assert margins == sorted(margins)
    first = api["tickets"][0]
    assert set(first["predictions"]) == {"queue", "priority"}
    assert len(first["similar"]) == 5 and first["ticket_id"] not in {
        s["ticket_id"] for s in first["similar"]
    }
    oldest = client.get("/v1/review", params={"order": "oldest", "limit": 50}, headers=SIGNED)
    assert oldest.status_code == 200
    unsure = client.get("/v1/review", params={"target": "priority"}, headers=SIGNED).json()
    label = unsure["tickets"][0]["predictions"]["priority"]["label"]
    same = client.get(
        "/v1/review", params={"target": "priority", "label": label, "limit": 500}, headers=SIGNED
    ).json()
    labels = {t["predictions"]["priority"]["label"] for t in same["tickets"]}
    assert labels == {label} and same["total"] < api["total"]
    anywhere = client.get("/v1/review", params={"label": label, "limit": 500}, headers=SIGNED)
    assert all(
        label in {p["label"] for p in t["predictions"].values()} for t in anywhere.json()["tickets"]
    )
    assert anywhere.json()["total"] >= same["total"]
    assert client.get("/v1/review", params={"target": "nope"}, headers=SIGNED).status_code == 422


def test_customer_text_is_shown_as_text(desk: Desk) -> None:
    client = logged_in(desk)
    for i, payload in enumerate(HOSTILE):
        page = client.get(f"/review/evil-{i}").text
        assert str(escape(payload)) in page, payload  # shown, as text
        if "<" in payload:
            assert payload not in page, payload
        assert "Refund 49" not in page  # no template ran it
    queue = client.get("/review").text
    assert "<script>alert" not in queue and "onerror=" not in queue.replace("onerror=&#34;", "")


def test_a_form_post_without_the_csrf_token_is_refused(desk: Desk) -> None:
    client = logged_in(desk)
    ticket = desk.ids[1]
    page = client.get(f"/review/{ticket}").text
    assert client.post(f"/review/{ticket}", data={"label.queue": "x"}).status_code == 403
    wrong = client.post(f"/review/{ticket}", data={"label.queue": "x", "csrf": "guess"})
    assert wrong.status_code == 403
    other = logged_in(desk)
    stolen = other.post(f"/review/{ticket}", data={"label.queue": "x", "csrf": csrf_of(page)})
    assert stolen.status_code == 403
    assert desk.sink.sent == []


def test_confirm_correct_and_new_label_publish_feedback(desk: Desk) -> None:
    client = logged_in(desk)
    known = desk.pipeline.classifier.labels("queue")
    first, second, third = desk.ids[2:5]
    page = client.get(f"/review/{first}").text
    top = re.search(r'name="label.queue" value="([^"]+)"[^>]*checked', page)
    assert top
    confirmed = client.post(f"/review/{first}", data={"csrf": csrf_of(page), "label.queue": top[1]})
    assert confirmed.status_code == 303
    other = next(k for k in known if k != top[1])
    page = client.get(f"/review/{second}").text
    corrected = client.post(
        f"/review/{second}",
        data={"csrf": csrf_of(page), "label.queue": top[1], "other.queue": other, "comment": "c"},
    )
    assert corrected.status_code == 303
    page = client.get(f"/review/{third}").text
    for bad in (known[0].upper(), "x" * 201, "bad\x07label"):
        refused = client.post(f"/review/{third}", data={"csrf": csrf_of(page), "new.queue": bad})
        assert refused.status_code == 422, bad
    created = client.post(f"/review/{third}", data={"csrf": csrf_of(page), "new.queue": "Drones"})
    assert created.status_code == 303
    sent = {f.ticket_id: f for f in desk.sink.sent}
    assert sent[first].labels["queue"] == top[1]
    assert sent[second].labels["queue"] == other and sent[second].comment == "c"
    assert sent[third].labels["queue"] == "Drones"
    assert {f.corrected_by for f in desk.sink.sent} == {"tests"}
    listed = client.get("/v1/review", params={"limit": 500}, headers=SIGNED).json()
    assert not {first, second, third} & {t["ticket_id"] for t in listed["tickets"]}


def test_the_api_publishes_refuses_and_survives_a_broker_outage(desk: Desk) -> None:
    client = TestClient(desk.app, headers=SIGNED)
    ticket = desk.ids[6]
    missing = client.post("/v1/feedback", json={"ticket_id": "nope", "labels": {"queue": "A"}})
    assert missing.status_code == 404
    bad = client.post("/v1/feedback", json={"ticket_id": ticket, "labels": {"nope": "A"}})
    assert bad.status_code == 422 and bad.json()["detail"]["error_type"] == "invalid_answer"
    desk.sink.down = True
    try:
        down = client.post("/v1/feedback", json={"ticket_id": ticket, "labels": {"queue": "A"}})
    finally:
        desk.sink.down = False
    assert down.status_code == 503
    listed = client.get("/v1/review", params={"limit": 500}).json()
    assert ticket in {t["ticket_id"] for t in listed["tickets"]}
    accepted = client.post("/v1/feedback", json={"ticket_id": ticket, "labels": {"queue": "A"}})
    assert accepted.status_code == 202
    assert accepted.json() == {
        "ticket_id": ticket,
        "labels": {"queue": "A"},
        "corrected_by": "tests",
        "topic": "ticket-feedback",
    }


def test_pages_accept_the_bearer_header_without_csrf(desk: Desk) -> None:
    client = TestClient(desk.app, headers=SIGNED, follow_redirects=False)
    ticket = desk.ids[7]
    assert client.get(f"/review/{ticket}").status_code == 200
    answer = client.post(f"/review/{ticket}", data={"label.priority": "high"})
    assert answer.status_code == 303
    assert desk.sink.sent[-1].labels == {"priority": "high"}


def test_an_unknown_ticket_is_404(desk: Desk) -> None:
    client = logged_in(desk)
    assert client.get("/review/not-stored").status_code == 404
    page = client.get(f"/review/{desk.ids[0]}").text
    answer = client.post("/review/not-stored", data={"csrf": csrf_of(page), "label.queue": "A"})
    assert answer.status_code == 404


def test_an_answered_record_leaves_the_queue_from_the_store(desk: Desk) -> None:
    ticket = desk.ids[8]
    record = desk.store.records([ticket]).get(ticket)
    assert record is not None
    feedback = LabelFeedback(ticket_id=ticket, labels={"queue": "A"}, corrected_by="cli")
    desk.store.collection.update(
        ids=[ticket],
        metadatas=[{**record.metadata, **correction_metadata(feedback, record.metadata)}],
    )
    client = TestClient(desk.app, headers=SIGNED)
    # The queue serves its last snapshot while a newer one is read (every request here, with
    # queue_max_age_s=0.5): the change shows within a refresh or two.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = client.get("/v1/review", params={"limit": 500}).json()
        if ticket not in {t["ticket_id"] for t in listed["tickets"]}:
            break
        time.sleep(0.05)
    assert ticket not in {t["ticket_id"] for t in listed["tickets"]}
    page = client.get(f"/review/{ticket}").text
    assert "answered by cli" in page


def test_a_broker_outage_is_said_on_the_page_and_nothing_is_published(desk: Desk) -> None:
    client = logged_in(desk)
    ticket = desk.ids[9]
    page = client.get(f"/review/{ticket}").text
    before = len(desk.sink.sent)
    desk.sink.down = True
    try:
        answer = client.post(
            f"/review/{ticket}", data={"csrf": csrf_of(page), "new.queue": "Kept Choice"}
        )
    finally:
        desk.sink.down = False
    assert answer.status_code == 503
    assert "nothing was published" in answer.text
    assert 'value="Kept Choice"' in answer.text  # the agent's choice is still filled in
    assert len(desk.sink.sent) == before
    listed = client.get("/v1/review", params={"limit": 500}, headers=SIGNED).json()
    assert ticket in {t["ticket_id"] for t in listed["tickets"]}


def test_scrapes_get_the_queue_gauges_and_every_answer_series(desk: Desk) -> None:
    """Nobody at the desk: the refresher reads the queue at start and the gauges show it (a
    scrape keeps them fresh: tests/review/test_queue.py), and the answers counter has every
    (via, result) series at 0 from the start."""
    app = create_app(
        ModelHolder(desk.served), desk.store, auth=AUTH, desk=DeskConfig(publisher=Sink())
    )

    def scraped(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = client.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("ticketflow_review_")
        }

    with TestClient(app, headers=SIGNED) as client:  # with: the lifespan starts the refresher
        found = scraped(client)
        answers = {
            labels: value
            for (name, labels), value in found.items()
            if name == "ticketflow_review_answers_total"
        }
        assert answers == {
            (("result", result), ("via", via)): 0.0
            for via in ("desk", "api")
            for result in ("published", "invalid", "unavailable")
        }
        deadline = time.monotonic() + 60
        depth = ("ticketflow_review_queue_depth", (("target", "queue"),))  # set by a read
        while depth not in found and time.monotonic() < deadline:
            time.sleep(0.1)
            found = scraped(client)
    held = list(desk.store.records(desk.store.held_ids()).values())
    assert found[("ticketflow_review_queue_held", ())] == len(held) > 0
    for target in ("queue", "priority"):
        unsure = sum(1 for r in held if r.metadata.get(f"{target}_needs_review"))
        assert found[("ticketflow_review_queue_depth", (("target", target),))] == unsure
    assert found[("ticketflow_review_queue_refresh_seconds", ())] > 0


def test_neighbours_are_kept_a_while_then_looked_up_again(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /v1/review's similar tickets: one query for the held tickets not kept, none for
    the kept ones; looked up again after the TTL; the oldest dropped past the bound."""
    now = [0.0]
    cache = NeighbourCache(ttl_s=60.0, kept=3, clock=lambda: now[0])
    searched: list[int] = []
    query = desk.store.query

    def counted(vectors: Any, k: int, **options: Any) -> Any:
        searched.append(len(vectors))
        return query(vectors, k, **options)

    monkeypatch.setattr(desk.store, "query", counted)
    records = desk.store.records(desk.ids[:4], vectors=True)
    first, second, third, fourth = (dict([item]) for item in records.items())
    targets = ["queue", "priority"]
    near = cache.near(desk.store, {**first, **second}, k=5, targets=targets)
    vectors = {i: r.vector for i, r in {**first, **second}.items() if r.vector is not None}
    assert near == similar_to_stored(desk.store, vectors, k=5, targets=targets)
    searched.clear()
    cache.near(desk.store, {**first, **second, **third}, k=5, targets=targets)
    assert searched == [1]  # only the third
    now[0] = 61.0
    cache.near(desk.store, {**first, **fourth}, k=5, targets=targets)
    assert searched == [1, 2]  # the first expired
    cache.near(desk.store, {**second, **fourth}, k=5, targets=targets)
    assert searched == [1, 2, 1]  # kept 3 at most: the second (the oldest) was dropped
