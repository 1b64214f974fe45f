from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest

from ticketflow.monitoring import incidents
from ticketflow.monitoring.incidents import (
    Baseline,
    IncidentConfig,
    IncidentDetector,
    Observation,
    TermVectors,
    Vector,
    incident_id_for,
    joint,
    text_terms,
    tokens,
)
from ticketflow.schemas.incident import IncidentEvent, IncidentStatus

pytestmark = pytest.mark.unit

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
DIM = 32


def unit(v: npt.NDArray[np.float64]) -> Vector:
    out: Vector = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def background(
    rng: np.random.Generator, n: int, every_s: float, start: int = 0
) -> list[Observation]:
    return [
        Observation(
            ticket_id=f"bg-{start + i}",
            event_time=START + timedelta(seconds=(start + i) * every_s),
            vector=unit(rng.normal(size=DIM)),
            labels={"queue": "General"},
            text=f"printer toner order {i} office supplies",
        )
        for i in range(n)
    ]


def burst(rng: np.random.Generator, n: int, at_s: float, prefix: str = "vpn") -> list[Observation]:
    centre = unit(rng.normal(size=DIM))
    return [
        Observation(
            ticket_id=f"{prefix}-{i}",
            event_time=START + timedelta(seconds=at_s + 30 * i),
            vector=unit(centre + 0.05 * rng.normal(size=DIM)),
            labels={"queue": "Network"},
            text="vpn gateway unreachable cannot connect remote",
        )
        for i in range(n)
    ]


def detector(**overrides: float) -> IncidentDetector:
    # The vectors alone unless a test asks for the words' part.
    settings = {"min_size": 5, "max_distance": 0.3, "text_weight": 0.0, **overrides}
    config = IncidentConfig(**settings)  # type: ignore[arg-type]
    return IncidentDetector(config)


def merged(
    det: IncidentDetector, tickets: list[Observation], batch: int = 4
) -> tuple[dict[str, str], list[IncidentEvent]]:
    assigned: dict[str, str] = {}
    events: list[IncidentEvent] = []
    for start in range(0, len(tickets), batch):
        found = det.observe(tickets[start : start + batch])
        assigned.update(found.assigned)
        events += found.events
    return assigned, events


def test_a_burst_opens_one_incident_that_grows_under_the_same_id() -> None:
    rng = np.random.default_rng(0)
    tickets = sorted(background(rng, 60, 20.0) + burst(rng, 10, 300.0), key=lambda o: o.event_time)
    assigned, events = merged(detector(), tickets)
    ids = {e.incident_id for e in events}
    assert len(ids) == 1
    assert events[0].status is IncidentStatus.OPEN
    assert all(e.status is IncidentStatus.UPDATED for e in events[1:])
    last = events[-1]
    assert set(last.member_ticket_ids) == {f"vpn-{i}" for i in range(10)}
    assert last.size == 10
    assert last.label_counts == {"queue": {"Network": 10}}
    assert last.detected_by_ticket_id == "vpn-4"  # the fifth: min_size
    assert last.incident_id == incident_id_for("vpn-4")
    assert {"vpn", "gateway"} <= set(last.top_terms)
    # Tickets from the opener on carry the id in their own batch.
    assert all(assigned.get(f"vpn-{i}") == last.incident_id for i in range(4, 10))
    assert not any(k.startswith("bg-") for k in assigned)


def test_a_steady_background_opens_nothing() -> None:
    rng = np.random.default_rng(1)
    assigned, events = merged(detector(), background(rng, 500, 20.0))
    assert events == [] and assigned == {}


