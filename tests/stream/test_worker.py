"""The batch labeller with a real classifier and a real embedded ChromaDB; Kafka sends recorded."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import HashingEncoder
from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.config import Settings
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.review import ReviewPolicy
from ticketflow.schemas import DeadLetter, FieldLimits, LabeledTicket
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.routing import Position
from ticketflow.stream.worker import (
    BatchLabeler,
    BatchLimits,
    Committer,
    InFlight,
    RawEvent,
    SimilarSearch,
    Sinks,
    Threads,
)

pytestmark = pytest.mark.unit

TRAIN = {
    "refund my invoice payment": "Billing",
    "charged twice on my credit card": "Billing",
    "invoice total is wrong": "Billing",
    "printer does not print": "IT",
    "laptop screen is broken": "IT",
    "vpn cannot connect to network": "IT",
}


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def __call__(self, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, value))


class PoisonClassifier(TicketClassifier):
    """Raises on one specific vector, like a model bug triggered by one ticket."""

    def predict(self, vectors, *, top_k=3):  # type: ignore[no-untyped-def]
        poison = HashingEncoder().encode(["POISON"])[0]
        if any(np.allclose(v, poison) for v in vectors):
            raise ValueError("classifier exploded")
        return super().predict(vectors, top_k=top_k)


def make_labeler(
    tmp_path: Path, classifier_type: type[TicketClassifier] = TicketClassifier
) -> tuple[BatchLabeler, Recorder, Recorder, ChromaVectorStore, WorkerMetrics]:
    encoder = HashingEncoder()
    base = TicketClassifier.fit(encoder.encode(list(TRAIN)), {"queue": list(TRAIN.values())})
    classifier = classifier_type(base.heads)
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=tmp_path / "chroma"),
        "tickets",
        embedding_model=encoder.name,
        dimension=encoder.dimension,
    )
    labeled, dead, metrics = Recorder(), Recorder(), WorkerMetrics()
    labeler = BatchLabeler(
        pipeline=LabelingPipeline(encoder, classifier, max_text_chars=1000),
        store=store,
        model_version="v-test",
        sinks=Sinks(labeled=labeled, dead=dead),
        threads=Threads(model=ThreadPoolExecutor(max_workers=1)),
        metrics=metrics,
        limits=BatchLimits(
            fields=FieldLimits(),
            max_message_bytes=100_000,
            dlq_keep_bytes=1_000,
            review=ReviewPolicy(threshold=0.9),
        ),
    )
    return labeler, labeled, dead, store, metrics


def event(offset: int, value: bytes | None) -> RawEvent:
    return RawEvent(key=None, value=value, position=Position("tickets", 0, offset), timestamp=None)


def ticket(ticket_id: str, body: str) -> bytes:
    return json.dumps({"ticket_id": ticket_id, "subject": "", "body": body}).encode()


def test_batch_labels_valid_and_dead_letters_invalid(tmp_path: Path) -> None:
    labeler, labeled, dead, store, metrics = make_labeler(tmp_path)
    events = [
        event(0, ticket("A", "my invoice is wrong")),
        event(1, b"{broken"),
        event(2, ticket("B", "printer broken")),
        event(3, b'{"ticket_id": "C"}'),
    ]
    outcome = asyncio.run(labeler.handle(events))
    assert [t.ticket_id for t in outcome.labeled] == ["A", "B"]
    assert [t.predictions["queue"].label for t in outcome.labeled] == ["Billing", "IT"]
    assert [k for k, _ in labeled.sent] == [b"A", b"B"]
    letters = [DeadLetter.model_validate_json(v) for _, v in dead.sent]
    assert [(d.source_offset, d.error_type.value) for d in letters] == [
        (1, "invalid_json"),
        (3, "validation_error"),
    ]
    assert dead.sent[1][0] == b"C"
    stored = store.get(["A", "B"])
    assert sorted(stored["ids"]) == ["A", "B"]
    meta = dict(zip(stored["ids"], stored["metadatas"], strict=True))
    assert meta["A"]["queue"] == "Billing" and meta["A"]["model_version"] == "v-test"
    published = LabeledTicket.model_validate_json(labeled.sent[0][1])
    assert published.source.offset == 0 and published.model_version == "v-test"
    assert published.needs_review == (published.predictions["queue"].probability < 0.9)
    assert published.review_gate == ["queue"]
    assert published.predictions["queue"].needs_review == published.needs_review
    assert published.predictions["queue"].review_threshold == 0.9  # REVIEW_THRESHOLD fallback
    assert meta["A"]["queue_needs_review"] == published.predictions["queue"].needs_review
    assert metrics.labeled._value.get() == 2
    flagged = sum(t.needs_review for t in outcome.labeled)
    assert metrics.held_for_review._value.get() == flagged
    assert metrics.needs_review.labels(target="queue")._value.get() == flagged
    assert metrics.consumed._value.get() == 4


def test_duplicate_ids_in_one_batch_are_both_published_and_stored_once(tmp_path: Path) -> None:
    labeler, labeled, _, store, _ = make_labeler(tmp_path)
    events = [event(0, ticket("A", "printer broken")), event(1, ticket("A", "refund invoice"))]
    asyncio.run(labeler.handle(events))
    assert len(labeled.sent) == 2
    assert store.count() == 1
    assert store.get(["A"])["metadatas"][0]["queue"] == "Billing"  # the last one wins


def test_poison_ticket_goes_to_dlq_and_the_rest_is_labeled(tmp_path: Path) -> None:
    labeler, labeled, dead, _, _ = make_labeler(tmp_path, PoisonClassifier)
    events = [
        event(0, ticket("A", "printer broken")),
        event(1, ticket("P", "POISON")),
        event(2, ticket("B", "refund invoice")),
    ]
    asyncio.run(labeler.handle(events))
    assert [k for k, _ in labeled.sent] == [b"A", b"B"]
    letter = DeadLetter.model_validate_json(dead.sent[0][1])
    assert letter.error_type.value == "processing_error"
    assert "classifier exploded" in letter.reason
    assert letter.ticket_id == "P"


class FlakyStore:
    def __init__(self, inner: ChromaVectorStore, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    def upsert(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("chroma unavailable")
        return self.inner.upsert(*args, **kwargs)


def test_vector_store_outage_is_retried_before_publishing(tmp_path: Path) -> None:
    labeler, labeled, _, store, metrics = make_labeler(tmp_path)
    flaky = FlakyStore(store, failures=2)
    labeler.store = flaky
    labeler.retry_initial_s = 0.01
    asyncio.run(labeler.handle([event(0, ticket("A", "printer broken"))]))
    assert flaky.calls == 3
    assert store.count() == 1
    assert len(labeled.sent) == 1
    assert metrics.vector_store_errors._value.get() == 2


def test_a_permanent_vector_store_error_fails_the_batch_with_its_reason(tmp_path: Path) -> None:
    import chromadb.errors

    from ticketflow.adapters.store import VectorStoreError

    labeler, labeled, _, _, _ = make_labeler(tmp_path)
    calls = []

    class WrongSpace:
        def upsert(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(args)
            raise chromadb.errors.InvalidArgumentError(
                "Collection expecting embedding with dimension of 256, got 384"
            )

    labeler.store = WrongSpace()
    labeler.retry_initial_s = 0.01
    with pytest.raises(VectorStoreError, match=r"dimension of 256.*CHROMA_COLLECTION"):
        asyncio.run(labeler.handle([event(0, ticket("A", "printer broken"))]))
    assert len(calls) == 1  # not retried: it would stall the partition forever
    assert labeled.sent == []  # nothing published, so nothing is committed and nothing lost


def test_monitor_records_carry_the_vector_and_labels(tmp_path: Path) -> None:
    from ticketflow.schemas import MonitorRecord
    from ticketflow.schemas.monitoring import unpack_vector

    labeler, _, _, store, _ = make_labeler(tmp_path)
    monitor = Recorder()
    labeler.send_monitor = monitor
    asyncio.run(labeler.handle([event(0, ticket("A", "printer broken")), event(1, b"{bad")]))
    assert len(monitor.sent) == 1
    record = MonitorRecord.model_validate_json(monitor.sent[0][1])
    assert record.ticket_id == "A" and record.labels["queue"] == "IT"
    stored = np.asarray(store.get(["A"])["embeddings"][0], dtype=np.float32)
    assert np.allclose(unpack_vector(record), stored, atol=1e-3)
    assert record.text_length == len("printer broken")


def test_next_batch_is_labelled_while_the_last_is_written_and_order_is_kept(
    tmp_path: Path,
) -> None:
    labeler, _, dead, store, _ = make_labeler(tmp_path)
    log: list[str] = []
    second_batch_labelled = threading.Event()
    run = labeler.pipeline.prepare

    def labelling(tickets):  # type: ignore[no-untyped-def]
        ids = [t.ticket_id for t in tickets]
        log.append(f"label {ids}")
        result = run(tickets)
        if ids == ["C", "D"]:
            second_batch_labelled.set()
        return result

    class OrderedStore:
        def upsert(self, ids, *args, **kwargs):  # type: ignore[no-untyped-def]
            if ids == ["A", "B"] and not second_batch_labelled.wait(timeout=5):
                # (An assertion here would only be retried as a store outage.)
                log.append("the next batch was not labelled during the first write")
            log.append(f"store {ids}")
            return store.upsert(ids, *args, **kwargs)

    class Publish(Recorder):
        async def __call__(self, key: bytes | None, value: bytes) -> None:
            log.append(f"publish {key!r}")
            await super().__call__(key, value)

    labeler.pipeline.prepare = labelling  # type: ignore[method-assign]
    labeler.store = OrderedStore()  # type: ignore[assignment]
    labeler.send_labeled = publish = Publish()
    labeler.store_executor = ThreadPoolExecutor(max_workers=1)
    batches = [
        [event(0, ticket("A", "printer broken")), event(1, b"{bad"), event(2, ticket("B", "x"))],
        [event(3, ticket("C", "refund invoice")), event(4, ticket("D", "vpn down"))],
        [event(5, ticket("E", "invoice wrong"))],
    ]

    async def stream() -> None:
        inflight = InFlight(labeler, depth=2)
        for number, batch in enumerate(batches):

            async def done(number: int = number) -> None:
                log.append(f"done {number}")

            await inflight.submit(batch, done)
            assert len(inflight) < 2
        await inflight.drain()
        assert len(inflight) == 0

    asyncio.run(stream())

    assert [k for k, _ in publish.sent] == [b"A", b"B", b"C", b"D", b"E"]
    assert len(dead.sent) == 1 and store.count() == 5
    assert "the next batch was not labelled during the first write" not in log
    assert log.index("label ['C', 'D']") < log.index("store ['A', 'B']")
    for number, batch_ids in enumerate((["A", "B"], ["C", "D"], ["E"])):
        stored = log.index(f"store {batch_ids}")
        published = [log.index(f"publish {t.encode()!r}") for t in batch_ids]
        # Stored before published, and acked (done) only once everything is published.
        assert stored < min(published) and max(published) < log.index(f"done {number}")
    assert [line for line in log if line.startswith("done")] == ["done 0", "done 1", "done 2"]


def test_a_failed_batch_is_raised_and_the_one_behind_it_is_not_published(
    tmp_path: Path,
) -> None:
    labeler, labeled, _, _, _ = make_labeler(tmp_path)
    fail_on = b"B"
    original = labeler.send_labeled

    async def send(key: bytes | None, value: bytes) -> None:
        if key == fail_on:
            raise ConnectionError("broker said no")
        await original(key, value)

    labeler.send_labeled = send
    acked: list[int] = []

    async def stream() -> None:
        inflight = InFlight(labeler, depth=3)
        for number, ids in enumerate(("A", "B", "C")):

            async def done(number: int = number) -> None:
                acked.append(number)

            await inflight.submit([event(number, ticket(ids, "printer broken"))], done)
        await inflight.drain()

    with pytest.raises(ConnectionError, match="broker said no"):
        asyncio.run(stream())
    assert [k for k, _ in labeled.sent] == [b"A"]
    assert acked == [0]  # B and C keep their offsets uncommitted: redelivered after a restart


def test_a_batch_keeps_the_model_it_started_with_across_a_hot_swap(tmp_path: Path) -> None:
    labeler, labeled, _, _, _ = make_labeler(tmp_path)
    release = threading.Event()
    run = labeler.pipeline.prepare

    def slow(tickets):  # type: ignore[no-untyped-def]
        release.wait(timeout=5)
        return run(tickets)

    labeler.pipeline.prepare = slow  # type: ignore[method-assign]

    async def stream() -> None:
        inflight = InFlight(labeler, depth=2)

        async def done() -> None:
            pass

        await inflight.submit([event(0, ticket("A", "printer broken"))], done)
        labeler.model_version = "v-next"  # what swap_if_ready does between batches
        release.set()
        await inflight.drain()

    asyncio.run(stream())
    assert LabeledTicket.model_validate_json(labeled.sent[0][1]).model_version == "v-test"


def test_depth_one_handles_each_batch_before_submit_returns(tmp_path: Path) -> None:
    labeler, labeled, _, _, _ = make_labeler(tmp_path)
    acked: list[str] = []

    async def stream() -> None:
        inflight = InFlight(labeler, depth=1)

        async def done() -> None:
            acked.append("A")

        await inflight.submit([event(0, ticket("A", "printer broken"))], done)
        assert acked == ["A"] and len(labeled.sent) == 1 and len(inflight) == 0

    asyncio.run(stream())
    with pytest.raises(ValueError, match="at least 1"):
        InFlight(labeler, depth=0)


def test_the_next_batch_is_prepared_while_the_last_one_is_in_the_transformer(
    tmp_path: Path,
) -> None:
    labeler, labeled, _, _, _ = make_labeler(tmp_path)
    labeler.prepare_executor = ThreadPoolExecutor(max_workers=1)
    prepare, finish = labeler.pipeline.prepare, labeler.pipeline.finish
    second_prepared = threading.Event()
    overlapped: list[bool] = []

    def preparing(tickets):  # type: ignore[no-untyped-def]
        prepared = prepare(tickets)
        if tickets[0].ticket_id == "B":
            second_prepared.set()
        return prepared

    def finishing(prepared):  # type: ignore[no-untyped-def]
        if not overlapped:  # the first batch's transformer half waits for the next's first half
            overlapped.append(second_prepared.wait(timeout=5))
        return finish(prepared)

    labeler.pipeline.prepare = preparing  # type: ignore[method-assign]
    labeler.pipeline.finish = finishing  # type: ignore[method-assign]

    async def stream() -> None:
        inflight = InFlight(labeler, depth=2)

        async def done() -> None:
            pass

        await inflight.submit([event(0, ticket("A", "printer broken"))], done)
        await inflight.submit([event(1, ticket("B", "refund invoice"))], done)
        await inflight.drain()

    asyncio.run(stream())
    assert overlapped == [True]
    assert [k for k, _ in labeled.sent] == [b"A", b"B"]


def test_commit_requests_during_a_commit_fold_into_one_more_and_a_failure_is_retried() -> None:
    commits: list[int] = []
    release = asyncio.Event()

    async def commit() -> None:
        commits.append(len(commits))
        if len(commits) == 1:
            await release.wait()  # the broker is slow to answer the first commit
        if len(commits) == 3:
            raise ConnectionError("coordinator moved")

    async def stream() -> None:
        committer = Committer(commit)
        committer.request()  # returns at once: the batches go on while the broker answers
        await asyncio.sleep(0)
        assert commits == [0]
        for _ in range(5):  # five batches finish while the first commit is on its way
            committer.request()
        release.set()
        await committer.wait()
        assert commits == [0, 1]  # one more commit picks up all five
        committer.request()  # fails: logged, not raised
        await committer.wait()
        committer.request()
        await committer.wait()
        assert commits == [0, 1, 2, 3]

    asyncio.run(stream())


@pytest.mark.parametrize("value", ["exactly_once", "EXACTLY_ONCE", "exactly-once"])
def test_exactly_once_is_refused_with_why_and_what_to_do(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_PROCESSING_GUARANTEE", value)
    with pytest.raises(ValueError, match="exactly_once was removed") as refused:
        Settings(_env_file=None)  # type: ignore[call-arg]
    why = str(refused.value)
    assert "do not cover" in why and "de-duplicate" in why and "ticket_id" in why
    monkeypatch.setenv("WORKER_PROCESSING_GUARANTEE", "at_least_once")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.worker_processing_guarantee == "at_least_once"


def test_similar_tickets_are_found_in_the_store_and_earlier_in_the_batch(tmp_path: Path) -> None:
    labeler, labeled, _, store, metrics = make_labeler(tmp_path)
    labeler.similar = SimilarSearch(k=2, duplicate_max_distance=0.01)
    first = [event(0, ticket("A", "printer does not print")), event(1, ticket("B", "vpn down"))]
    second = [
        event(2, ticket("C", "printer does not print")),  # a copy of A, stored a batch before
        event(3, ticket("D", "refund my invoice")),
        event(4, ticket("E", "refund my invoice")),  # a copy of D, in the same batch
    ]
    asyncio.run(labeler.handle(first))
    asyncio.run(labeler.handle(second))
    out = {
        t.ticket_id: t for t in map(LabeledTicket.model_validate_json, (v for _, v in labeled.sent))
    }
    assert out["A"].similar == [] and out["A"].possible_duplicate_of is None  # nothing before
    assert [s.ticket_id for s in out["B"].similar] == ["A"]  # the batch's earlier row
    assert out["B"].possible_duplicate_of is None
    assert out["C"].possible_duplicate_of == "A"
    assert out["C"].similar[0].ticket_id == "A" and out["C"].similar[0].distance < 1e-4
    assert len(out["C"].similar) == 2
    assert out["E"].possible_duplicate_of == "D" and out["D"].possible_duplicate_of is None
    assert store.count() == 5
    assert metrics.stage_seconds.labels(stage="similar_query")._sum.get() > 0


def test_a_redelivered_ticket_is_not_its_own_duplicate(tmp_path: Path) -> None:
    labeler, labeled, _, _, _ = make_labeler(tmp_path)
    labeler.similar = SimilarSearch(k=3, duplicate_max_distance=0.01)
    asyncio.run(labeler.handle([event(0, ticket("A", "printer does not print"))]))
    asyncio.run(labeler.handle([event(0, ticket("A", "printer does not print"))]))
    again = LabeledTicket.model_validate_json(labeled.sent[1][1])
    assert again.similar == [] and again.possible_duplicate_of is None


def test_without_similar_k_no_query_is_made_and_the_fields_are_empty(tmp_path: Path) -> None:
    labeler, labeled, _, store, _ = make_labeler(tmp_path)

    class WriteOnly:  # a store that cannot be searched: SIMILAR_K=0 never asks it to
        def upsert(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return store.upsert(*args, **kwargs)

    labeler.store = WriteOnly()  # type: ignore[assignment]
    asyncio.run(labeler.handle([event(0, ticket("A", "printer broken"))]))
    asyncio.run(labeler.handle([event(1, ticket("B", "printer broken"))]))
    published = LabeledTicket.model_validate_json(labeled.sent[1][1])
    assert published.similar == [] and published.possible_duplicate_of is None


class FlakySearch:
    def __init__(self, inner: ChromaVectorStore, error: Exception, failures: int) -> None:
        self.inner, self.error, self.failures, self.queries = inner, error, failures, 0

    def upsert(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.inner.upsert(*args, **kwargs)

    def query(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.queries += 1
        if self.queries <= self.failures:
            raise self.error
        return self.inner.query(*args, **kwargs)


def test_a_transient_similarity_query_error_is_retried(tmp_path: Path) -> None:
    labeler, labeled, _, store, metrics = make_labeler(tmp_path)
    labeler.similar = SimilarSearch(k=2, duplicate_max_distance=0.01)
    asyncio.run(labeler.handle([event(0, ticket("A", "printer does not print"))]))
    flaky = FlakySearch(store, ConnectionError("chroma unavailable"), failures=2)
    labeler.store = flaky
    labeler.retry_initial_s = 0.01
    asyncio.run(labeler.handle([event(1, ticket("B", "printer does not print"))]))
    assert flaky.queries == 3
    assert LabeledTicket.model_validate_json(labeled.sent[1][1]).possible_duplicate_of == "A"
    assert metrics.vector_store_errors._value.get() == 2


def test_a_permanent_similarity_query_error_fails_the_batch_unpublished(tmp_path: Path) -> None:
    import chromadb.errors

    from ticketflow.adapters.store import VectorStoreError

    labeler, labeled, _, store, _ = make_labeler(tmp_path)
    labeler.similar = SimilarSearch(k=2, duplicate_max_distance=0.01)
    wrong = chromadb.errors.InvalidArgumentError(
        "Collection expecting embedding with dimension of 256, got 384"
    )
    flaky = FlakySearch(store, wrong, failures=100)
    labeler.store = flaky
    labeler.retry_initial_s = 0.01
    with pytest.raises(VectorStoreError, match=r"similarity query.*dimension of 256"):
        asyncio.run(labeler.handle([event(0, ticket("A", "printer broken"))]))
    assert flaky.queries == 1  # not retried
    assert labeled.sent == [] and store.count() == 0  # neither published nor stored


def test_a_copy_of_a_ticket_still_being_written_is_found_in_memory(tmp_path: Path) -> None:
    labeler, labeled, _, store, _ = make_labeler(tmp_path)
    labeler.similar = SimilarSearch(k=2, duplicate_max_distance=0.01)
    log: list[str] = []
    second_queried = threading.Event()

    class SlowWrites:
        """Holds the first batch's write until the second batch's query has been answered:
        the query is sent before the batch ahead is stored, as it is under load."""

        def upsert(self, ids, *args, **kwargs):  # type: ignore[no-untyped-def]
            if ids == ["A"] and not second_queried.wait(timeout=5):
                log.append("the second query did not overtake the first write")
            log.append(f"store {ids}")
            return store.upsert(ids, *args, **kwargs)

        def query(self, vectors, k):  # type: ignore[no-untyped-def]
            found = store.query(vectors, k)
            log.append(f"query {len(vectors)} -> {[[n.ticket_id for n in f] for f in found]}")
            if len(log) == 2:  # the second batch's
                second_queried.set()
            return found

    labeler.store = SlowWrites()  # type: ignore[assignment]
    labeler.store_executor = ThreadPoolExecutor(max_workers=2)  # so the query can overtake

    async def stream() -> None:
        inflight = InFlight(labeler, depth=2)

        async def done() -> None:
            pass

        await inflight.submit([event(0, ticket("A", "printer does not print"))], done)
        await inflight.submit([event(1, ticket("C", "printer does not print"))], done)
        await inflight.drain()

    asyncio.run(stream())
    assert log[:3] == ["query 1 -> [[]]", "query 1 -> [[]]", "store ['A']"]  # A not stored yet
    out = [LabeledTicket.model_validate_json(v) for _, v in labeled.sent]
    assert [t.ticket_id for t in out] == ["A", "C"]
    assert out[1].possible_duplicate_of == "A" and out[1].similar[0].distance < 1e-4
    assert out[0].similar == []
