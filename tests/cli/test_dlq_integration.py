"""``ticketflow dlq`` on the real broker with a real worker: 200 events dead-lettered under a
too-tight setting, the worker restarted with it fixed, the dead letters replayed: every ticket
labelled once, none lost; a second replay publishes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.test_unreachable_broker import LIMIT_S, MAX_LINES, clean_env, closed_port, run_timed
from tests.fixtures.kafka import TopicNamesFactory
from tests.fixtures.pipeline import REPO, WorkerProcess
from tests.stream.test_app_integration import collect
from ticketflow.adapters.kafka.clients import encode_event, produce_raw
from ticketflow.adapters.kafka.dlq import read_topic
from ticketflow.batch.dlq import REPLAY_OF, REPLAY_REASON, SKIP_BASE64
from ticketflow.devtools.sample import generate_tickets
from ticketflow.schemas import DeadLetter, DeadLetterReason

N = 200
# Every generated body is longer than this (the shortest has 78 characters).
TOO_TIGHT_BODY_CHARS = "50"


def dlq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ticketflow", "dlq", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(f"\n`ticketflow dlq {' '.join(args)}`: {time.monotonic() - started:.1f} s")
    return done


def records(config: dict[str, str], topic: str) -> list[tuple[bytes | None, dict[str, bytes]]]:
    """(key, headers) of every record of ``topic`` now."""
    return [(r.key, dict(r.headers)) for r in read_topic(config, topic)]


@pytest.mark.integration
@pytest.mark.slow
def test_200_dead_letters_fixed_and_replayed_are_labelled_once(
    worker: WorkerProcess, kafka_config: dict[str, str]
) -> None:
    env = worker.env
    tickets = generate_tickets(N, seed=21)
    expected = {t["ticket_id"] for t in tickets}
    assert all(len(t["body"]) > int(TOO_TIGHT_BODY_CHARS) for t in tickets)

    # The bad setting: every ticket is refused and dead-lettered.
    env["MAX_BODY_CHARS"] = TOO_TIGHT_BODY_CHARS
    worker.start()
    worker.wait_ready()
    payloads = [(t["ticket_id"].encode(), encode_event(t)) for t in tickets]
    assert produce_raw(kafka_config, env["KAFKA_TOPIC_TICKETS"], payloads) == N
    dead = collect(kafka_config, env["KAFKA_TOPIC_DLQ"], N)
    worker.stop()
    assert len(dead) == N and {d["error_type"] for d in dead} == {"validation_error"}
    assert records(kafka_config, env["KAFKA_TOPIC_LABELED"]) == []

    # The fix: the worker restarted with the default limit.
    del env["MAX_BODY_CHARS"]
    worker.start()
    worker.wait_ready()

    listing = dlq("list", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    (summary,) = [json.loads(line) for line in listing.stdout.splitlines()]
    assert (summary["reason"], summary["count"]) == ("validation_error", N)
    table = dlq("list", "--reason", "not_utf8", env=env)
    assert table.returncode == 0 and ": 0 dead letters" in table.stdout, table.stdout
    show = dlq("show", "--limit", "3", env=env)
    assert show.returncode == 0, show.stderr
    assert show.stdout.count("validation_error") == 3 and f"shown 3 of {N}" in show.stdout

    dry = dlq("replay", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"would replay {N} of {N} selected" in dry.stdout, dry.stdout
    assert len(records(kafka_config, env["KAFKA_TOPIC_TICKETS"])) == N  # nothing sent

    first = dlq("replay", env=env)
    print(f"first replay: {first.stdout.strip()}")
    assert first.returncode == 0, first.stderr
    assert f"replayed {N} of {N} selected" in first.stdout, first.stdout
    on_tickets = records(kafka_config, env["KAFKA_TOPIC_TICKETS"])
    replays = [(key, headers) for key, headers in on_tickets if REPLAY_OF in headers]
    assert len(on_tickets) == 2 * N and len(replays) == N
    assert {key.decode() for key, _ in replays if key} == expected
    assert {headers[REPLAY_REASON] for _, headers in replays} == {b"validation_error"}

    labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], N)
    second = dlq("replay", env=env)
    print(f"second replay: {second.stdout.strip()}")
    assert second.returncode == 0, second.stderr
    assert f"replayed 0 of {N} selected" in second.stdout, second.stdout
    assert f"already replayed: {N}" in second.stdout, second.stdout
    assert len(records(kafka_config, env["KAFKA_TOPIC_TICKETS"])) == 2 * N

    # Every label on the topic now, after both replays: one per ticket.
    final = records(kafka_config, env["KAFKA_TOPIC_LABELED"])
    ids = Counter(key.decode() for key, _ in final if key is not None)
    assert len(final) >= len(labeled) >= N
    lost = expected - set(ids)
    duplicates = sum(count - 1 for count in ids.values())
    print(f"labelled {len(final)}, unique {len(ids)}, lost {len(lost)}, dup {duplicates}")
    assert not lost and duplicates == 0 and set(ids) == expected
    worker.stop()


@pytest.mark.unit
@pytest.mark.parametrize("action", [["list"], ["show"], ["replay"], ["replay", "--dry-run"]])
def test_dlq_fails_fast_without_a_broker(action: list[str], tmp_path: Path) -> None:
    servers = f"127.0.0.1:{closed_port()}"
    env = clean_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=servers)
    code, seconds, output = run_timed(["dlq", *action], tmp_path, env)
    shown = f"`ticketflow dlq {' '.join(action)}` -> {code} in {seconds:.1f} s:\n{output}"
    assert code == 1 and seconds <= LIMIT_S, shown
    assert len(output.strip().splitlines()) <= MAX_LINES, shown
    assert servers in output and "KAFKA_BOOTSTRAP_SERVERS" in output, shown


@pytest.mark.unit
def test_bad_since_and_reason_are_usage_errors(tmp_path: Path) -> None:
    env = clean_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}")
    for args in (["list", "--since", "yesterday"], ["replay", "--reason", "nope"]):
        code, _, output = run_timed(["dlq", *args], tmp_path, env)
        assert code == 2, output
        assert "--since" in output or "--reason" in output, output


def dead_letter_record(ticket_id: str, original: bytes, source_topic: str) -> bytes:
    text, encoding, truncated = DeadLetter.encode_original(original, 65_536)
    return (
        DeadLetter(
            original=text,
            original_encoding=encoding,
            original_size=len(original),
            original_truncated=truncated,
            ticket_id=ticket_id,
            error_type=DeadLetterReason.NOT_UTF8
            if encoding == "base64"
            else DeadLetterReason.PROCESSING_ERROR,
            reason="test",
            source_topic=source_topic,
            source_partition=0,
            source_offset=1,
            failed_at=datetime.now(UTC),
        )
        .model_dump_json()
        .encode()
    )


@pytest.mark.integration
def test_unreadable_records_and_unreplayable_originals_are_counted(
    kafka_bootstrap: str,
    kafka_config: dict[str, str],
    topic_names: TopicNamesFactory,
    tmp_path: Path,
) -> None:
    topics = topic_names("dlqcli")
    env = clean_env(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA_TOPIC_TICKETS=topics.tickets,
        KAFKA_TOPIC_LABELED=topics.labeled,
        KAFKA_TOPIC_DLQ=topics.dlq,
    )
    produce_raw(
        kafka_config,
        topics.dlq,
        [
            (None, b"this is not a dead letter"),
            (
                b"T-1",
                dead_letter_record("T-1", b'{"ticket_id": "T-1", "body": "\xff"}', topics.tickets),
            ),
            (
                b"T-2",
                dead_letter_record("T-2", b'{"ticket_id": "T-2", "body": "ok"}', topics.tickets),
            ),
        ],
    )
    listing = dlq("list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert f"{topics.dlq}: 2 dead letters" in listing.stdout, listing.stdout
    assert "1 records are not dead letters" in listing.stderr, listing.stderr
    show = dlq("show", "--json", "--reason", "not_utf8", env=env)
    (row,) = [json.loads(line) for line in show.stdout.splitlines()]
    assert row["ticket_id"] == "T-1" and row["dlq_position"].startswith(f"{topics.dlq}:")
    dry = dlq("replay", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would replay 1 of 2 selected dead letters" in dry.stdout, dry.stdout
    assert f"{SKIP_BASE64}: 1" in dry.stdout and "key T-2" in dry.stdout, dry.stdout

    missing = dlq("list", env={**env, "KAFKA_TOPIC_DLQ": f"{topics.dlq}-missing"})
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "KAFKA_TOPIC_DLQ" in missing.stderr and len(missing.stderr.splitlines()) == 1