def test_a_kind_of_ticket_that_is_usually_frequent_is_not_an_incident() -> None:
    rng = np.random.default_rng(2)
    usual = burst(rng, 1, 0.0)[0].vector
    baseline = Baseline(200)
    # History: a third of all tickets look like this, at one every 20 s.
    history = [
        unit(usual + 0.05 * rng.normal(size=DIM)) if i % 3 == 0 else unit(rng.normal(size=DIM))
        for i in range(200)
    ]
    baseline.seed(history, span_s=200 * 20.0)
    det = IncidentDetector(IncidentConfig(min_size=5, max_distance=0.3, text_weight=0.0), baseline)
    tickets = [
        Observation(
            f"t-{i}", START + timedelta(seconds=20 * i), unit(usual + 0.05 * rng.normal(size=DIM))
        )
        for i in range(30)
    ]
    _, events = merged(det, tickets)
    assert events == []


def test_quiet_closes_and_a_redelivery_is_not_counted_twice() -> None:
    rng = np.random.default_rng(3)
    tickets = burst(rng, 8, 0.0)
    det = detector(quiet_s=600.0)
    _, events = merged(det, tickets)
    size = events[-1].size
    again = det.observe(tickets[-3:])  # redelivered after a crash
    assert set(again.assigned) == {t.ticket_id for t in tickets[-3:]}
    assert [e.size for e in again.events] in ([], [size])
    later = background(rng, 3, 1.0, start=2_000)  # event time ~33 min on: past the quiet
    closed = det.observe(later).events
    assert [(e.status, e.size) for e in closed] == [(IncidentStatus.CLOSED, size)]
    assert det.open_incidents == []


def test_restore_continues_an_open_incident_under_its_id() -> None:
    rng = np.random.default_rng(4)
    tickets = burst(rng, 12, 0.0)
    first = detector()
    _, events = merged(first, tickets[:8])
    state = events[-1]
    vectors = {t.ticket_id: t.vector for t in tickets[:8]}
    second = detector()
    assert second.restore(events, vectors) == 1
    assert second.incident_of("vpn-0") == state.incident_id
    _, more = merged(second, tickets[8:])
    assert {e.incident_id for e in more} == {state.incident_id}
    assert more[-1].size == 12
    assert more[-1].status is IncidentStatus.UPDATED


def test_text_terms_prefer_words_of_the_members_over_the_background() -> None:
    members = ["VPN gateway down", "the vpn gateway times out", "Gateway für VPN offline"]
    background = ["printer toner empty", "password reset please", "gateway invoice"]
    terms = text_terms(members, background, 3)
    assert terms[:2] == ["vpn", "gateway"]
    assert "offline" not in terms  # in one member only


def cosine(a: Vector, b: Vector) -> float:
    return float(a @ b)


def test_term_vectors_weigh_rare_shared_words_over_common_ones() -> None:
    terms = TermVectors(256)
    # "server" in every history ticket, "papercut" in none.
    terms.learn([["server", "printer", f"word{chr(97 + i % 26)}x"] for i in range(400)])
    rare = terms.vectors([["papercut", "update", "drucker"], ["papercut", "update", "printer"]])
    common = terms.vectors([["server", "update", "drucker"], ["server", "update", "printer"]])
    assert np.allclose(np.linalg.norm(rare, axis=1), 1.0, atol=1e-5)
    assert cosine(rare[0], rare[1]) > cosine(common[0], common[1]) + 0.1
    same = terms.vectors([["vpn", "gateway"], ["gateway", "vpn"]])
    assert cosine(same[0], same[1]) == pytest.approx(1.0, abs=1e-5)
    assert not terms.vectors([[]]).any()  # no words: a zero row


def test_term_vectors_are_the_same_in_a_restarted_process() -> None:
    # A fresh instance that learned the same history puts the same words in the same
    # buckets (crc32, not Python's salted hash): restored members match new tickets.
    history = [tokens(t) for t in ("VPN gateway down", "printer toner", "password reset")]
    first, second = TermVectors(64), TermVectors(64)
    first.learn(history)
    second.learn(history)
    words = [tokens("Gateway unreachable since the VPN update")]
    assert np.array_equal(first.vectors(words), second.vectors(words))


def test_term_vectors_counts_stay_bounded() -> None:
    terms = TermVectors(32, table_bits=8, max_documents=100)
    for _ in range(30):
        terms.learn([["vpn", "gateway"]] * 10)
    assert terms.documents <= 100


