"""The HTTP API (``ticketflow serve``): classify tickets and find similar ones.

- ``POST /v1/classify``: one ticket (a JSON object of the ``tickets`` topic's schema) or a list
  of them -> the predictions ``labeled-tickets`` would carry (labels, probabilities, review
  flags, model version). Nothing is published or stored.
- ``POST /v1/similar``: ``{"ticket_id": ...}`` of a stored ticket, or a ticket's fields, plus
  optional ``k`` and ``where`` ({target: label}) -> ``{"results": [...]}``, nearest first.
- ``GET /healthz`` (the process answers), ``/readyz`` (a model is served and the vector store
  answers), ``/metrics`` (Prometheus: requests and latency per route, the served model).
- ``/docs`` (Swagger UI), ``/redoc`` and ``/openapi.json``: the contract, served offline.
- The review desk (:mod:`ticketflow.serve.desk`): the pages ``/login``, ``/review`` and
  ``/review/{ticket_id}``, and ``GET /v1/review`` and ``POST /v1/feedback`` for integrations.

Every route but the health checks needs a bearer token (:mod:`ticketflow.serve.auth`); at
most ``max_inflight`` requests to ``/v1/*`` run at once, more are answered 503 at once.

A request the stream would dead-letter is refused here with 422 and the dead letter's reason
and error type (the same limits, :mod:`ticketflow.schemas.ticket`); bad input never gets a 500.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as render_metrics
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ticketflow import __version__
from ticketflow.adapters.store import ChromaVectorStore
from ticketflow.models.record import Stamp, labeled_ticket
from ticketflow.models.review import ReviewPolicy
from ticketflow.runtime.reload import ModelReloader
from ticketflow.runtime.similar import (
    MAX_K,
    UnknownTicketError,
    similar_to_id,
    similar_to_tickets,
)
from ticketflow.schemas import (
    DEFAULT_LIMITS,
    DeadLetterReason,
    FieldLimits,
    LabeledTicket,
    SourcePosition,
    Ticket,
)
from ticketflow.schemas.ticket import (
    MAX_JSON_DEPTH,
    json_depth,
    lone_surrogate,
    validation_reason,
)
from ticketflow.serve.auth import LOCAL_CALLER, AuthConfig, is_loopback
from ticketflow.serve.desk import DeskConfig, register_desk
from ticketflow.serve.holder import ModelHolder, Served
from ticketflow.serve.schemas import (
    TICKET_EXAMPLE,
    ClassifiedTicket,
    ErrorBody,
    FeedbackIn,
    Health,
    NotReady,
    Ready,
    SimilarAnswer,
    classify_schema,
    describe_review,
    similar_schema,
    ticket_schema,
)

logger = logging.getLogger(__name__)

QUERY_ID = "query"  # the id of a /v1/similar ticket sent without one
SIMILAR_KEYS = ("k", "where")
RETRY_AFTER_S = 1
BEARER = HTTPBearer(
    auto_error=False,  # our own 401, with the typed error body
    description="A token of `SERVE_TOKENS_FILE`: `Authorization: Bearer <token>` (docs/api.md).",
)
API_DESCRIPTION = """\
Classify support tickets and find similar stored ones, with the stream's rules: a ticket the
worker would dead-letter is answered 422 with the dead letter's `error_type` and `reason`.

