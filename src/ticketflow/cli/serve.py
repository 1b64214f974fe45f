"""``ticketflow serve``: the HTTP API (classify, similar tickets, health and metrics)."""

from __future__ import annotations

import argparse

from ticketflow.cli._types import Commands
from ticketflow.cli._values import COUNT, number
from ticketflow.config import Settings


def register(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="HTTP API: POST /v1/classify and /v1/similar, /healthz, /readyz, /metrics",
        description="Serve the current model over HTTP (FastAPI + uvicorn); promoted models "
        "are swapped in as the worker swaps them (MODEL_RELOAD_POLL_S). docs/memory.md.",
    )
    serve.add_argument("--host", help="address to bind (default METRICS_BIND)")
    serve.add_argument(
        "--port", type=number(int, ge=1, le=65_535), default=8080, help="port (default 8080)"
    )
    serve.add_argument(
        "--max-tickets", type=COUNT, default=256, help="tickets per classify request (256)"
    )
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
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
    app = create_app(
        holder,
        serving.store,
        limits=ServeLimits(
            fields=settings.field_limits,
            max_ticket_bytes=settings.kafka_max_message_bytes,
            max_tickets=args.max_tickets,
            review=settings.review_policy(),
        ),
        reloader=reloader,
    )
    uvicorn.run(
        app,
        host=args.host or settings.metrics_bind,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0
