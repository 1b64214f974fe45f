"""1,000 hostile payloads against the real HTTP service: no 5xx, a reason on every 4xx, and
the service still ready and answering afterwards.

The service is the product's: the model ``ticketflow train`` registered (real encoders), an
embedded ChromaDB holding backfilled tickets, ``create_app`` with the limits ``ticketflow
serve`` takes from the settings, served by uvicorn on a real socket. The payloads are the
stream's fuzz corpus (``hostile_payloads`` of the fault tests: random bytes, deep JSON, huge
strings, wrong types, odd unicode...) and HTTP-only ones: wrong content types, lone UTF-16
surrogates, 5,000-digit numbers, huge lists, negative and huge ``k``, ChromaDB operators in
``where``, unknown and absurd ticket ids, and raw bytes that are not HTTP at all.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.stream.test_faults_integration import hostile_payloads
from ticketflow.batch.backfill import BackfillRequest, backfill
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.runtime.loading import load_runtime
from ticketflow.serve.app import ServeLimits, create_app
from ticketflow.serve.holder import ModelHolder, Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PAYLOADS = 1_000
STORED = 150
ROUTES = ("/v1/classify", "/v1/similar")
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Request:
    kind: str
    route: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Service:
    url: str
    port: int
    stored_ids: list[str]


@pytest.fixture(scope="module")
def service(trained_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("hostile")
    settings = Settings(
        model_registry_dir=trained_registry, chroma_path=root / "chroma", chroma_document="full"
    )
    serving = load_runtime(settings)
    tickets = generate_tickets(STORED, seed=8)
    data = write_tickets(tickets, root / "stored.jsonl")
    backfill(
        BackfillRequest(data, document="full"),
        pipeline=serving.pipeline,
        store=serving.store,
        model_version=serving.model_version,
        progress=False,
    )
    app = create_app(
        ModelHolder(Served(serving.model, serving.pipeline)),
        serving.store,
        # As ``ticketflow serve`` builds them (cli/serve.py).
        limits=ServeLimits(
            fields=settings.field_limits,
            max_ticket_bytes=settings.kafka_max_message_bytes,
            max_tickets=256,
            review=settings.review_policy(),
        ),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Service(f"http://127.0.0.1:{port}", port, [t["ticket_id"] for t in tickets])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def http_payloads(n: int, stored_ids: list[str], seed: int = 17) -> list[Request]:
    """``n`` hostile requests that only an HTTP API meets (routes and kinds in rotation)."""
    rng = random.Random(seed)
    junk = ["\u202e", "\u200b", "\ufeff", "\x00", "\x1b[31m", "𝕏", "👩\u200d💻", "\uffff", "é"]
    known = stored_ids[0]

    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    makers: dict[str, Any] = {
        # \ud800 escapes decode to lone surrogates: valid JSON, not encodable text.
        "lone_surrogate": lambda i: (
            f'{{"ticket_id": "s-{i}", "subject": "a\\ud800b", "body": "\\udfff{i}"}}'.encode()
        ),
        "surrogate_in_id": lambda i: f'{{"ticket_id": "\\udc80{i}", "k": 3}}'.encode(),
        "surrogate_in_where": lambda i: (
            f'{{"body": "vpn {i}", "where": {{"queue": "\\ud834"}}}}'.encode()
        ),
        "huge_int": lambda i: f'{{"ticket_id": "h-{i}", "body": "x", "k": {"9" * 5000}}}'.encode(),
        "huge_float": lambda i: f'{{"ticket_id": "f-{i}", "body": "x", "k": 1e999}}'.encode(),
        "nan_k": lambda i: f'{{"ticket_id": "n-{i}", "body": "x", "k": NaN}}'.encode(),
        "negative_k": lambda i: dumps({"body": f"printer {i}", "k": -rng.randint(1, 10**6)}),
        "huge_k": lambda i: dumps({"body": f"printer {i}", "k": 10 ** rng.randint(3, 40)}),
        "k_wrong_type": lambda i: dumps(
            {"body": f"b {i}", "k": rng.choice(["5", 5.5, True, None, [5], {"$gt": 1}])}
        ),
        "where_operator": lambda i: dumps(
            {"body": f"b {i}", "where": rng.choice([{"$or": []}, {"$and": [{}]}, {"$ne": "x"}])}
        ),
        "where_wrong_type": lambda i: dumps(
            {"body": f"b {i}", "where": rng.choice([["queue"], "queue", 3, {"queue": 1}])}
        ),
        "where_odd_keys": lambda i: dumps(
            {"body": f"b {i}", "where": {rng.choice(["", "q\x00", "é" * 500, "a.b"]): "x"}}
        ),
        "where_many_keys": lambda i: dumps(
            {"body": f"b {i}", "where": {f"k{j}": "v" for j in range(rng.randint(50, 2_000))}}
        ),
        "unknown_id": lambda i: dumps({"ticket_id": f"nope-{i}-{rng.random()}", "k": 5}),
        "absurd_id": lambda i: dumps(
            {"ticket_id": rng.choice(["x" * 200_000, "\x00" * 10, "🎫" * 5_000, known + "\n"])}
        ),
        "id_wrong_type": lambda i: dumps(
            {"ticket_id": rng.choice([i, None, [known], {"id": known}, True, 1.5])}
        ),
        "huge_list": lambda i: dumps([{"ticket_id": f"l{j}", "body": "x"} for j in range(300)]),
        "list_of_junk": lambda i: dumps([rng.choice([1, None, "x", [], {}]) for _ in range(200)]),
        "empty": lambda i: rng.choice([b"", b" ", b"\n\t", b"null", b"{}", b"[]", b'""']),
        "bom": lambda i: b"\xef\xbb\xbf" + dumps({"ticket_id": f"bom-{i}", "body": "x"}),
        "duplicate_keys": lambda i: f'{{"ticket_id": "a", "ticket_id": {i}, "body": 1}}'.encode(),
        "unicode_junk": lambda i: dumps(
            {
                "ticket_id": "".join(rng.choice(junk) for _ in range(8)) + str(i),
                "subject": "".join(rng.choice(junk) for _ in range(rng.randint(1, 300))),
                "body": "".join(rng.choice(junk) for _ in range(rng.randint(1, 3_000))),
                "tags": ["".join(rng.choice(junk) for _ in range(5)) for _ in range(3)],
            }
        ),
        "bad_dates": lambda i: dumps(
            {
                "ticket_id": f"d-{i}",
                "body": "x",
                "created_at": rng.choice(["yesterday", "9999-99-99", 1e20, -1, [], "2026-02-30"]),
            }
        ),
        "tag_junk": lambda i: dumps(
            {"ticket_id": f"t-{i}", "body": "x", "tags": rng.choice(["a,b", [None], [[]], [1]])}
        ),
        "huge_string": lambda i: dumps(
            {"ticket_id": f"g-{i}", rng.choice(["subject", "body"]): "y" * 1_200_000}
        ),
        "deep_field": lambda i: (
            '{"ticket_id": "x", "body": ' + "[" * 5_000 + "]" * 5_000 + "}"
        ).encode(),
        "null_everything": lambda i: dumps(
            {"ticket_id": None, "subject": None, "body": None, "tags": None, "k": None}
        ),
    }
    content_types = ["text/plain", "application/x-www-form-urlencoded", "", "application/xml"]
    requests = []
    kinds = list(makers)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        body = makers[kind](i)
        headers = dict(JSON)
        if rng.random() < 0.15:  # the wrong content type, or none, on any of them
            headers = {"content-type": rng.choice(content_types)} if rng.random() < 0.8 else {}
            kind = f"{kind}+content_type"
        requests.append(Request(kind, ROUTES[i % 2], body, headers))
    return requests


def corpus(stored_ids: list[str]) -> list[Request]:
    """PAYLOADS requests: half the stream's fuzz corpus, half HTTP-only ones."""
    stream = [
        Request(f"stream_corpus_{i % 10}", ROUTES[i % 2], value, dict(JSON))
        for i, (_key, value) in enumerate(hostile_payloads(PAYLOADS // 2, seed=29))
    ]
    return stream + http_payloads(PAYLOADS - len(stream), stored_ids)


def has_reason(response: httpx.Response) -> bool:
    """A 4xx says why: our refusals carry detail.reason, FastAPI's own a detail string."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return bool(response.text.strip())  # uvicorn's plain-text 400s
    if isinstance(detail, dict):
        return bool(str(detail.get("reason", "")).strip()) and bool(detail.get("error_type"))
    return bool(detail)


def test_1000_hostile_payloads_get_no_server_error(service: Service) -> None:
    requests = corpus(service.stored_ids)
    assert len(requests) == PAYLOADS
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    with httpx.Client(base_url=service.url, timeout=60) as client:
        for request in requests:
            response = client.post(request.route, content=request.body, headers=request.headers)
            statuses[(request.route, response.status_code)] += 1
            bad = response.status_code >= 500 or (
                response.status_code >= 400 and not has_reason(response)
            )
            if bad:
                failures.append(
                    f"{request.kind} {request.route} -> {response.status_code}: "
                    f"{response.text[:300]!r} (sent {request.body[:120]!r})"
                )
        took = time.perf_counter() - started
        # Still ready, and still labelling and searching a good ticket afterwards.
        assert client.get("/readyz").status_code == 200
        good = {"ticket_id": "after", "subject": "VPN drops", "body": "VPN disconnects hourly"}
        assert client.post("/v1/classify", json=good).status_code == 200
        found = client.post("/v1/similar", json={**good, "k": 3})
        assert found.status_code == 200 and len(found.json()["results"]) == 3
        metrics = client.get("/metrics").text
    print(f"\n{PAYLOADS} hostile payloads in {took:.1f}s: {dict(sorted(statuses.items()))}")
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:20])
    # The corpus really reached the handlers and was refused there, not only by the parser.
    refused = sum(n for (_route, status), n in statuses.items() if status == 422)
    assert refused > PAYLOADS // 2, statuses
    assert 'status="5' not in metrics


def test_bytes_that_are_not_http_get_no_server_error(service: Service) -> None:
    """Malformed HTTP framing is uvicorn's to refuse (400) or drop; it never reaches a handler
    as a 500, and the service keeps answering."""
    rng = random.Random(3)
    raw = [
        b"GARBAGE\r\n\r\n",
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /v1/similar HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/similar HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /v1/classify HTTP/9.9\r\n\r\n",
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nX: " + b"h" * 70_000 + b"\r\n\r\n",
        *(rng.randbytes(rng.randint(1, 2_000)) + b"\r\n\r\n" for _ in range(40)),
    ]
    answers = []
    for payload in raw:
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            try:
                answer = sock.recv(64)
            except (ConnectionResetError, TimeoutError):
                answer = b""
        answers.append(answer)
        status_line = answer.split(b"\r\n", 1)[0]
        assert not status_line.startswith(b"HTTP/1.1 5"), (payload[:80], answer)
    print(f"\nraw: {Counter(a[9:12] if a else b'closed' for a in answers)}")
    with httpx.Client(base_url=service.url, timeout=30) as client:
        assert client.get("/readyz").status_code == 200