Every route except `/healthz` and `/readyz` needs `Authorization: Bearer <token>` (a token of
`SERVE_TOKENS_FILE`; `/metrics` is open with `SERVE_METRICS_PUBLIC`). Ticket text in answers is
the customers' own words: treat it as plain text, never as markup. See docs/api.md.
"""
CLASSIFY_EXAMPLES = {
    "one": {"summary": "One ticket", "value": TICKET_EXAMPLE},
    "list": {
        "summary": "A list of tickets",
        "value": [TICKET_EXAMPLE, {"ticket_id": "T-1002", "subject": "VPN drops hourly"}],
    },
}
SIMILAR_EXAMPLES = {
    "stored": {"summary": "A stored ticket's neighbours", "value": {"ticket_id": "T-1001"}},
    "text": {
        "summary": "A new ticket's neighbours, in one queue",
        "value": {"subject": "VPN drops hourly", "k": 3, "where": {"queue": "IT"}},
    },
}
_STATUS_TEXT = {
    401: "No token, or an unknown one (with `WWW-Authenticate: Bearer`).",
    403: "No tokens are configured and the client is not on this machine.",
    404: "The `ticket_id` is not in the vector store.",
    413: "The request is larger than the stream's event limit (`message_too_large`).",
    422: "The stream would dead-letter it: `error_type` and `reason` say why.",
    503: "Busy (more than SERVE_MAX_INFLIGHT requests at once) or the vector store does not "
    "answer: retry after `Retry-After` seconds.",
}
_STATUS_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    503: {"Retry-After": {"required": True, "schema": {"type": "integer"}}},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these refusals, each with the typed error body."""
    return {
        status: {
            "model": ErrorBody,
            "description": _STATUS_TEXT[status],
            **({"headers": _STATUS_HEADERS[status]} if status in _STATUS_HEADERS else {}),
        }
        for status in statuses
    }


