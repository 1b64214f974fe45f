"""The HTTP API on a model trained with a cheap real encoder and an embedded ChromaDB:
classify, similar, refusals with the dead letters' reasons, health, metrics, hot reload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import HashingEncoder
from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.batch.backfill import BackfillRequest, backfill
from ticketflow.batch.train import TrainRequest, train
from ticketflow.data.datasets import load_labeled
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.serving import ServingEncoders, make_pipeline
from ticketflow.runtime.reload import ModelReloader
from ticketflow.schemas import FieldLimits
from ticketflow.serve.app import ServeLimits, create_app
from ticketflow.serve.auth import AuthConfig, TokenTable
from ticketflow.serve.holder import ModelHolder, Served
from ticketflow.stream.routing import Rejected, decode_ticket

pytestmark = pytest.mark.unit

LIMITS = FieldLimits(max_subject_chars=200, max_tags=6)
TOKEN = "test-token-0123456789"
AUTH = AuthConfig(tokens=TokenTable.parse([f"tests:{TOKEN}"]))
SIGNED = {"Authorization": f"Bearer {TOKEN}"}


def signed(app: Any) -> TestClient:
    """A client that sends the tests' token."""
    return TestClient(app, headers=SIGNED)


@dataclass
class World:
    client: TestClient
    registry: ModelRegistry
    holder: ModelHolder
    poller: ModelReloader
    version: str
    data: Path
    store: ChromaVectorStore


def _train(registry: ModelRegistry, data: Path, *, seed: int = 42) -> str:
    return train(
        TrainRequest(
            load_labeled(data, targets=["queue", "priority"], progress=False),
            max_text_chars=1000,
            seed=seed,
        ),
        encoder=HashingEncoder(),
        registry=registry,
        progress=False,
    ).version


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("serve")
    data = root / "tickets.jsonl"
    data.write_text("\n".join(json.dumps(t) for t in generate_tickets(300, seed=1)) + "\n")
    registry = ModelRegistry(root / "registry")
    version = _train(registry, data)
    encoders = ServingEncoders(HashingEncoder(), registry_dir=registry.root)
    model = registry.load(version)
    pipeline = make_pipeline(encoders, model)
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=root / "chroma"),
        "tickets",
        embedding_model=pipeline.vector_model,
        dimension=pipeline.dimension,
    )
    backfill(
        BackfillRequest(data, document="full"),
        pipeline=pipeline,
        store=store,
        model_version=version,
        progress=False,
    )
    holder = ModelHolder(Served(model, pipeline))
    poller = ModelReloader(
        registry=registry,
        encoder=encoders,
        serving_version=version,
        poll_s=0,
        on_ready=holder.accept,
    )
    app = create_app(
        holder,
        store,
        limits=ServeLimits(fields=LIMITS, max_ticket_bytes=4_000, max_tickets=5),
        auth=AUTH,
        reloader=poller,
    )
    with signed(app) as client:
        yield World(client, registry, holder, poller, version, data, store)


def ticket(**changes: Any) -> dict[str, Any]:
    base = {"ticket_id": "new-1", "subject": "Refund missing", "body": "Where is my refund?"}
    return {**base, **changes}


