"""The HTTP API's latency with and without bearer tokens, and where its in-flight bound bites.

    MODEL_REGISTRY_DIR=... CHROMA_PATH=... python -m bench.api [--requests N] [--flood 8,32,64]

Two apps over the same served model and store, each on its own uvicorn (127.0.0.1): one with a
token table (``--tokens`` entries, the caller's token last: every entry is compared anyway),
one without tokens (loopback callers only). One-ticket ``POST /v1/classify`` requests go to
the two in turn, so both see the same machine state; prints p50/p99 of each and the ratio.
Then ``--flood``: that many clients at once, each sending ``--per-client`` requests, against
the authenticated app with ``--max-inflight``: how many were answered 503, and latencies.
docs/api.md records the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections import Counter
from typing import Any

import httpx
import uvicorn

from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.runtime.loading import load_runtime
from ticketflow.serve.app import ServeLimits, create_app
from ticketflow.serve.auth import AuthConfig, TokenTable
from ticketflow.serve.holder import ModelHolder, Served

TICKET = {
    "ticket_id": "bench-1",
    "subject": "VPN drops every hour",
    "body": "Since the update the VPN client disconnects every hour and I lose my session.",
    "tags": ["vpn", "network"],
}


def _serve(app: Any) -> tuple[str, uvicorn.Server]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _flood(
    url: str, token: str, clients: int, per_client: int
) -> tuple[Counter[int], list[float]]:
    statuses: Counter[int] = Counter()
    took: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one() -> None:
            for _ in range(per_client):
                begun = time.perf_counter()
                response = await client.post("/v1/classify", json=TICKET, headers=headers)
                took.append(time.perf_counter() - begun)
                statuses[response.status_code] += 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return statuses, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per app (1000)")
    parser.add_argument("--tokens", type=int, default=20, help="entries in the table (20)")
    parser.add_argument("--flood", default="8,32,64,128", help="concurrent clients, comma list")
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--max-inflight", type=int, default=Settings().serve_max_inflight)
    args = parser.parse_args()

    settings = Settings()
    serving = load_runtime(settings)
    holder = ModelHolder(Served(serving.model, serving.pipeline))
    token = "bench-token-0123456789abcdef"
    table = TokenTable.parse(
        [f"other{i}:other-token-{i:04d}-0123456789" for i in range(args.tokens - 1)]
        + [f"bench:{token}"]
    )
    limits = ServeLimits(
        fields=settings.field_limits,
        max_ticket_bytes=settings.kafka_max_message_bytes,
        review=settings.review_policy(),
        max_inflight=args.max_inflight,
    )
    signed_url, signed_server = _serve(
        create_app(holder, serving.store, limits=limits, auth=AuthConfig(tokens=table))
    )
    open_url, open_server = _serve(create_app(holder, serving.store, limits=limits))
    signed = httpx.Client(base_url=signed_url, headers={"Authorization": f"Bearer {token}"})
    local = httpx.Client(base_url=open_url)
    times: dict[str, list[float]] = {"with auth": [], "without auth": []}
    for client in (signed, local):  # warm-up: first calls load caches
        for _ in range(20):
            client.post("/v1/classify", json=TICKET).raise_for_status()
    for _ in range(args.requests):
        for name, client in (("with auth", signed), ("without auth", local)):
            begun = time.perf_counter()
            client.post("/v1/classify", json=TICKET).raise_for_status()
            times[name].append(time.perf_counter() - begun)
    print(f"POST /v1/classify, one ticket, {args.requests} requests each, interleaved:")
    for name, values in times.items():
        print(
            f"  {name:13s} p50 {_pct(values, 0.5):6.2f} ms  p99 {_pct(values, 0.99):6.2f} ms  "
            f"mean {statistics.fmean(values) * 1000:6.2f} ms"
        )
    with_auth, without = times["with auth"], times["without auth"]
    print(
        f"  ratio (with/without): p50 {_pct(with_auth, 0.5) / _pct(without, 0.5):.3f}  "
        f"p99 {_pct(with_auth, 0.99) / _pct(without, 0.99):.3f}"
    )
    print(f"flood: SERVE_MAX_INFLIGHT={args.max_inflight}, {args.per_client} requests per client")
    for clients in (int(c) for c in args.flood.split(",") if c):
        statuses, took = asyncio.run(_flood(signed_url, token, clients, args.per_client))
        print(
            f"  {clients:4d} clients: {dict(sorted(statuses.items()))}  "
            f"p50 {_pct(took, 0.5):7.1f} ms  p99 {_pct(took, 0.99):7.1f} ms"
        )
    signed.close()
    local.close()
    signed_server.should_exit = open_server.should_exit = True


if __name__ == "__main__":
    main()
