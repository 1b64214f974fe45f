"""``ticketflow serve`` as users run it, against its own OpenAPI document, by a tool no one
here wrote: schemathesis (``--checks all``, a fixed seed, 100 examples per operation) must find
no failure; every /v1 route answers 401 without a token; and without tokens serve refuses to
bind a non-loopback address, before loading anything.

The service is the product's: a model ``ticketflow train`` registered (real encoders), tickets
``ticketflow backfill`` stored in an embedded ChromaDB, ``ticketflow serve`` in a subprocess
with a tokens file (SERVE_TOKENS_FILE) and the real broker (``POST /v1/feedback`` publishes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.pipeline import REPO
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.devtools.kafka.local_broker import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

TOKEN = "contract-test-token-0123456789"
SEED = 20261206
EXAMPLES = 100
FEEDBACK_TOPIC = f"contract-feedback-{uuid.uuid4().hex[:8]}"
OPERATIONS = 7  # healthz, readyz, metrics, classify, similar, review, feedback


@dataclass
class Served:
    url: str
    log: Path
    stored: Path  # the tickets in the store


def _env(root: Path, registry: Path, bootstrap: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_FEEDBACK": FEEDBACK_TOPIC,
        "MODEL_REGISTRY_DIR": str(registry),
        "CHROMA_PATH": str(root / "chroma"),
        "CHROMA_DOCUMENT": "full",
        "STATE_DIR": str(root / "state"),
        "MODEL_RELOAD_ENABLED": "false",
    }
    for name in ("CHROMA_HOST", "SERVE_TOKENS_FILE", "METRICS_BIND"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def served(
    trained_registry: Path, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("contract")
    env = _env(root, trained_registry, kafka_bootstrap)
    create_topics(
        {"bootstrap.servers": kafka_bootstrap}, [FEEDBACK_TOPIC], partitions=1, replication=1
    )
    run = [sys.executable, "-m", "ticketflow"]
    stored = root / "stored.jsonl"
    for step in (
        ["sample", "--n", "150", "--seed", "8", "--out", str(stored)],
        ["backfill", "--data", str(stored)],
    ):
        done = subprocess.run([*run, *step], env=env, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    tokens = root / "tokens"
    tokens.write_text(f"# the contract test\ncontract:{TOKEN}\n")
    port = free_port()
    log = root / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [*run, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "SERVE_TOKENS_FILE": str(tokens)},
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve did not get ready:\n" + log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield Served(url, log, stored)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert TOKEN not in log.read_text()  # tokens are never logged


def test_schemathesis_finds_nothing(served: Served, tmp_path: Path) -> None:
    # schemathesis 4's command line (3.x had other options and a Python API this is not).
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which(
        "schemathesis"
    )
    assert binary, "schemathesis is not installed: pip install -e '.[dev]'"
    command = [
        binary,
        "run",
        f"{served.url}/openapi.json",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    out = done.stdout + done.stderr
    summary = [line.strip() for line in out.splitlines() if "generated" in line or "Seed" in line]
    print(f"\nschemathesis ({took:.0f}s): {' | '.join(summary)}")
    assert done.returncode == 0, out[-8000:]
    assert f"{OPERATIONS} selected / {OPERATIONS} total" in out and " passed" in out, out[-3000:]


def test_every_v1_route_needs_a_token_and_health_does_not(served: Served) -> None:
    document = httpx.get(f"{served.url}/openapi.json", timeout=10).json()
    v1 = [(m, p) for p, ops in document["paths"].items() if p.startswith("/v1/") for m in ops]
    assert len(v1) == 4
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for method, path in v1:
            for headers in ({}, {"Authorization": "Bearer not-a-known-token-0000"}):
                response = client.request(method, path, json={"body": "x"}, headers=headers)
                assert response.status_code == 401, (path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics").status_code == 401
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        signed = {"Authorization": f"Bearer {TOKEN}"}
        good = {"ticket_id": "c-1", "subject": "VPN drops", "body": "VPN disconnects hourly"}
        assert client.post("/v1/classify", json=good, headers=signed).status_code == 200
        assert "ticketflow_http_requests_total" in client.get("/metrics", headers=signed).text
        stored = json.loads(served.stored.read_text().splitlines()[0])["ticket_id"]
        answer = {"ticket_id": stored, "labels": {"queue": "Contract Queue"}}
        published = client.post("/v1/feedback", json=answer, headers=signed)
        assert published.status_code == 202, published.text
        assert published.json()["corrected_by"] == "contract"
        docs = client.get("/docs").text
        assert "static-offline-docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