def test_classify_one_ticket_or_a_list(world: World) -> None:
    one = world.client.post("/v1/classify", json=ticket())
    assert one.status_code == 200
    body = one.json()
    assert body["ticket_id"] == "new-1" and body["model_version"] == world.version
    assert set(body["predictions"]) == {"queue", "priority"}
    queue = body["predictions"]["queue"]
    assert 0 <= queue["probability"] <= 1 and queue["top"][0]["label"] == queue["label"]
    assert isinstance(body["needs_review"], bool) and "needs_review" in queue

    many = world.client.post("/v1/classify", json=[ticket(ticket_id=f"n{i}") for i in range(3)])
    assert many.status_code == 200
    assert [r["ticket_id"] for r in many.json()] == ["n0", "n1", "n2"]


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"42", "not_an_object"),
        (json.dumps(ticket(subject="x" * 250)).encode(), "validation_error"),
        (json.dumps(ticket(subject="", body="")).encode(), "validation_error"),
        (json.dumps(ticket(tags=list("abcdefg"))).encode(), "validation_error"),
        (json.dumps({"subject": "no id"}).encode(), "validation_error"),
        (
            json.dumps(
                ticket(extra=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])
            ).encode(),
            "validation_error",
        ),
    ],
)
def test_bad_input_is_refused_with_the_dead_letter_reason(
    world: World, payload: bytes, error_type: str
) -> None:
    response = world.client.post(
        "/v1/classify", content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["error_type"] == error_type
    # The same reason the stream's dead letter would carry.
    rejected = decode_ticket(payload, limits=LIMITS, max_bytes=4_000)
    assert isinstance(rejected, Rejected)
    assert rejected.error_type.value == error_type
    assert detail["reason"] == rejected.reason


def test_lists_name_the_bad_ticket_and_sizes_are_limited(world: World) -> None:
    bad = world.client.post("/v1/classify", json=[ticket(), ticket(subject="y" * 250)])
    assert bad.status_code == 422 and bad.json()["detail"]["index"] == 1
    assert bad.json()["detail"]["ticket_id"] == "new-1"
    assert world.client.post("/v1/classify", json=[ticket()] * 6).status_code == 422
    big = world.client.post("/v1/classify", json=ticket(body="z" * 5_000))
    assert big.status_code == 413 and big.json()["detail"]["error_type"] == "message_too_large"


def test_similar_by_stored_id_and_by_text(world: World) -> None:
    first = next(t for t in generate_tickets(300, seed=1) if t["subject"])
    by_id = world.client.post("/v1/similar", json={"ticket_id": first["ticket_id"], "k": 3})
    assert by_id.status_code == 200
    results = by_id.json()["results"]
    assert len(results) == 3 and first["ticket_id"] not in [r["ticket_id"] for r in results]
    assert results[0]["distance"] <= results[-1]["distance"]
    assert results[0]["label_source"] == "imported" and set(results[0]["labels"]) >= {"queue"}
    assert "subject" in results[0] or results[0]["ticket_id"]  # documents are kept here

    fields = {"subject": first["subject"], "body": first["body"], "tags": first["tags"]}
    by_text = world.client.post("/v1/similar", json={**fields, "k": 5})
    assert by_text.status_code == 200
    assert by_text.json()["results"][0]["ticket_id"] == first["ticket_id"]
    assert by_text.json()["results"][0]["distance"] < 1e-3

    queue = first["queue"]
    filtered = world.client.post(
        "/v1/similar", json={**fields, "k": 5, "where": {"queue": queue}}
    ).json()["results"]
    assert filtered and all(r["labels"]["queue"] == queue for r in filtered)


def test_similar_refusals(world: World) -> None:
    client = world.client
    assert client.post("/v1/similar", json={"ticket_id": "nope"}).status_code == 404
    assert client.post("/v1/similar", json={"k": 3}).status_code == 422
    assert client.post("/v1/similar", json={"ticket_id": "x", "k": 0}).status_code == 422
    assert client.post("/v1/similar", json={"body": "x", "where": ["q"]}).status_code == 422
    assert client.post("/v1/similar", json=[1]).json()["detail"]["error_type"] == "not_an_object"
    assert client.post("/v1/similar", content=b"{").status_code == 422


def test_health_readiness_and_metrics(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok"}
    ready = world.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["stored"] == 300
    world.client.post("/v1/classify", json=ticket())
    world.client.get("/no/such/path")
    text = world.client.get("/metrics").text
    assert 'ticketflow_http_requests_total{method="POST",route="/v1/classify",status="200"}' in text
    assert 'ticketflow_http_request_seconds_count{route="/v1/classify"}' in text
    assert 'route="unmatched"' in text and "/no/such/path" not in text
    assert (
        f'ticketflow_serve_model_info{{vector_model="test/hashing",version="{world.version}"}}'
        in text
    )


def test_a_promoted_model_is_swapped_in_and_a_wrong_one_refused(world: World) -> None:
    old = world.holder.current.version
    newer = _train(world.registry, world.data, seed=3)
    assert world.poller.check_registry()
    assert world.holder.current.version == newer != old
    answer = world.client.post("/v1/classify", json=ticket()).json()
    assert answer["model_version"] == newer
    text = world.client.get("/metrics").text
    assert 'ticketflow_serve_model_reloads_total{result="ok"} 1.0' in text

    # A model of another encoder cannot run on these encoders: refused, the old one serves.
    other = train(
        TrainRequest(
            load_labeled(world.data, targets=["queue"], progress=False), max_text_chars=1000
        ),
        encoder=HashingEncoder(dimension=128, name="test/other"),
        registry=world.registry,
        progress=False,
    ).version
    assert world.registry.current_version() == other
    assert not world.poller.check_registry()
    assert world.holder.current.version == newer
    assert 'ticketflow_serve_model_reloads_total{result="refused"} 1.0' in (
        world.client.get("/metrics").text
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ticket_like = st.fixed_dictionaries(
    {},
    optional={
        "ticket_id": json_values | st.text(max_size=10),
        "subject": json_values | st.text(max_size=60),
        "body": json_values | st.text(max_size=60),
        "tags": json_values | st.lists(st.text(max_size=10), max_size=8),
        "k": json_values | st.integers(-3, 200),
        "where": json_values | st.dictionaries(st.text(max_size=8), st.text(max_size=8)),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=json_values | ticket_like | st.lists(ticket_like, max_size=3))
def test_no_input_gets_a_server_error(world: World, payload: Any) -> None:
    for route in ("/v1/classify", "/v1/similar"):
        # json.dumps writes NaN and Infinity, which Python's parser reads back: sent as is.
        body = json.dumps(payload).encode()
        response = world.client.post(route, content=body)
        assert response.status_code in (200, 404, 413, 422), (route, payload, response.text)


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        # Valid JSON that Python's int() refuses (more than 4,300 digits): was a 500.
        (b'{"ticket_id": "a", "body": "x", "k": ' + b"9" * 5_000 + b"}", "invalid_json"),
        # Lone surrogates from \\u escapes: the tokenizer raised TypeError (500), ChromaDB
        # UnicodeEncodeError (503).
        (b'{"ticket_id": "a", "subject": "a\\ud800b"}', "not_utf8"),
        (b'{"ticket_id": "\\udc80", "k": 3}', "not_utf8"),
        (b'{"body": "vpn", "where": {"queue": "\\ud834"}}', "not_utf8"),
        (b'{"body": "vpn", "where": {"\\udfff": "x"}}', "not_utf8"),
    ],
)
def test_json_python_cannot_hold_or_encode_is_refused(
    world: World, payload: bytes, error_type: str
) -> None:
    # The default limits: the 5,000-digit number is over this module's 4,000-byte one.
    app = create_app(ModelHolder(world.holder.current), world.store, auth=AUTH)
    with signed(app) as client:
        for route in ("/v1/classify", "/v1/similar"):
            response = client.post(route, content=payload)
            assert response.status_code == 422, (route, response.text)
            assert response.json()["detail"]["error_type"] == error_type


def test_a_surrogate_pair_is_one_character_and_fine(world: World) -> None:
    # Two escapes of one surrogate pair are one emoji (JSON's way to write it), not lone halves.
    payload = b'{"ticket_id": "e-1", "subject": "printer \\ud83d\\ude00", "body": "jam"}'
    assert world.client.post("/v1/classify", content=payload).status_code == 200


def test_where_names_a_target_of_the_model(world: World) -> None:
    client = world.client
    typo = client.post("/v1/similar", json={"body": "x", "where": {"queu": "Billing"}})
    assert typo.status_code == 422 and "'queu' is not a target" in typo.text
    # Thousands of keys made an expression ChromaDB refused (503): now refused as input.
    many = {f"k{i}": "v" for i in range(200)}
    assert client.post("/v1/similar", json={"body": "x", "where": many}).status_code == 422
    fine = client.post("/v1/similar", json={"body": "x", "where": {"priority": "high"}})
    assert fine.status_code == 200


def test_found_by_schemathesis(world: World) -> None:
    # A non-list `tags` beside a tag_N column: a TypeError (500 in classify, 503 in similar).
    folded = ticket(tags=-4045721772967, tag_33="x")
    for route in ("/v1/classify", "/v1/similar"):
        response = world.client.post(route, json=folded)
        assert response.status_code == 422, response.text
        assert response.json()["detail"]["reason"] == "tags: Input should be a valid list"
    # An integral float is an integer to JSON Schema.
    assert world.client.post("/v1/similar", json={"body": "vpn", "k": 2.0}).status_code == 200
    # created_at is a string: pydantic would read a number as a Unix time.
    dated = world.client.post("/v1/classify", json=ticket(created_at=1_700_000_000))
    assert dated.status_code == 422 and "created_at" in dated.text
    # `where` is an object or null, not any falsy value.
    for where in ([], "", 0, False):
        body = {"body": "vpn", "where": where}
        assert world.client.post("/v1/similar", json=body).status_code == 422, where


def test_operators_are_no_labels(world: World) -> None:
    response = world.client.post("/v1/similar", json={"body": "x", "where": {"$or": "a"}})
    assert response.status_code == 422


def test_a_vector_store_outage_is_a_503_not_a_500(tmp_path: Path, world: World) -> None:
    client = open_chroma_client(host=None, port=0, path=tmp_path / "chroma")
    served = world.holder.current
    store = ChromaVectorStore(
        client, "gone", embedding_model=served.pipeline.vector_model, dimension=256
    )
    client.delete_collection("gone")  # the store loses it under the running API
    with signed(create_app(ModelHolder(served), store, auth=AUTH)) as api:
        assert api.post("/v1/similar", json={"body": "printer jam"}).status_code == 503
        assert api.get("/readyz").status_code == 503
        assert api.post("/v1/classify", json=ticket()).status_code == 200  # needs no store


def test_every_route_but_health_needs_a_known_token(world: World) -> None:
    app = world.client.app
    for token in (None, "wrong-token-0123456789"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with TestClient(app, headers=headers) as anonymous:
            for method, path in (("POST", "/v1/classify"), ("POST", "/v1/similar")):
                response = anonymous.request(method, path, json=ticket())
                assert response.status_code == 401, (path, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["detail"]["error_type"] == "unauthorized"
            assert anonymous.get("/metrics").status_code == 401
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/readyz").status_code == 200
    with TestClient(app, headers={"Authorization": f"Basic {TOKEN}"}) as basic:
        assert basic.post("/v1/classify", json=ticket()).status_code == 401


def test_without_tokens_only_loopback_clients_are_served(world: World) -> None:
    app = create_app(ModelHolder(world.holder.current), world.store)
    with TestClient(app) as remote:  # its client address is "testclient"
        response = remote.post("/v1/classify", json=ticket())
        assert response.status_code == 403 and "SERVE_TOKENS_FILE" in response.text
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        assert local.post("/v1/classify", json=ticket()).status_code == 200
        assert local.get("/metrics").status_code == 200


def test_metrics_can_be_left_open_for_prometheus(world: World) -> None:
    app = create_app(
        ModelHolder(world.holder.current),
        world.store,
        auth=AuthConfig(tokens=AUTH.tokens, metrics_public=True),
    )
    with TestClient(app) as anonymous:
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.post("/v1/classify", json=ticket()).status_code == 401
    assert "security" not in app.openapi()["paths"]["/metrics"]["get"]


def test_the_openapi_document_declares_bodies_answers_and_auth(world: World) -> None:
    document = world.client.get("/openapi.json").json()
    paths = document["paths"]
    classify = paths["/v1/classify"]["post"]
    body = classify["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ClassifyRequest"}
    assert set(classify["responses"]) == {"200", "401", "403", "413", "422", "503"}
    assert set(paths["/v1/similar"]["post"]["responses"]) >= {"404", "422", "503"}
    assert classify["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/healthz"]["get"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    schemas = document["components"]["schemas"]
    ticket_in = schemas["TicketIn"]
    assert ticket_in["properties"]["subject"]["maxLength"] == LIMITS.max_subject_chars
    assert ticket_in["properties"]["tags"]["maxItems"] == LIMITS.max_tags
    where = schemas["SimilarRequest"]["anyOf"][0]["properties"]["where"]
    assert where["propertyNames"] == {"enum": ["queue", "priority"]}


def test_docs_are_served_without_a_cdn(world: World) -> None:
    for page in ("/docs", "/redoc"):
        html = world.client.get(page)
        assert html.status_code == 200
        assert "cdn" not in html.text.lower() and "https://" not in html.text
    docs = world.client.get("/docs").text
    assert world.client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert "/static-offline-docs/swagger-ui.css" in docs


def test_a_flood_beyond_the_bound_is_answered_503_at_once(world: World) -> None:
    import threading

    release = threading.Event()
    entered = threading.Event()
    served = world.holder.current

    class Slow:  # the model holds the one slot until released
        def run(self, tickets: Any) -> Any:
            entered.set()
            release.wait(10)
            return served.pipeline.run(tickets)

        def __getattr__(self, name: str) -> Any:
            return getattr(served.pipeline, name)

    app_holder = ModelHolder(Served(served.model, Slow()))  # type: ignore[arg-type]
    app = create_app(
        app_holder, world.store, limits=ServeLimits(fields=LIMITS, max_inflight=1), auth=AUTH
    )
    with signed(app) as client:
        first: list[int] = []
        worker = threading.Thread(
            target=lambda: first.append(client.post("/v1/classify", json=ticket()).status_code)
        )
        worker.start()
        assert entered.wait(10)
        busy = client.post("/v1/classify", json=ticket())
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["detail"]["error_type"] == "overloaded"
        assert client.get("/healthz").status_code == 200  # health is never bounded
        release.set()
        worker.join(10)
        assert first == [200]
        assert client.post("/v1/classify", json=ticket()).status_code == 200