def reference_term_vectors(
    history: list[list[str]], documents: list[list[str]], dimension: int, ngram: int = 4
) -> Vector:
    """TermVectors written out per word and per feature, as the docstring states it."""

    def features(word: str) -> list[int]:
        padded = f"<{word}>"
        grams = {padded[i : i + ngram] for i in range(len(padded) - ngram + 1)} if ngram else set()
        return [zlib.crc32(word.encode()), *(zlib.crc32(g.encode()) ^ 0x5BD1E995 for g in grams)]

    mask = (1 << 18) - 1
    frequency: Counter[int] = Counter()
    for words in history:
        frequency.update({f & mask for w in words for f in features(w)})
    out = np.zeros((len(documents), dimension))
    for row, words in enumerate(documents):
        for h, tf in Counter(f for w in words for f in features(w)).items():
            idf = math.log((len(history) + 1) / (frequency[h & mask] + 1)) + 1
            sign = 1.0 if (h >> 31) & 1 else -1.0
            out[row, (h >> 1) % dimension] += sign * (1 + math.log(tf)) * idf
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    result: Vector = np.divide(out, np.maximum(norms, 1e-12)).astype(np.float32)
    return result


VOCABULARY = [
    "vpn",
    "gateway",
    "drucker",
    "papercut",
    "spooler",
    "server",
    "update",
    "outlook",
    "mails",
    "überweisung",
]


def random_documents(rng: np.random.Generator, count: int) -> list[list[str]]:
    # Repeated words and words sharing n-grams: counts above one at the feature level.
    return [list(rng.choice(VOCABULARY, size=rng.integers(0, 12))) for _ in range(count)]


@pytest.mark.parametrize("ngram", [4, 0])
def test_term_vectors_match_the_per_word_definition(ngram: int) -> None:
    # The whole-batch computation (one gather of the words' features, one sort for their
    # counts) gives what the per-word, per-feature definition gives.
    rng = np.random.default_rng(11)
    history, documents = random_documents(rng, 60), [*random_documents(rng, 25), []]
    terms = TermVectors(64, ngram=ngram)
    terms.learn(history)
    expected = reference_term_vectors(history, documents, 64, ngram)
    assert np.allclose(terms.vectors(documents), expected, atol=1e-5)


def test_term_vectors_learn_the_same_from_the_features_they_gave() -> None:
    # The detector counts a ticket that left the window from the features hashed when it
    # arrived: the same counts as hashing its words again.
    rng = np.random.default_rng(12)
    history, documents = random_documents(rng, 40), [*random_documents(rng, 30), []]
    again, reused = TermVectors(64), TermVectors(64)
    for terms in (again, reused):
        terms.learn(history)
    _, features = reused.vectors_with_features(documents)
    assert len(features) == len(documents) and not len(features[-1])
    again.learn(documents)
    reused.learn_features(features)
    probe = random_documents(rng, 10)
    assert reused.documents == again.documents
    assert np.array_equal(reused.vectors(probe), again.vectors(probe))


def test_term_vectors_start_their_word_table_over_without_changing_a_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = random_documents(np.random.default_rng(3), 20)
    before = TermVectors(64).vectors(documents)
    monkeypatch.setattr(incidents, "FEATURE_CACHE", 4)  # fewer than the batch's words
    terms = TermVectors(64)
    for _ in range(3):
        assert np.allclose(terms.vectors(documents), before, atol=1e-6)
    assert terms.vectors([["vpn", "gateway"]]).any()


def test_term_vectors_without_ngrams_see_whole_words_only() -> None:
    with_grams, words_only = TermVectors(256), TermVectors(256, ngram=0)
    pair = [["druckserver"], ["server"]]
    assert cosine(*with_grams.vectors(pair)) > 0.1  # "erver", "rver>" in both
    assert cosine(*words_only.vectors(pair)) == pytest.approx(0.0, abs=1e-6)


