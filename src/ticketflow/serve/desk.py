"""The review desk: pages where people answer the tickets the model was unsure of, and the
JSON API behind them (docs/review-desk.md).

- ``GET /review``: the held tickets not yet answered, most informative first (smallest margin
  of the review gate; ``order=oldest`` for first in, first out), filtered by an unsure target
  and its predicted label, with counts per target.
- ``GET /review/{ticket_id}``: the stored text and tags, the model's top labels per target,
  the unsure targets and the 5 nearest stored tickets; a form to confirm or correct.
- ``POST /review/{ticket_id}``: the answer, published as a ``LabelFeedback`` on
  ``ticket-feedback`` (``corrected_by`` = the caller) once the broker acknowledged it.
- ``GET /v1/review`` and ``POST /v1/feedback``: the same for a help-desk integration.

Who is calling: the API's bearer tokens (:mod:`ticketflow.serve.auth`). A browser logs in
once with its token (``/login``) and then carries a signed, HttpOnly, SameSite=Strict session
cookie; every form post of a cookie session carries its CSRF token. Scripts may send the
bearer header to the pages instead (no cookie, no CSRF token needed). Without tokens, loopback
clients are the caller ``local``.

Ticket text is customers' writing: the templates escape everything (Jinja2 autoescape) and the
pages' Content-Security-Policy allows only this service's own script and style, so a
``<script>`` in a body is shown as text and could not run even if it slipped through.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote, urlencode

import jinja2
from fastapi import FastAPI, Form, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import BadSignature, URLSafeTimedSerializer
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ticketflow.adapters.store import ChromaVectorStore, StoredRecord
from ticketflow.monitoring.incidents_view import desk_view
from ticketflow.review.answers import AnswerError, answer
from ticketflow.review.queue import MAX_LIMIT, HeldTicket, Order, QueuePage, ReviewQueue
from ticketflow.review.ticket import TicketView, ticket_view
from ticketflow.runtime.similar import SimilarTicket, UnknownTicketError, similar_to_stored
from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.schemas.ticket import lone_surrogate
from ticketflow.serve.auth import LOCAL_CALLER, AuthConfig, is_loopback
from ticketflow.serve.holder import ModelHolder
from ticketflow.serve.incidents import IncidentFeed
from ticketflow.serve.schemas import ErrorBody, FeedbackAccepted, FeedbackIn, ReviewAnswer

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "ticketflow_session"
SESSION_SALT = "ticketflow-review-desk"
SIMILAR_SHOWN = 5
SUBJECT_CHARS = 120
MAX_FEEDBACK_BYTES = 65_536  # the worker's limit for a feedback event (stream/feedback.py)
# A held ticket's nearest stored tickets (GET /v1/review) are looked up again after this long.
SIMILAR_TTL_S = 60.0
SIMILAR_KEPT = 4 * MAX_LIMIT  # held tickets whose neighbours are kept
ANSWER_CHANNELS = ("desk", "api")  # ticketflow_review_answers_total{via}
ANSWER_RESULTS = ("published", "invalid", "unavailable")  # ... {result}
PAGE_HEADERS = {
    # Only this service's own script and style: an injected <script> or inline handler never
    # runs, even if a template forgot to escape.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class FeedbackSink(Protocol):
    """Where answers go: ``publish`` returns once the broker acknowledged the record and
    raises when it did not (nothing was published)."""

    def publish(self, key: bytes, value: bytes) -> None: ...


@dataclass(frozen=True)
class DeskConfig:
    """``publisher``: the ``ticket-feedback`` producer (None: answers are refused with 503).
    ``session_secret``: signs session cookies (SERVE_SESSION_SECRET_FILE; by default a random
    one per process, so a restart logs everyone out). ``cookie_secure``: mark the cookie
    Secure (behind TLS)."""

    publisher: FeedbackSink | None = None
    feedback_topic: str = "ticket-feedback"
    order: Order = Order.MARGIN
    queue_max_age_s: float = 2.0
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    session_ttl_s: int = 12 * 3600
    cookie_secure: bool = False
    # The ``ticket-incidents`` topic (INCIDENTS_ENABLED): a held ticket's incident with its
    # size and top terms. Without it the desk shows only the id the worker stored.
    incidents: IncidentFeed | None = None


def incident_of(
    feed: IncidentFeed | None, ticket_id: str, incident_id: str | None
) -> dict[str, Any] | None:
    """What the desk shows of ``ticket_id``'s incident: from the feed (found by the stored id
    or by the incident's member list), else the stored id alone."""
    event = feed.book().of_ticket(ticket_id, incident_id) if feed is not None else None
    if event is not None:
        return dict(desk_view(event))
    if incident_id is None:
        return None
    return {"incident_id": incident_id, "status": None, "size": None, "top_terms": []}


class DeskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "ticketflow_review_queue_depth",
            "Tickets held for review and not yet answered, per unsure target",
            ["target"],
            registry=registry,
        )
        self.held = Gauge(
            "ticketflow_review_queue_held",
            "Tickets held for review and not yet answered",
            registry=registry,
        )
        self.answers = Counter(
            "ticketflow_review_answers_total",
            "Answers given on the desk or the API, by channel and result "
            "(published, invalid, unavailable)",
            ["via", "result"],
            registry=registry,
        )
        self.refresh_seconds = Gauge(
            "ticketflow_review_queue_refresh_seconds",
            "How long the last read of the held tickets from the vector store took",
            registry=registry,
        )
        # Every series at 0 from the start: increase() cannot see the first count of a series
        # born with it, and answers are few.
        for via in ANSWER_CHANNELS:
            for result in ANSWER_RESULTS:
                self.answers.labels(via, result)

    def observe(self, page: QueuePage) -> None:
        self.held.set(page.total)
        self.refresh_seconds.set(page.refresh_s)
        for target, count in page.counts.items():
            self.depth.labels(target=target).set(count)


class NeighbourCache:
    """The nearest stored tickets of held tickets, kept ``ttl_s``. A page of 50 held tickets
    needs 50 nearest-neighbour searches (about 0.1 s in one query at 100,000 stored tickets,
    docs/api.md), the same page is asked for again and again (a help desk polling, reviewers
    reloading), and a held ticket's neighbours change only when tickets are stored near it
    or answered: so a neighbour's label may be up to ``ttl_s`` old, and a ticket stored
    nearer since may be missing for as long."""

    def __init__(
        self,
        ttl_s: float = SIMILAR_TTL_S,
        kept: int = SIMILAR_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.kept = kept
        self._clock = clock
        self._near: dict[tuple[str, tuple[str, ...]], tuple[float, list[SimilarTicket]]] = {}
        self._lock = threading.Lock()

    def near(
        self,
        store: ChromaVectorStore,
        records: Mapping[str, StoredRecord],
        *,
        k: int,
        targets: Sequence[str],
    ) -> dict[str, list[SimilarTicket]]:
        """The ``k`` nearest stored tickets of each of ``records`` (with their vectors): the
        kept ones, the others in one query."""
        now, shape = self._clock(), tuple(targets)
        found: dict[str, list[SimilarTicket]] = {}
        with self._lock:
            for ticket_id in records:
                kept = self._near.get((ticket_id, shape))
                if kept is not None and kept[0] > now:
                    found[ticket_id] = kept[1]
        vectors = {
            i: r.vector for i, r in records.items() if i not in found and r.vector is not None
        }
        fresh = similar_to_stored(store, vectors, k=k, targets=targets) if vectors else {}
        with self._lock:
            for ticket_id, near in fresh.items():
                self._near.pop((ticket_id, shape), None)  # to the end: the newest
                self._near[(ticket_id, shape)] = (now + self.ttl_s, near)
            while len(self._near) > self.kept:
                del self._near[next(iter(self._near))]  # the oldest
        return {**found, **fresh}


class Unavailable(RuntimeError):  # noqa: N818 (the broker's outage, answered 503)
    pass


@dataclass(frozen=True)
class Session:
    caller: str
    csrf: str


def register_desk(
    app: FastAPI,
    *,
    holder: ModelHolder,
    store: ChromaVectorStore,
    auth: AuthConfig,
    config: DeskConfig,
    registry: CollectorRegistry,
    api_caller: Callable[..., Any],
) -> ReviewQueue:
    """Add the desk's pages and API to ``app``; returns its queue (refreshed by requests)."""
    metrics = DeskMetrics(registry)
    queue = ReviewQueue(
        store,
        lambda: holder.current.pipeline.classifier.targets,
        max_age_s=config.queue_max_age_s,
        on_refresh=metrics.observe,
    )
    neighbours = NeighbourCache()
    signer = URLSafeTimedSerializer(config.session_secret, salt=SESSION_SALT)
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value, whatever the file's name
        undefined=jinja2.StrictUndefined,
    )
    templates.filters["when"] = _when
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def known() -> dict[str, list[str]]:
        classifier = holder.current.pipeline.classifier
        return {target: classifier.labels(target) for target in classifier.targets}

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        page = templates.get_template(name).render(**values)
        return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)

    def session_of(request: Request) -> Session | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = signer.loads(raw, max_age=config.session_ttl_s)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        caller, csrf = data.get("caller"), data.get("csrf")
        if not isinstance(caller, str) or not isinstance(csrf, str):
            return None
        # A session outlives no token: a name removed from the tokens file is logged out.
        if auth.tokens and caller not in auth.tokens.names:
            return None
        return Session(caller, csrf)

    def set_session(response: Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            signer.dumps({"caller": session.caller, "csrf": session.csrf}),
            max_age=config.session_ttl_s,
            httponly=True,
            samesite="strict",
            secure=config.cookie_secure,
            path="/",
        )

    def bearer_caller(request: Request) -> str | bool | None:
        """The caller named by an Authorization header; False when one was sent but is not
        a known token; None without a header."""
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not auth.tokens:
            return False
        return auth.tokens.caller(token.strip()) or False

    def local(request: Request) -> bool:
        host = request.client.host if request.client else ""
        return not auth.tokens and is_loopback(host)

    @dataclass
    class Visitor:
        caller: str
        csrf: str | None  # None: authenticated by the bearer header, no CSRF token needed
        new_session: bool = False

    def visitor(request: Request) -> Visitor | Response:
        """Who is looking at a page, or the answer to send instead (login, 401, 403)."""
        by_header = bearer_caller(request)
        if isinstance(by_header, str):
            return Visitor(by_header, None)
        if by_header is False:
            return _refusal(401, "unauthorized", "unknown bearer token")
        session = session_of(request)
        if session is not None:
            return Visitor(session.caller, session.csrf)
        if local(request):
            return Visitor(LOCAL_CALLER, secrets.token_urlsafe(24), new_session=True)
        if not auth.tokens:
            return _refusal(
                403,
                "forbidden",
                "no tokens are configured (SERVE_TOKENS_FILE): only loopback clients are served",
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    def page(who: Visitor, name: str, status: int = 200, **values: Any) -> Response:
        response = render(name, status, caller=who.caller, csrf=who.csrf or "", **values)
        if who.new_session and who.csrf is not None:
            set_session(response, Session(who.caller, who.csrf))
        return response

    def store_down(who: Visitor, exc: Exception, note: str = "") -> Response:
        return page(
            who,
            "message.html",
            503,
            title="Vector store unavailable",
            message=f"The vector store does not answer ({type(exc).__name__}); {note}try again.",
        )

    def csrf_ok(who: Visitor, sent: str | None) -> bool:
        if who.csrf is None:
            return True  # the bearer header: a browser never adds it by itself
        return bool(sent) and hmac.compare_digest(who.csrf.encode(), (sent or "").encode())

    def publish(feedback: LabelFeedback, via: str) -> None:
        if config.publisher is None:
            metrics.answers.labels(via, "unavailable").inc()
            raise Unavailable("answers are not accepted: this service has no feedback producer")
        try:
            config.publisher.publish(
                feedback.ticket_id.encode("utf-8"), feedback.model_dump_json().encode("utf-8")
            )
        except Exception as exc:
            metrics.answers.labels(via, "unavailable").inc()
            logger.warning("feedback for %s not published: %s", feedback.ticket_id, exc)
            raise Unavailable(
                f"the broker did not take the answer ({exc}); nothing was published, try again"
            ) from exc
        metrics.answers.labels(via, "published").inc()
        queue.answered(feedback.ticket_id)
        logger.info("feedback for %s by %s published", feedback.ticket_id, feedback.corrected_by)

    def stored(ticket_id: str) -> bool:
        return bool(store.records([ticket_id]))

    # ---- pages -------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(next: str = "/review") -> Response:
        return render("login.html", next=_local_path(next), error=None, caller=None, csrf="")

    @app.post("/login", include_in_schema=False)
    async def login(
        token: Annotated[str, Form(max_length=4096)] = "",
        next: Annotated[str, Form(max_length=2048)] = "/review",
    ) -> Response:
        caller = auth.tokens.caller(token.strip()) if auth.tokens and token.strip() else None
        if caller is None:
            error = (
                "Unknown token."
                if auth.tokens
                else "This service has no tokens: log in from this machine."
            )
            return render(
                "login.html", 401, next=_local_path(next), error=error, caller=None, csrf=""
            )
        response = RedirectResponse(_local_path(next), status_code=303)
        set_session(response, Session(caller, secrets.token_urlsafe(24)))
        logger.info("desk: %s logged in", caller)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, csrf: Annotated[str, Form(max_length=256)] = "") -> Response:
        who = visitor(request)
        if isinstance(who, Response):
            return who
        if not csrf_ok(who, csrf):
            return _refusal(403, "csrf", "the form's CSRF token is missing or wrong")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    async def review_page(
        request: Request,
        target: str | None = None,
        label: str | None = None,
        order: Order | None = None,
        answered: str | None = None,
    ) -> Response:
        who = visitor(request)
        if isinstance(who, Response):
            return who
        order = order or config.order
        target = target or None
        label = label or None
        try:
            found = await run_in_threadpool(
                queue.page, target=target, label=label, order=order, limit=50
            )
            texts = await run_in_threadpool(_texts, store, [t.ticket_id for t in found.items])
        except Exception as exc:
            return store_down(who, exc)
        return page(
            who,
            "queue.html",
            queue=found,
            texts=texts,
            targets=list(found.counts),
            target=target,
            label=label,
            order=order.value,
            answered=answered,
            filters=_filters(target, label, order, config.order),
        )

    @app.get("/review/{ticket_id}", response_class=HTMLResponse, include_in_schema=False)
    async def ticket_page(
        request: Request,
        ticket_id: str,
        target: str | None = None,
        label: str | None = None,
        order: Order | None = None,
    ) -> Response:
        who = visitor(request)
        if isinstance(who, Response):
            return who
        return await _ticket(who, ticket_id, _filters(target, label, order, config.order))

    async def _ticket(
        who: Visitor,
        ticket_id: str,
        filters: dict[str, str],
        *,
        status: int = 200,
        error: str | None = None,
        chosen: Mapping[str, str] | None = None,
    ) -> Response:
        try:
            view = await run_in_threadpool(ticket_view, store, ticket_id, known=known())
        except UnknownTicketError:
            return page(
                who,
                "message.html",
                404,
                title="Not found",
                message=f"Ticket {ticket_id} is not in the vector store.",
            )
        except Exception as exc:
            return store_down(who, exc)
        queue_filters = {
            "target": filters.get("target"),
            "label": filters.get("label"),
            "order": Order(filters.get("order", config.order.value)),
        }
        before, after = await run_in_threadpool(queue.neighbours, ticket_id, **queue_filters)
        incident = await run_in_threadpool(
            incident_of, config.incidents, view.ticket_id, view.incident_id
        )
        return page(
            who,
            "ticket.html",
            status,
            view=view,
            before=before,
            after=after,
            filters=filters,
            query=f"?{urlencode(filters)}" if filters else "",
            error=error,
            chosen=dict(chosen or {}),
            keys=_keys(view),
            incident=incident,
        )

    @app.post("/review/{ticket_id}", include_in_schema=False)
    async def answer_form(request: Request, ticket_id: str) -> Response:
        who = visitor(request)
        if isinstance(who, Response):
            return who
        form = await request.form(max_files=0, max_fields=200)
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        if not csrf_ok(who, fields.get("csrf")):
            return _refusal(403, "csrf", "the form's CSRF token is missing or wrong")
        filters = {k: fields[k] for k in ("target", "label", "order") if fields.get(k)}
        targets = known()
        chosen = _chosen(fields, targets)
        try:
            if not await run_in_threadpool(stored, ticket_id):
                return page(
                    who,
                    "message.html",
                    404,
                    title="Not found",
                    message=f"Ticket {ticket_id} is not in the vector store.",
                )
            feedback = answer(
                ticket_id,
                chosen,
                known=targets,
                corrected_by=who.caller,
                comment=fields.get("comment"),
            )
        except AnswerError as exc:
            metrics.answers.labels("desk", "invalid").inc()
            return await _ticket(who, ticket_id, filters, status=422, error=str(exc), chosen=chosen)
        except Exception as exc:  # the store's client errors: its outage, nothing published
            logger.warning("desk: vector store failed: %s: %s", type(exc).__name__, exc)
            return store_down(who, exc, "nothing was published, ")
        try:
            await run_in_threadpool(publish, feedback, "desk")
        except Unavailable as exc:
            return await _ticket(who, ticket_id, filters, status=503, error=str(exc), chosen=chosen)
        after = fields.get("after") or None
        if after and after != ticket_id:
            location = (
                f"/review/{quote(after, safe='')}?{urlencode({**filters, 'answered': ticket_id})}"
            )
        else:
            location = f"/review?{urlencode({**filters, 'answered': ticket_id})}"
        return RedirectResponse(location, status_code=303)

    # ---- JSON API ----------------------------------------------------------------------

    @app.get(
        "/v1/review",
        response_model=ReviewAnswer,
        responses=_errors(401, 403, 422, 503),
        tags=["review"],
    )
    async def review_api(
        caller: str = Security(api_caller),
        target: Annotated[
            str | None, Query(max_length=64, description="Only tickets unsure on this target.")
        ] = None,
        label: Annotated[
            str | None,
            Query(
                max_length=200,
                description="Only tickets the model gave this label (of `target`, or of any "
                "target without one).",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        order: Annotated[
            Order | None,
            Query(
                description="`margin` (most informative first), `margin-diverse` or `oldest`; "
                "default REVIEW_ORDER."
            ),
        ] = None,
    ) -> JSONResponse:
        """Tickets held for review and not yet answered by a person, with the model's labels,
        their stored text and tags, and their nearest stored tickets."""
        del caller
        targets = holder.current.pipeline.classifier.targets
        if target is not None and target not in targets:
            return _refusal(
                422,
                "validation_error",
                f"target: not a target of the served model ({', '.join(targets)})",
            )
        try:
            body = await run_in_threadpool(
                _review_answer,
                queue,
                store,
                neighbours,
                targets,
                target,
                label,
                order or config.order,
                limit,
                config.incidents,
            )
        except Exception as exc:
            logger.warning("review: vector store failed: %s: %s", type(exc).__name__, exc)
            return _refusal(
                503, "store_unavailable", f"vector store unavailable: {type(exc).__name__}"
            )
        return JSONResponse(body)

    @app.post(
        "/v1/feedback",
        status_code=202,
        response_model=FeedbackAccepted,
        responses=_errors(401, 403, 404, 413, 422, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/FeedbackIn"}}
                },
            }
        },
        tags=["review"],
    )
    async def feedback_api(request: Request, caller: str = Security(api_caller)) -> JSONResponse:
        """Publish a person's labels for a stored ticket on `ticket-feedback` (as `ticketflow
        feedback` does); answered 202 once the broker acknowledged it. The worker applies it
        and the ticket leaves the review queue."""
        raw = await request.body()
        if len(raw) > MAX_FEEDBACK_BYTES:
            return _refusal(413, "message_too_large", f"at most {MAX_FEEDBACK_BYTES} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return _refusal(422, "invalid_json", f"the body is not UTF-8 JSON: {exc}"[:300])
        if lone_surrogate(data) is not None:
            return _refusal(422, "not_utf8", "the body holds a lone surrogate (a \\u escape)")
        try:
            body = FeedbackIn.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _refusal(422, "validation_error", f"{where}: {first['msg']}")
        try:
            exists = await run_in_threadpool(stored, body.ticket_id)
        except Exception as exc:
            return _refusal(
                503, "store_unavailable", f"vector store unavailable: {type(exc).__name__}"
            )
        if not exists:
            return _refusal(
                404, "not_found", f"ticket {body.ticket_id!r} is not in the vector store"
            )
        try:
            feedback = answer(
                body.ticket_id,
                body.labels,
                known=known(),
                corrected_by=caller,
                comment=body.comment,
            )
        except AnswerError as exc:
            metrics.answers.labels("api", "invalid").inc()
            return _refusal(422, "invalid_answer", str(exc))
        try:
            await run_in_threadpool(publish, feedback, "api")
        except Unavailable as exc:
            return _refusal(503, "broker_unavailable", str(exc))
        accepted = {
            "ticket_id": feedback.ticket_id,
            "labels": feedback.labels,
            "corrected_by": feedback.corrected_by,
            "topic": config.feedback_topic,
        }
        return JSONResponse(accepted, status_code=202)

    return queue


def _refusal(status: int, error_type: str, reason: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(
        {"detail": {"error_type": error_type, "reason": reason}},
        status_code=status,
        headers=headers,
    )


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "No token, or an unknown one.",
        403: "No tokens are configured and the client is not on this machine.",
        404: "The ticket is not in the vector store.",
        413: "The body is larger than a feedback event may be (64 KiB).",
        422: "A refused query or answer: `reason` says why.",
        503: "The vector store or the broker does not answer; nothing was published.",
    }
    return {s: {"model": ErrorBody, "description": text[s]} for s in statuses}


def _local_path(path: str) -> str:
    """``path`` if it is a path on this site, else ``/review`` (no open redirect)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/review"


def _filters(
    target: str | None, label: str | None, order: Order | None, default: Order
) -> dict[str, str]:
    filters: dict[str, str] = {}
    if target:
        filters["target"] = target
    if label:
        filters["label"] = label
    if order is not None and order is not default:
        filters["order"] = order.value
    return filters


def _chosen(fields: Mapping[str, str], targets: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The form's label per target: a new label typed in wins over a class picked from the
    list, which wins over the radio buttons of the model's top labels."""
    chosen: dict[str, str] = {}
    for target in targets:
        for key in (f"new.{target}", f"other.{target}", f"label.{target}"):
            value = fields.get(key, "")
            if value.strip():
                chosen[target] = value
                break
    return chosen


def _keys(view: TicketView) -> dict[tuple[str, str], str]:
    """A keyboard key (1-9) per top label, the unsure targets first."""
    keys: dict[tuple[str, str], str] = {}
    ordered = sorted(view.targets, key=lambda t: not t.unsure)
    for target in ordered:
        for label, _ in target.top:
            if len(keys) < 9:
                keys[(target.target, label)] = str(len(keys) + 1)
    return keys


def _when(epoch: float) -> str:
    if not epoch:
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _texts(store: ChromaVectorStore, ids: Sequence[str]) -> dict[str, str]:
    """The first line of each ticket's stored text (its subject), when the store keeps text."""
    records = store.records(ids, documents=True)
    out = {}
    for ticket_id, record in records.items():
        if record.document:
            first = record.document.split("\n", 1)[0].strip()
            out[ticket_id] = (
                first if len(first) <= SUBJECT_CHARS else first[: SUBJECT_CHARS - 1] + "…"
            )
    return out


def _review_answer(  # noqa: PLR0913 (the API's query, passed to a worker thread)
    queue: ReviewQueue,
    store: ChromaVectorStore,
    neighbours: NeighbourCache,
    targets: Sequence[str],
    target: str | None,
    label: str | None,
    order: Order,
    limit: int,
    incidents: IncidentFeed | None = None,
) -> dict[str, Any]:
    found = queue.page(target=target, label=label, order=order, limit=limit)
    ids = [t.ticket_id for t in found.items]
    records = store.records(ids, vectors=True, documents=True)
    near = neighbours.near(store, records, k=SIMILAR_SHOWN, targets=targets)
    return {
        "tickets": [
            {
                **_held_out(t, records.get(t.ticket_id), near.get(t.ticket_id, [])),
                "incident": incident_of(incidents, t.ticket_id, t.incident_id),
            }
            for t in found.items
        ],
        "total": found.total,
        "counts": found.counts,
        "refreshed_at": datetime.fromtimestamp(found.refreshed_at, UTC).isoformat(),
    }


def _held_out(ticket: HeldTicket, record: Any, near: Sequence[SimilarTicket]) -> dict[str, Any]:
    from ticketflow.schemas import store as layout

    metadata = record.metadata if record is not None else {}
    return {
        "ticket_id": ticket.ticket_id,
        "processed_at": datetime.fromtimestamp(ticket.processed_at, UTC).isoformat(),
        "model_version": ticket.model_version,
        "margin": ticket.margin,
        "predictions": {
            target: {
                "label": label,
                "probability": ticket.probability[target],
                "top": [
                    {"label": name, "probability": p} for name, p in ticket.top.get(target, [])
                ],
                "unsure": target in ticket.unsure,
            }
            for target, label in ticket.predicted.items()
        },
        "text": (record.document or None) if record is not None else None,
        "tags": layout.stored_tags(metadata),
        "similar": [n.as_dict() for n in near],
    }