def json_body(schema: str, examples: dict[str, Any]) -> dict[str, Any]:
    """An ``openapi_extra`` declaring a JSON request body that the handler reads raw."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema}"},
                    "examples": examples,
                }
            },
        }
    }


@dataclass(frozen=True)
class ServeLimits:
    """What a request may hold: the stream's ticket limits and event size (KAFKA_MAX_MESSAGE_
    BYTES, per ticket), and how many tickets one classify request may carry."""

    fields: FieldLimits = DEFAULT_LIMITS
    max_ticket_bytes: int = 1_000_000
    max_tickets: int = 256
    review: ReviewPolicy = field(default_factory=ReviewPolicy)  # REVIEW_* settings
    max_inflight: int = 32  # SERVE_MAX_INFLIGHT: /v1/* requests at once, more get 503


class BadInput(Exception):  # noqa: N818 (a refusal, answered 422, not an error of ours)
    def __init__(
        self,
        error_type: DeadLetterReason,
        reason: str,
        *,
        index: int | None = None,
        ticket_id: str | None = None,
        status: int = 422,
    ) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason
        self.index = index
        self.ticket_id = ticket_id
        self.status = status

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"error_type": self.error_type.value, "reason": self.reason}
        if self.index is not None:
            detail["index"] = self.index
        if self.ticket_id is not None:
            detail["ticket_id"] = self.ticket_id
        return {"detail": detail}


class Denied(Exception):  # noqa: N818 (a refusal of the caller or of the load, not a bug)
    """A request refused before its body is read: auth (401, 403) or the service (503)."""

    def __init__(
        self, status: int, error_type: str, reason: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"detail": {"error_type": self.error_type, "reason": self.reason}}


class InflightLimit:
    """ASGI middleware: at most ``limit`` requests under ``prefix`` at once; the next ones
    are answered 503 with ``Retry-After`` at once, instead of queueing for the model without
    bound (the model runs one batch at a time, so a queue only adds latency)."""

    def __init__(self, app: ASGIApp, *, limit: int, prefix: str) -> None:
        self.app = app
        self.limit = limit
        self.prefix = prefix
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            busy = Denied(
                503,
                "overloaded",
                f"more than {self.limit} requests at once (SERVE_MAX_INFLIGHT)",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            response = JSONResponse(busy.body(), status_code=503, headers=busy.headers)
            await response(scope, receive, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


class ServeMetrics:
    """Every metric of the API, on one registry (tests give each app its own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "ticketflow_http_requests_total",
            "HTTP requests by route, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ticketflow_http_request_seconds",
            "HTTP request latency by route (seconds)",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.tickets = Counter(
            "ticketflow_http_tickets_total",
            "Tickets classified or searched for, by route",
            ["route"],
            registry=self.registry,
        )
        self.model = Gauge(
            "ticketflow_serve_model_info",
            "The served model version (value 1)",
            ["version", "vector_model"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "ticketflow_serve_model_reloads_total",
            "Hot reloads of the registry's current model, by result (ok, refused)",
            ["result"],
            registry=self.registry,
        )

    def set_model(self, served: Served) -> None:
        self.model.clear()
        self.model.labels(served.version, served.pipeline.vector_model).set(1)


def decode_json(raw: bytes, *, max_bytes: int) -> Any:
    """Bytes -> JSON value, refused as the stream refuses an event (size, UTF-8, JSON, depth)."""
    if len(raw) > max_bytes:
        raise BadInput(
            DeadLetterReason.MESSAGE_TOO_LARGE,
            f"request has {len(raw)} bytes, limit is {max_bytes}",
            status=413,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(DeadLetterReason.NOT_UTF8, f"value is not valid UTF-8: {exc}") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError, not only JSONDecodeError: a number of more than 4,300 digits is valid
        # JSON that Python's int() refuses (CVE-2020-10735's limit).
        raise BadInput(DeadLetterReason.INVALID_JSON, f"invalid JSON: {exc}") from exc
    # Strict UTF-8 cannot hold a lone surrogate, but a \ud800 escape can; the encoders'
    # tokenizers and ChromaDB refuse such text deep inside (a 500), so it is refused here.
    if "\\u" in text and (found := lone_surrogate(data)) is not None:
        raise BadInput(
            DeadLetterReason.NOT_UTF8,
            f"value is not valid Unicode: lone surrogate {found!r} (from a \\u escape)",
        )
    # A list of tickets nests one level deeper than a ticket.
    if json_depth(data, MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH + isinstance(data, list):
        raise BadInput(
            DeadLetterReason.VALIDATION_ERROR, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )
    return data


def validate_ticket(data: Any, limits: FieldLimits, *, index: int | None = None) -> Ticket:
    if not isinstance(data, dict):
        raise BadInput(
            DeadLetterReason.NOT_AN_OBJECT,
            f"expected a JSON object, got {type(data).__name__}",
            index=index,
        )
    ticket_id = data.get("ticket_id")
    readable = ticket_id if isinstance(ticket_id, str) and ticket_id.strip() else None
    created = data.get("created_at")
    if created is not None and not isinstance(created, str):
        # pydantic would read a number as a Unix time; the API's contract is an ISO 8601
        # string (a generated client sends one), so a number is refused as the schema says.
        raise BadInput(
            DeadLetterReason.VALIDATION_ERROR,
            "created_at: must be an ISO 8601 date-time string or null",
            index=index,
            ticket_id=readable,
        )
    try:
        return Ticket.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise BadInput(
            DeadLetterReason.VALIDATION_ERROR,
            validation_reason(exc),
            index=index,
            ticket_id=readable,
        ) from exc


def classified(record: LabeledTicket) -> dict[str, Any]:
    """One ticket's answer: the fields of its ``labeled-tickets`` record, without its source
    position (nothing was read from Kafka) and the worker's similarity fields."""
    body = record.model_dump(exclude={"source", "similar", "possible_duplicate_of"})
    body["event_time"] = record.event_time.isoformat() if record.event_time else None
    body["processed_time"] = record.processed_time.isoformat()
    return body


# The ``source`` of an answer: it was read from a request, not a topic (left out of the body).
_REQUEST = SourcePosition(topic="http", partition=0, offset=0)


def create_app(
    holder: ModelHolder,
    store: ChromaVectorStore,
    *,
    limits: ServeLimits | None = None,
    auth: AuthConfig | None = None,
    reloader: ModelReloader | None = None,
    metrics: ServeMetrics | None = None,
    desk: DeskConfig | None = None,
) -> FastAPI:
    """The API over the served model in ``holder`` and the vector store ``store``.

    ``auth``: the callers' tokens; without any, only loopback clients are served (403 for
    others). ``reloader``: started and stopped with the app (hot reload, handing models to
    ``holder``); its results are counted. ``desk``: the review desk's feedback producer and
    sessions (without one, answers are refused with 503); its incident feed is started and
    stopped with the app.
    """
    limits = limits or ServeLimits()
    auth = auth or AuthConfig()
    metrics = metrics or ServeMetrics()
    metrics.set_model(holder.current)
    poller = reloader
    # Read in the background, so that a desk page never waits on the broker.
    incidents = desk.incidents if desk is not None else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if poller is not None:
            poller.start()
        queue.start()
        if incidents is not None:
            incidents.start()
        try:
            yield
        finally:
            if incidents is not None:
                incidents.stop()
            queue.stop()
            if poller is not None:
                poller.stop()

    # Swagger UI and ReDoc from the assets fastapi-offline ships: /docs works without a CDN.
    app = FastAPIOffline(
        title="ticketflow",
        summary="Classify support tickets and find similar ones.",
        description=API_DESCRIPTION,
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        swagger_ui_parameters={"persistAuthorization": False},
    )

    if poller is not None:
        report = poller.on_result

        def counted(result: str) -> None:
            metrics.reloads.labels(result=result).inc()
            if result == "ok":
                metrics.set_model(holder.current)
                app.openapi_schema = None  # the new model's targets, for `where`
            report(result)

        poller.on_result = counted

    # Added first, so it runs inside ``observe``: refusals are counted like any answer.
    app.add_middleware(InflightLimit, limit=limits.max_inflight, prefix="/v1/")

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            logger.exception("%s %s failed", request.method, request.url.path)
            response = JSONResponse({"detail": "internal error"}, status_code=500)
        route = request.scope.get("route")
        # The route's template, never the raw path: unknown paths must not grow the series.
        name = getattr(route, "path", None) or "unmatched"
        metrics.requests.labels(name, request.method, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(BadInput)
    async def refused(_request: Request, exc: BadInput) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 (a typed body or query) in the API's one error shape.
        parts = [
            f"{'.'.join(str(p) for p in error.get('loc', ())[1:]) or 'request'}: {error['msg']}"
            for error in list(exc.errors())[:5]
        ]
        detail = {"error_type": "validation_error", "reason": "; ".join(parts)[:2000]}
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Denied)
    async def denied(_request: Request, exc: Denied) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> str:
        """The caller's name (its token's line in SERVE_TOKENS_FILE), for handlers that
        record who did what; 401 without a known token."""
        if not auth.tokens:
            host = request.client.host if request.client else ""
            if is_loopback(host):
                return LOCAL_CALLER
            raise Denied(
                403,
                "forbidden",
                "no tokens are configured (SERVE_TOKENS_FILE): only loopback clients are served",
            )
        name = None if credentials is None else auth.tokens.caller(credentials.credentials)
        if name is None:
            reason = "missing bearer token" if credentials is None else "unknown bearer token"
            raise Denied(401, "unauthorized", reason, headers={"WWW-Authenticate": "Bearer"})
        return name

    open_metrics = auth.metrics_public

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> JSONResponse:
        """The process answers (no token needed)."""
        return JSONResponse({"status": "ok"})

    @app.get(
        "/readyz",
        response_model=Ready,
        responses={503: {"model": NotReady, "description": "The vector store does not answer."}},
        tags=["health"],
    )
    async def readyz() -> JSONResponse:
        """A model is served and the vector store answers (no token needed)."""
        served = holder.current
        try:
            stored = await run_in_threadpool(store.count)
        except Exception as exc:  # any client error: not ready, and say why
            return JSONResponse(
                {"status": "unavailable", "reason": f"vector store: {exc}"}, status_code=503
            )
        return JSONResponse({"status": "ready", "model_version": served.version, "stored": stored})

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **({} if open_metrics else errors(401, 403)),
        },
        dependencies=[] if open_metrics else [Security(caller)],
        tags=["health"],
    )
    async def prometheus() -> Response:
        """Requests and latency per route, the served model (token unless
        SERVE_METRICS_PUBLIC)."""
        queue.watched()  # the review queue's gauges stay fresh while they are scraped
        return Response(render_metrics(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/classify",
        response_model=ClassifiedTicket | list[ClassifiedTicket],
        responses=errors(401, 403, 413, 422, 503),
        openapi_extra=json_body("ClassifyRequest", CLASSIFY_EXAMPLES),
        tags=["tickets"],
    )
    async def classify(request: Request, _caller: str = Security(caller)) -> JSONResponse:
        """Labels for one ticket (an object answers an object) or a list (a list answers a
        list, in order). Nothing is published or stored."""
        raw = await request.body()
        data = decode_json(raw, max_bytes=limits.max_ticket_bytes * limits.max_tickets)
        single = not isinstance(data, list)
        if single and len(raw) > limits.max_ticket_bytes:
            raise BadInput(
                DeadLetterReason.MESSAGE_TOO_LARGE,
                f"request has {len(raw)} bytes, limit is {limits.max_ticket_bytes}",
                status=413,
            )
        items = [data] if single else data
        if len(items) > limits.max_tickets:
            raise BadInput(
                DeadLetterReason.VALIDATION_ERROR,
                f"{len(items)} tickets, limit is {limits.max_tickets} per request",
            )
        if not items:
            return JSONResponse([])
        tickets = [
            validate_ticket(item, limits.fields, index=None if single else i)
            for i, item in enumerate(items)
        ]
        metrics.tickets.labels("/v1/classify").inc(len(tickets))
        answers = await run_in_threadpool(_classify, holder, tickets, limits.review)
        return JSONResponse(answers[0] if single else answers)

    @app.post(
        "/v1/similar",
        response_model=SimilarAnswer,
        responses=errors(401, 403, 404, 413, 422, 503),
        openapi_extra=json_body("SimilarRequest", SIMILAR_EXAMPLES),
        tags=["tickets"],
    )
    async def similar(request: Request, _caller: str = Security(caller)) -> JSONResponse:
        """The nearest stored tickets of a stored ticket or of a ticket's text, nearest
        first; `where` keeps those whose current label matches. Nothing is stored."""
        data = decode_json(await request.body(), max_bytes=limits.max_ticket_bytes)
        if not isinstance(data, dict):
            raise BadInput(
                DeadLetterReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}"
            )
        k, where = _similar_options(data, holder.current.pipeline.classifier.targets)
        fields = {key: value for key, value in data.items() if key not in SIMILAR_KEYS}
        metrics.tickets.labels("/v1/similar").inc()
        try:
            found = await _similar(holder, store, fields, k, where, limits.fields)
        except BadInput:
            raise
        except Exception as exc:  # the store's client errors: its outage, not bad input
            logger.warning("similar: vector store failed: %s: %s", type(exc).__name__, exc)
            raise Denied(
                503,
                "store_unavailable",
                f"vector store unavailable: {type(exc).__name__}",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from exc
        return JSONResponse({"results": found})

    queue = register_desk(
        app,
        holder=holder,
        store=store,
        auth=auth,
        config=desk or DeskConfig(),
        registry=metrics.registry,
        api_caller=caller,
    )

    def openapi() -> dict[str, Any]:
        # The request bodies are described here, not by a pydantic model, so the stream's
        # decoder keeps reading the raw bytes (and answering with the dead letters' reasons).
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components["TicketIn"] = ticket_schema(limits.fields)
            components["ClassifyRequest"] = classify_schema(limits.max_tickets)
            targets = holder.current.pipeline.classifier.targets
            components["SimilarRequest"] = similar_schema(limits.fields, targets, MAX_K)
            components["FeedbackIn"] = FeedbackIn.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            describe_review(document, targets)
            # FastAPI gives a route's refusals the route's media type; /metrics answers
            # text, but its 401 and 403 are JSON like every refusal.
            for status, answer in document["paths"]["/metrics"]["get"]["responses"].items():
                content = answer.get("content", {})
                if int(status) >= 400 and "text/plain" in content:
                    content["application/json"] = content.pop("text/plain")
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way
    return app


async def _similar(
    holder: ModelHolder,
    store: ChromaVectorStore,
    fields: dict[str, Any],
    k: int,
    where: dict[str, str],
    limits: FieldLimits,
) -> list[dict[str, Any]]:
    if set(fields) <= {"ticket_id"}:
        ticket_id = fields.get("ticket_id")
        if not isinstance(ticket_id, str) or not ticket_id.strip():
            raise BadInput(
                DeadLetterReason.VALIDATION_ERROR,
                "give a stored ticket's ticket_id, or a ticket's subject or body",
            )
        return await run_in_threadpool(_similar_to_id, holder, store, ticket_id, k, where)
    has_id = bool(fields.get("ticket_id"))
    ticket = validate_ticket({"ticket_id": QUERY_ID, **fields}, limits)
    return await run_in_threadpool(_similar_to_ticket, holder, store, ticket, k, where, has_id)


def _similar_options(data: Mapping[str, Any], targets: Sequence[str]) -> tuple[int, dict[str, str]]:
    k = data.get("k", 5)
    if isinstance(k, float) and k.is_integer():
        k = int(k)  # 5.0 is an integer to JSON Schema, so to a generated client too
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise BadInput(
            DeadLetterReason.VALIDATION_ERROR, f"k: must be an integer from 1 to {MAX_K}"
        )
    where = data.get("where")
    where = {} if where is None else where
    # Keys starting with "$" are ChromaDB operators, not labels: refused, not passed on.
    if not isinstance(where, dict) or not all(
        isinstance(key, str) and key and not key.startswith("$") and isinstance(value, str)
        for key, value in where.items()
    ):
        raise BadInput(
            DeadLetterReason.VALIDATION_ERROR, 'where: must map targets to labels, {"queue": "…"}'
        )
    # Only the model's targets: a typo would silently match nothing, and thousands of keys
    # make an expression ChromaDB refuses (a 503 for what is bad input).
    unknown = sorted(set(where) - set(targets))
    if unknown:
        raise BadInput(
            DeadLetterReason.VALIDATION_ERROR,
            f"where: {unknown[0][:80]!r} is not a target of the served model "
            f"({', '.join(targets)})",
        )
    return k, where


def _classify(
    holder: ModelHolder, tickets: Sequence[Ticket], policy: ReviewPolicy
) -> list[dict[str, Any]]:
    served = holder.current  # one model for the whole request, even across a swap
    pipeline = served.pipeline
    with holder.lock:
        result = pipeline.run(tickets)
    stamp = Stamp.of(
        pipeline, model_version=served.version, policy=policy, processed_at=datetime.now(UTC)
    )
    return [
        classified(labeled_ticket(tickets[index], predictions, stamp, source=_REQUEST))
        for index, predictions in zip(result.indices, result.predictions, strict=True)
    ]


def _similar_to_id(
    holder: ModelHolder,
    store: ChromaVectorStore,
    ticket_id: str,
    k: int,
    where: Mapping[str, str],
) -> list[dict[str, Any]]:
    targets = holder.current.pipeline.classifier.targets
    try:
        found = similar_to_id(store, ticket_id, k=k, targets=targets, where=where)
    except UnknownTicketError as exc:
        raise BadInput(
            DeadLetterReason.VALIDATION_ERROR, str(exc), ticket_id=ticket_id, status=404
        ) from exc
    return [n.as_dict() for n in found]


def _similar_to_ticket(
    holder: ModelHolder,
    store: ChromaVectorStore,
    ticket: Ticket,
    k: int,
    where: Mapping[str, str],
    exclude_self: bool,
) -> list[dict[str, Any]]:
    served = holder.current
    with holder.lock:
        found = similar_to_tickets(
            store, served.pipeline, [ticket], k=k, where=where, exclude_self=exclude_self
        )[0]
    return [n.as_dict() for n in found]