def test_term_vectors_are_the_same_in_another_process() -> None:
    # A restarted worker hashes the restored members' words again: another interpreter, with
    # another str hash salt, must put them in the same buckets.
    code = (
        "import json, sys; from ticketflow.monitoring.incidents import TermVectors as T; "
        "t = T(64); t.learn([['vpn', 'printer'], ['gateway']]); "
        "print(json.dumps(t.vectors([['vpn', 'gateway', 'drucker']]).tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    here = TermVectors(64)
    here.learn([["vpn", "printer"], ["gateway"]])
    theirs = np.asarray(json.loads(out), dtype=np.float32)
    assert np.allclose(here.vectors([["vpn", "gateway", "drucker"]]), theirs, atol=1e-6)


def test_joint_rows_mix_both_cosines_by_the_weight() -> None:
    rng = np.random.default_rng(5)
    vectors = np.vstack([unit(rng.normal(size=DIM)) for _ in range(2)])
    words = np.vstack([unit(rng.normal(size=16)) for _ in range(2)])
    rows = joint(vectors, words, 0.4)
    expected = 0.6 * cosine(vectors[0], vectors[1]) + 0.4 * cosine(words[0], words[1])
    assert cosine(rows[0], rows[1]) == pytest.approx(expected, abs=1e-5)
    assert np.array_equal(joint(vectors, words, 0.0), vectors)


def worded_burst(rng: np.random.Generator, n: int = 10) -> list[Observation]:
    """Paraphrases of one outage whose vectors are farther apart than the vectors' own
    threshold (cosine distance ~0.4 between two) but that share its rare words."""
    centre = unit(rng.normal(size=DIM))
    texts = [
        "PaperCut spooler offline, printers stopped",
        "printing broken: PaperCut reports spooler error",
        "PaperCut spooler down since the update",
    ]
    return [
        Observation(
            ticket_id=f"print-{i}",
            event_time=START + timedelta(seconds=600 + 30 * i),
            vector=unit(centre + 0.14 * rng.normal(size=DIM)),
            labels={"queue": "Printing"},
            text=texts[i % len(texts)],
        )
        for i in range(n)
    ]


def varied_background(rng: np.random.Generator, n: int, start: int = 0) -> list[Observation]:
    words = ["toner", "password", "invoice", "laptop", "monitor", "license", "meeting", "badge"]
    return [
        Observation(
            ticket_id=f"bg-{start + i}",
            event_time=START + timedelta(seconds=20 * i),
            vector=unit(rng.normal(size=DIM)),
            labels={"queue": "General"},
            text=" ".join(rng.choice(words, 3, replace=False)) + " order please",
        )
        for i in range(n)
    ]


def seeded(weight: float, max_distance: float) -> IncidentDetector:
    det = detector(text_weight=weight, max_distance=max_distance)
    history = varied_background(np.random.default_rng(7), 300, start=10_000)
    det.seed([o.vector for o in history], [o.text for o in history], span_s=300 * 20.0)
    return det


def test_shared_rare_words_join_paraphrases_the_vectors_alone_keep_apart() -> None:
    rng = np.random.default_rng(6)
    tickets = sorted(varied_background(rng, 80) + worded_burst(rng), key=lambda o: o.event_time)
    burst_ids = {f"print-{i}" for i in range(10)}
    _, alone = merged(seeded(0.0, 0.3), tickets)
    assert alone == []
    _, events = merged(seeded(0.3, 0.52), tickets)
    last = {e.incident_id: e for e in events}
    assert len(last) == 1
    assert set(next(iter(last.values())).member_ticket_ids) == burst_ids


def test_background_sharing_common_words_opens_nothing() -> None:
    # Every background ticket shares "order please" and draws from eight words: common
    # words weigh little, and the baseline knows how close such tickets usually are.
    rng = np.random.default_rng(10)
    _, events = merged(seeded(0.3, 0.52), varied_background(rng, 400))
    assert events == []


def test_restore_with_words_continues_the_incident() -> None:
    tickets = worded_burst(np.random.default_rng(8))
    _, events = merged(seeded(0.3, 0.52), tickets[:8])
    second = seeded(0.3, 0.52)
    stored = {t.ticket_id: t.vector for t in tickets[:8]}
    texts = {t.ticket_id: t.text for t in tickets[:8]}
    assert second.restore(events, stored, texts) == 1
    _, more = merged(second, tickets[8:])
    assert {e.incident_id for e in more} == {events[-1].incident_id}
    assert more[-1].size == 10


def test_a_fast_burst_where_such_tickets_are_usual_opens_on_its_rate() -> None:
    # About one such ticket is usual per window (7 of 200 history tickets near it, 30
    # tickets a window): five times that over the whole window takes six close tickets,
    # but the burst's come 30 s apart: four in half the window are already five times the
    # usual rate, so its fifth ticket opens it.
    rng = np.random.default_rng(11)
    tickets = burst(rng, 8, 0.0)
    centre = unit(np.mean([t.vector for t in tickets], axis=0))
    history = [
        unit(centre + 0.05 * rng.normal(size=DIM)) if i < 7 else unit(rng.normal(size=DIM))
        for i in range(200)
    ]
    det = detector()
    det.seed(history, [""] * len(history), span_s=200 * 20.0)
    expected = float(det.baseline.expected(centre[None, :], 0.3, 600.0)[0])
    assert 1.0 <= expected < 1.2
    _, events = merged(det, tickets)
    assert events[0].detected_by_ticket_id == "vpn-4"
    assert events[-1].size == 8


def two_language_burst(
    rng: np.random.Generator, word: str, start_s: float = 600.0
) -> list[Observation]:
    """One outage told in two languages: two groups of vectors far apart (as the static
    space keeps languages apart) whose texts share one word, ``word`` (a product name)."""
    english = [
        f"{word} shows all printers offline since the update",
        f"printing broken everywhere, {word} reports an error",
        f"{word} queue stuck, nothing comes out of the printers",
    ]
    # The German tickets name it only from the 7th on: their incident is published before
    # the word is repeated in it.
    german = [
        "Alle Drucker abgeschaltet seit der Wartung",
        "Drucken geht nirgends, das System meldet einen Fehler",
        "Auftraege haengen in der Warteschlange fest",
    ]
    tickets = []
    for prefix, texts, offset in (("en", english, 0.0), ("de", german, 20.0)):
        centre = unit(rng.normal(size=DIM))
        tickets += [
            Observation(
                ticket_id=f"{prefix}-{i}",
                event_time=START + timedelta(seconds=start_s + offset + 40 * i),
                vector=unit(centre + 0.05 * rng.normal(size=DIM)),
                labels={"queue": "Printing"},
                text=f"{word} meldet Fehler an jedem Drucker"
                if prefix == "de" and i >= 6
                else texts[i % len(texts)],
            )
            for i in range(8)
        ]
    return tickets


def split_and_merged(
    word: str, **overrides: float
) -> tuple[IncidentDetector, dict[str, IncidentEvent], list[Observation]]:
    rng = np.random.default_rng(21)
    det = detector(text_weight=0.3, max_distance=0.52, **overrides)
    history = varied_background(np.random.default_rng(7), 300, start=10_000)
    det.seed([o.vector for o in history], [o.text for o in history], span_s=300 * 20.0)
    tickets = sorted(
        varied_background(rng, 80) + two_language_burst(rng, word), key=lambda o: o.event_time
    )
    _, events = merged(det, tickets)
    return det, {e.incident_id: e for e in events}, tickets


def test_concurrent_incidents_sharing_a_rare_word_become_one() -> None:
    det, last, _ = split_and_merged("papercut")
    burst_ids = {f"{p}-{i}" for p in ("en", "de") for i in range(8)}
    open_ = [e for e in last.values() if e.status is not IncidentStatus.CLOSED]
    assert len(open_) == 1
    kept = open_[0]
    assert burst_ids <= set(kept.member_ticket_ids)
    assert kept.size == len(kept.member_ticket_ids)
    assert kept.detected_by_ticket_id.startswith("en-")  # opened first: keeps its id
    # The absorbed one had been published: it is closed, pointing at the kept one.
    (absorbed,) = [e for e in last.values() if e is not kept]
    assert absorbed.status is IncidentStatus.CLOSED
    assert absorbed.merged_into == kept.incident_id
    assert {m[:2] for m in absorbed.member_ticket_ids} == {"de"}
    assert {det.incident_of(t) for t in burst_ids} == {kept.incident_id}


def test_without_the_merge_the_two_languages_stay_two_incidents() -> None:
    _, last, _ = split_and_merged("papercut", merge=False)
    assert len(last) == 2
    languages = [",".join(sorted({m[:2] for m in e.member_ticket_ids})) for e in last.values()]
    assert sorted(languages) == ["de", "en"]


def test_a_shared_word_common_in_the_history_merges_nothing() -> None:
    # "toner" is in about a third of the history's tickets: not a sign of one outage.
    _, last, _ = split_and_merged("toner")
    assert len(last) == 2
    assert all(e.merged_into is None for e in last.values())


def test_incidents_apart_in_time_are_not_merged() -> None:
    rng = np.random.default_rng(21)
    det = detector(text_weight=0.3, max_distance=0.52, quiet_s=7200.0)
    history = varied_background(np.random.default_rng(7), 300, start=10_000)
    det.seed([o.vector for o in history], [o.text for o in history], span_s=300 * 20.0)
    early, late = two_language_burst(rng, "papercut"), two_language_burst(rng, "papercut")
    english = [o for o in early if o.ticket_id.startswith("en")]
    german = [
        Observation(o.ticket_id, o.event_time + timedelta(hours=1), o.vector, o.labels, o.text)
        for o in late
        if o.ticket_id.startswith("de")
    ]
    _, events = merged(det, english + german)
    last = {e.incident_id: e for e in events}
    assert len(last) == 2
    assert all(e.status is not IncidentStatus.CLOSED for e in last.values())


def test_a_restarted_detector_keeps_the_merge() -> None:
    # The compacted topic holds the absorbed incident closed and the kept one with every
    # member: a restart reopens the kept one alone, holding the absorbed one's tickets.
    _, last, tickets = split_and_merged("papercut")
    restarted = seeded(0.3, 0.52)
    vectors = {o.ticket_id: o.vector for o in tickets}
    texts = {o.ticket_id: o.text for o in tickets}
    assert restarted.restore(list(last.values()), vectors, texts) == 1
    (kept,) = [e for e in last.values() if e.status is not IncidentStatus.CLOSED]
    assert restarted.open_ids == [kept.incident_id]
    assert restarted.incident_of("de-0") == kept.incident_id


def test_a_merged_incident_takes_no_third_one() -> None:
    # A third group naming the same rare word stays its own incident: merges chained through
    # the merged incident's growing vocabulary would end in one incident for everything.
    rng = np.random.default_rng(21)
    det = seeded(0.3, 0.52)
    centre = unit(rng.normal(size=DIM))
    third = [
        Observation(
            ticket_id=f"fr-{i}",
            event_time=START + timedelta(seconds=610 + 40 * i),
            vector=unit(centre + 0.05 * rng.normal(size=DIM)),
            labels={"queue": "Printing"},
            text="papercut ne imprime plus rien",
        )
        for i in range(8)
    ]
    tickets = sorted(
        varied_background(rng, 80) + two_language_burst(rng, "papercut") + third,
        key=lambda o: o.event_time,
    )
    _, events = merged(det, tickets)
    open_ = [e for e in {e.incident_id: e for e in events}.values() if e.merged_into is None]
    assert len(open_) == 2
    assert sorted(len({m[:2] for m in e.member_ticket_ids}) for e in open_) == [1, 2]
