"""``ticketflow serve``: the HTTP API (classify, similar tickets, health and metrics) and the
review desk (``/review``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ticketflow.cli._types import Commands
from ticketflow.cli._values import COUNT, number
from ticketflow.config import Settings

if TYPE_CHECKING:
    from ticketflow.serve.desk import DeskConfig

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
LOOPBACK = "127.0.0.1"


def register(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="HTTP API (bearer tokens): POST /v1/classify and /v1/similar, the review desk "
        "(/review, /v1/review, /v1/feedback), /healthz, /readyz, /metrics, /docs",
        description="Serve the current model over HTTP (FastAPI + uvicorn); promoted models "
        "are swapped in as the worker swaps them (MODEL_RELOAD_POLL_S). Callers need a token "
        "of SERVE_TOKENS_FILE; without one, serve binds to 127.0.0.1 only. docs/api.md, "
        "docs/review-desk.md.",
    )
    serve.add_argument(
        "--host",
        help="address to bind (default METRICS_BIND with SERVE_TOKENS_FILE, else 127.0.0.1)",
    )
    serve.add_argument(
        "--port", type=number(int, ge=1, le=65_535), default=8080, help="port (default 8080)"
    )
    serve.add_argument(
        "--max-tickets", type=COUNT, default=256, help="tickets per classify request (256)"
    )
    serve.set_defaults(handler=run_serve)


def bind_address(args: argparse.Namespace, settings: Settings, *, has_tokens: bool) -> str | None:
    """Where to listen, or None when the service would be open to the network without
    tokens (the caller refuses to start)."""
    from ticketflow.serve.auth import is_loopback

    asked = args.host or (
        settings.metrics_bind if "metrics_bind" in settings.model_fields_set else None
    )
    if has_tokens:
        return asked or settings.metrics_bind
    if asked is None:
        return LOOPBACK
    return asked if is_loopback(asked) else None


MIN_SECRET_BYTES = 32


def session_secret(path: Path | None) -> bytes | None:
    """The bytes of the session-secret file (None: unset); ValueError says what is wrong."""
    if path is None:
        return None
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.__class__.__name__})") from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: holds {len(secret)} bytes, at least {MIN_SECRET_BYTES} needed")
    return secret


def desk_config(settings: Settings, secret: bytes | None) -> DeskConfig:
    """The review desk of ``serve``: answers published to KAFKA_TOPIC_FEEDBACK, and with
    INCIDENTS_ENABLED a held ticket's incident read from KAFKA_TOPIC_INCIDENTS."""
    from ticketflow.adapters.kafka.clients import KeyedPublisher
    from ticketflow.review.queue import Order
    from ticketflow.serve.desk import DeskConfig

    publisher = KeyedPublisher(
        settings.kafka_client_config(),
        settings.kafka_topic_feedback,
        timeout_s=settings.serve_feedback_timeout_s,
    )
    incidents = None
    if settings.incidents_enabled:  # the desk shows a held ticket's incident (docs/incidents.md)
        from ticketflow.serve.incidents import IncidentFeed, topic_reader

        incidents = IncidentFeed(
            topic_reader(settings.kafka_client_config(), settings.kafka_topic_incidents)
        )
    return DeskConfig(
        publisher=publisher,
        incidents=incidents,
        feedback_topic=settings.kafka_topic_feedback,
        order=Order(settings.review_order),
        queue_max_age_s=settings.review_queue_max_age_s,
        session_ttl_s=settings.serve_session_ttl_s,
        cookie_secure=settings.serve_cookie_secure,
        **({"session_secret": secret} if secret is not None else {}),
    )


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.serve.auth import AuthConfig, TokenFileError, TokenTable

    # Checked before anything heavy is imported or loaded: a refusal comes in well under 5 s.
    try:
        tokens = (
            TokenTable.load(settings.serve_tokens_file)
            if settings.serve_tokens_file is not None
            else TokenTable()
        )
    except TokenFileError as exc:
        print(f"ticketflow serve: error: SERVE_TOKENS_FILE {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        secret = session_secret(settings.serve_session_secret_file)
    except ValueError as exc:
        print(f"ticketflow serve: error: SERVE_SESSION_SECRET_FILE {exc}", file=sys.stderr)
        return EXIT_USAGE
    host = bind_address(args, settings, has_tokens=bool(tokens))
    if host is None:
        asked = args.host or settings.metrics_bind
        print(
            f"ticketflow serve: error: refusing to bind {asked} without tokens: set "
            "SERVE_TOKENS_FILE (docs/api.md), or bind 127.0.0.1",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if tokens:
        logger.info("serve: %d token(s) for %s", len(tokens.entries), ", ".join(tokens.names))
    else:
        logger.warning(
            "serve: no SERVE_TOKENS_FILE: bound to %s only, every local caller is served", host
        )

    import uvicorn

    from ticketflow.runtime.loading import load_runtime
    from ticketflow.runtime.reload import ModelReloader
    from ticketflow.serve.app import ServeLimits, create_app
    from ticketflow.serve.holder import ModelHolder, Served

    serving = load_runtime(settings)
    holder = ModelHolder(Served(serving.model, serving.pipeline))
    # A pinned MODEL_VERSION turns hot reload off, as in the worker. Serve follows the
    # registry's pointer only (no announcements consumer): a poll costs a file read.
    reload = settings.model_reload_enabled and settings.model_version is None
    reloader = (
        ModelReloader(
            registry=serving.registry,
            encoder=serving.encoders,
            serving_version=serving.model_version,
            poll_s=settings.model_reload_poll_s,
            on_ready=holder.accept,
        )
        if reload
        else None
    )
    desk = desk_config(settings, secret)
    app = create_app(
        holder,
        serving.store,
        limits=ServeLimits(
            fields=settings.field_limits,
            max_ticket_bytes=settings.kafka_max_message_bytes,
            max_tickets=args.max_tickets,
            review=settings.review_policy(),
            max_inflight=settings.serve_max_inflight,
        ),
        auth=AuthConfig(tokens=tokens, metrics_public=settings.serve_metrics_public),
        reloader=reloader,
        desk=desk,
    )
    uvicorn.run(
        app,
        host=host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0
