"""Emerging incidents: a burst of close tickets becomes one :class:`IncidentEvent`.

Pure (no I/O): the worker feeds each labelled micro-batch to :meth:`IncidentDetector.observe`
and publishes what it returns. The method is an online nearest-neighbour burst score,
chosen over HDBSCAN on the window by ``python -m bench.incidents`` (docs/incidents.md):

- for each ticket, its *neighbours*: tickets seen before it whose cosine distance is at most
  ``max_distance`` and whose event time is within ``window_s`` of its own;
- the *baseline*: how many such neighbours that kind of ticket usually has, the share of a
  sample of older tickets (the history) within ``max_distance`` of it times the usual number
  of tickets per window;
- a ticket with at least ``min_size - 1`` neighbours, and at least ``baseline_ratio`` times
  the expected number, opens an incident with them; a later ticket within ``max_distance``
  of a member joins it (and brings its own unassigned neighbours); an incident with no new
  member for ``quiet_s`` of event time is closed.

State is bounded: the window (``window_s``, at most ``max_window`` tickets), the baseline
sample (``baseline_sample`` vectors) and, per open incident, its last ``MEMBER_VECTORS``
member vectors.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from ticketflow.schemas.incident import IncidentEvent, IncidentStatus

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

# Vectors kept per open incident to match joiners against: a long incident drifts (new
# wording), its latest members are the best match, and memory stays bounded.
MEMBER_VECTORS = 200
# Ids listed in an event: a record stays far below the broker's size limit.
MAX_MEMBER_IDS = 500
_TOKEN = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
# Function words of the languages the data sets hold (en, de, es, fr, pt): c-TF-IDF already
# discounts words common to both classes, this only keeps them out of a short list.
_STOP_WORDS = """the and for with that this from have has are was were not but you your our can will
    please would could should been there their they them what when which about into after
    also any all one get got just need help issue problem hello dear regards thanks thank
    der die das und mit ist nicht ein eine einen einem einer den dem des von für auf bei wir
    ich sie ihr ihre uns unser unsere sind wurde werden kann können bitte seit hallo danke
    grüße freundlichen mehr noch auch oder aber wie was wenn dass zum zur nach aus hat haben
    los las el del por para con una que como más pero sus este esta les des une pour avec
    dans sur est pas nous vous qui que não com uma para por dos das"""
_STOP = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class IncidentConfig:
    """The detector's settings (INCIDENT_* in :mod:`ticketflow.config`, docs/incidents.md)."""

    window_s: float = 600.0
    min_size: int = 5
    max_distance: float = 0.3
    quiet_s: float = 1800.0
    baseline_ratio: float = 5.0
    max_window: int = 5_000
    baseline_sample: int = 2_000
    top_terms: int = 8

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.quiet_s <= 0:
            raise ValueError("window_s and quiet_s must be positive")
        if self.min_size < 2:
            raise ValueError("min_size must be at least 2")
        if not 0 < self.max_distance <= 2:
            raise ValueError("max_distance must be in (0, 2]")


@dataclass(frozen=True)
class Observation:
    """One labelled ticket as the detector sees it. ``vector``: L2-normalised;
    ``event_time``: its created_at, or its arrival when it has none."""

    ticket_id: str
    event_time: datetime
    vector: Vector
    labels: Mapping[str, str] = field(default_factory=dict)
    text: str = ""


@dataclass
class Detection:
    """What one call of :meth:`IncidentDetector.observe` found: the incident of each member
    ticket of the batch, and the events to publish (one per incident touched)."""

    assigned: dict[str, str]
    events: list[IncidentEvent]


class Baseline:
    """How many close tickets a ticket usually has within a window: a bounded uniform sample
    of past tickets (reservoir) and the usual arrival rate.

    Seeded from the store's history (:meth:`seed`) and fed the tickets that leave the
    detector's window, so a burst becomes "usual" only once it is over.
    """

    def __init__(self, size: int = 2_000, *, seed: int = 0) -> None:
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._vectors: Vector | None = None  # (size, dimension) once the first one came
        self._kept = 0
        self._seen = 0
        self._count = 0  # tickets behind the rate
        self._span_s = 0.0  # event time they covered

    @property
    def sample_size(self) -> int:
        return self._kept

    def seed(self, vectors: Sequence[Vector], span_s: float) -> None:
        """History: ``vectors`` (a sample of it) over ``span_s`` seconds of event time."""
        for vector in vectors:
            self._keep(vector)
        if span_s > 0:
            self._count += len(vectors)
            self._span_s += span_s

    def add(self, vector: Vector, elapsed_s: float) -> None:
        """One more past ticket; ``elapsed_s``: event time since the previous one added."""
        self._keep(vector)
        self._count += 1
        self._span_s += max(0.0, elapsed_s)

    def rate_per_s(self) -> float:
        return self._count / self._span_s if self._span_s > 0 else 0.0

    def expected(self, vectors: Vector, max_distance: float, window_s: float) -> Vector:
        """Per row of ``vectors``: close tickets expected within ``window_s`` (0 without
        history: then only the minimum size counts)."""
        if self._vectors is None or self.rate_per_s() == 0.0:
            return np.zeros(len(vectors), dtype=np.float32)
        sample = self._vectors[: self._kept]
        share = ((1.0 - vectors @ sample.T) <= max_distance).mean(axis=1)
        expected: Vector = (share * self.rate_per_s() * window_s).astype(np.float32)
        return expected

    def _keep(self, vector: Vector) -> None:
        self._seen += 1
        if self._vectors is None:
            self._vectors = np.zeros((self.size, len(vector)), dtype=np.float32)
        if self._kept < self.size:
            self._vectors[self._kept] = vector
            self._kept += 1
            return
        slot = int(self._rng.integers(0, self._seen))
        if slot < self.size:
            self._vectors[slot] = vector


@dataclass
class _Entry:
    ticket_id: str
    time: float  # event time, epoch seconds
    vector: Vector
    labels: Mapping[str, str]
    terms: Counter[str]  # its text's words, counted once here for every top-terms call
    incident: str | None = None


@dataclass
class _Incident:
    incident_id: str
    members: list[str]
    first_seen: float
    last_seen: float
    detected_by: str
    neighbours: int
    expected: float
    vectors: deque[Vector] = field(default_factory=lambda: deque(maxlen=MEMBER_VECTORS))
    vector_ids: deque[str] = field(default_factory=lambda: deque(maxlen=MEMBER_VECTORS))
    term_counts: Counter[str] = field(default_factory=Counter)  # over the members
    term_members: Counter[str] = field(default_factory=Counter)  # members holding each term
    labels: dict[str, Counter[str]] = field(default_factory=dict)
    top_terms: list[str] = field(default_factory=list)
    member_set: set[str] = field(default_factory=set)
    size: int = 0
    opened: bool = False  # its "open" event was emitted
    _centre: Vector | None = None

    def centre(self) -> Vector:
        """The normalised mean of the kept member vectors."""
        if self._centre is None:
            mean = np.vstack(self.vectors).mean(axis=0)
            self._centre = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        return self._centre

    def add(self, entry: _Entry) -> None:
        if entry.ticket_id in self.member_set:
            return
        self.member_set.add(entry.ticket_id)
        self.members.append(entry.ticket_id)
        self.size += 1
        self.first_seen = min(self.first_seen, entry.time)
        self.last_seen = max(self.last_seen, entry.time)
        self.vectors.append(entry.vector)
        self.vector_ids.append(entry.ticket_id)
        self._centre = None
        self.term_counts.update(entry.terms)
        self.term_members.update(entry.terms.keys())
        for target, label in entry.labels.items():
            self.labels.setdefault(target, Counter())[label] += 1
        entry.incident = self.incident_id


def incident_id_for(ticket_id: str) -> str:
    """The id of the incident opened by ``ticket_id``: derived from it, so a replay of the
    same tickets after a crash opens it under the same key instead of a second one."""
    return "inc-" + hashlib.sha256(ticket_id.encode("utf-8")).hexdigest()[:16]


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class IncidentDetector:
    """Online burst detection over labelled tickets (see the module docstring)."""

    def __init__(self, config: IncidentConfig, baseline: Baseline | None = None) -> None:
        self.config = config
        self.baseline = baseline or Baseline(config.baseline_sample)
        self._window: deque[_Entry] = deque()
        self._by_id: dict[str, _Entry] = {}
        self._open: dict[str, _Incident] = {}
        self._member_of: dict[str, str] = {}  # ticket id -> open incident id
        self._clock = -math.inf  # latest event time seen
        self._last_evicted: float | None = None
        self._window_terms: Counter[str] = Counter()  # the window's words, for top terms

    @property
    def open_incidents(self) -> list[IncidentEvent]:
        """The current state of every open incident."""
        return [self._event(i, IncidentStatus.UPDATED) for i in self._open.values()]

    @property
    def open_ids(self) -> list[str]:
        return list(self._open)

    def incident_of(self, ticket_id: str) -> str | None:
        return self._member_of.get(ticket_id)

    def observe(self, batch: Sequence[Observation]) -> Detection:
        """Take a batch in arrival order; returns the incidents of its members and the events
        to publish: ``open`` for a new incident, ``updated`` when one grew, ``closed`` when
        one has been quiet for ``quiet_s``."""
        touched: dict[str, _Incident] = {}
        assigned: dict[str, str] = {}
        if batch:
            self._process(batch, touched, assigned)
        events = [
            self._event(i, IncidentStatus.UPDATED if i.opened else IncidentStatus.OPEN)
            for i in touched.values()
            if i.incident_id in self._open
        ]
        for incident in touched.values():
            incident.opened = True
        events += self._close_quiet()
        self._evict()
        return Detection(assigned=assigned, events=events)

    def restore(self, events: Iterable[IncidentEvent], vectors: Mapping[str, Vector]) -> int:
        """Reopen the incidents whose last event (the compacted topic's) is not ``closed``;
        ``vectors``: the members' stored vectors, to match joiners against. Returns how many."""
        last: dict[str, IncidentEvent] = {}
        for event in events:
            last[event.incident_id] = event
        restored = 0
        for event in last.values():
            if event.status is IncidentStatus.CLOSED or event.incident_id in self._open:
                continue
            incident = _Incident(
                incident_id=event.incident_id,
                members=list(event.member_ticket_ids),
                first_seen=_epoch(event.first_seen),
                last_seen=_epoch(event.last_seen),
                detected_by=event.detected_by_ticket_id,
                neighbours=event.neighbours_at_detection,
                expected=event.expected_at_detection,
                labels={t: Counter(c) for t, c in event.label_counts.items()},
                top_terms=list(event.top_terms),
                member_set=set(event.member_ticket_ids),
                size=event.size,
                opened=True,
            )
            for ticket_id in event.member_ticket_ids:
                self._member_of[ticket_id] = event.incident_id
                if ticket_id in vectors:
                    incident.vectors.append(vectors[ticket_id])
                    incident.vector_ids.append(ticket_id)
            self._open[event.incident_id] = incident
            self._clock = max(self._clock, incident.last_seen)
            restored += 1
        return restored

    def _process(
        self,
        batch: Sequence[Observation],
        touched: dict[str, _Incident],
        assigned: dict[str, str],
    ) -> None:
        config = self.config
        entries = [self._entry(o) for o in batch]
        # One product per batch against the window and the batch itself; row i may use the
        # window and the batch's rows before it (the tickets seen before it).
        pool = [*self._window, *entries]
        before = len(self._window)
        matrix = np.vstack([e.vector for e in pool])
        times = np.fromiter((e.time for e in pool), dtype=np.float64, count=len(pool))
        vectors = matrix[before:]
        close = (1.0 - vectors @ matrix.T) <= config.max_distance
        for row, entry in enumerate(entries):
            known = self._member_of.get(entry.ticket_id)
            if known is not None:  # a redelivery: it stays where it was
                self._append(entry)
                entry.incident = known
                continue
            self._clock = max(self._clock, entry.time)
            seen = before + row
            found = np.flatnonzero(
                close[row, :seen] & (np.abs(times[:seen] - entry.time) <= config.window_s)
            )
            neighbours = list(
                {
                    pool[i].ticket_id: pool[i]
                    for i in found
                    if pool[i].ticket_id != entry.ticket_id
                }.values()
            )
            self._append(entry)
            # The baseline only for a ticket that could open or join an incident: the
            # others (nearly all) never pay for the comparison with the history sample.
            could = len(neighbours) + 1 >= config.min_size or bool(self._open)
            expected = self._expected(vectors[row]) if could else math.inf
            dense = len(neighbours) >= config.baseline_ratio * expected
            # A joiner must be in a burst too (more close tickets than its kind usually has):
            # otherwise every usual ticket near the centre joins, and an incident in a dense
            # region of the space (one language, one product) grows into the background.
            incident = self._joined(entry) if dense else None
            if incident is not None:
                # Only the ticket itself: taking its neighbours too would let the group walk
                # away, ticket by ticket, from the problem it was opened for.
                self._add(incident, [entry])
            elif self._bursting(len(neighbours), expected):
                incident = self._opened(entry, len(neighbours), expected)
                self._add(incident, [entry, *neighbours])
                # The burst's first tickets need not be close to the one that tipped it but
                # are close to the group's centre: they are in it from the start.
                self._add(incident, self._around(incident, entry.time))
            if incident is not None:
                touched[incident.incident_id] = incident
        for observation in batch:
            member_of = self._member_of.get(observation.ticket_id)
            if member_of is not None:
                assigned[observation.ticket_id] = member_of

    def _opened(self, entry: _Entry, neighbours: int, expected: float) -> _Incident:
        incident = _Incident(
            incident_id=incident_id_for(entry.ticket_id),
            members=[],
            first_seen=entry.time,
            last_seen=entry.time,
            detected_by=entry.ticket_id,
            neighbours=neighbours,
            expected=expected,
        )
        self._open[incident.incident_id] = incident
        logger.info(
            "incident %s opened by %s: %d close tickets in %.0fs, %.2f expected",
            incident.incident_id,
            entry.ticket_id,
            neighbours,
            self.config.window_s,
            expected,
        )
        return incident

    def _entry(self, observation: Observation) -> _Entry:
        return _Entry(
            ticket_id=observation.ticket_id,
            time=_epoch(observation.event_time),
            vector=np.asarray(observation.vector, dtype=np.float32),
            labels=dict(observation.labels),
            terms=Counter(tokens(observation.text)),
        )

    def _append(self, entry: _Entry) -> None:
        previous = self._by_id.pop(entry.ticket_id, None)
        if previous is not None:  # the same id again: the newest copy counts, once
            self._window.remove(previous)
            self._window_terms.subtract(previous.terms)
        self._window.append(entry)
        self._window_terms.update(entry.terms)
        self._by_id[entry.ticket_id] = entry

    def _expected(self, vector: Vector) -> float:
        config = self.config
        return float(
            self.baseline.expected(vector[None, :], config.max_distance, config.window_s)[0]
        )

    def _add(self, incident: _Incident, entries: Sequence[_Entry]) -> None:
        for entry in entries:
            if entry.incident is None and entry.ticket_id not in self._member_of:
                incident.add(entry)
                self._member_of[entry.ticket_id] = incident.incident_id

    def _around(self, incident: _Incident, moment: float) -> list[_Entry]:
        """Unassigned window tickets within ``max_distance`` of the incident's centre."""
        centre = incident.centre()
        return [
            e
            for e in self._window
            if e.incident is None
            and abs(e.time - moment) <= self.config.window_s
            and 1.0 - float(e.vector @ centre) <= self.config.max_distance
        ]

    def _joined(self, entry: _Entry) -> _Incident | None:
        """The open incident whose centre is within ``max_distance`` (the closest one).

        The centre, not the nearest member: in a space where a tenth of all tickets are
        within the distance of any one ticket, joining by nearest member chains the group
        into the background within hours.
        """
        best: tuple[float, _Incident] | None = None
        for incident in self._open.values():
            if not incident.vectors:
                continue
            distance = 1.0 - float(entry.vector @ incident.centre())
            if distance <= self.config.max_distance and (best is None or distance < best[0]):
                best = (distance, incident)
        return best[1] if best is not None else None

    def _bursting(self, neighbours: int, expected: float) -> bool:
        return (
            neighbours + 1 >= self.config.min_size
            and neighbours >= self.config.baseline_ratio * expected
        )

    def _close_quiet(self) -> list[IncidentEvent]:
        events = []
        for incident_id, incident in list(self._open.items()):
            if self._clock - incident.last_seen <= self.config.quiet_s:
                continue
            events.append(self._event(incident, IncidentStatus.CLOSED))
            del self._open[incident_id]
            for ticket_id in incident.members:
                if self._member_of.get(ticket_id) == incident_id:
                    del self._member_of[ticket_id]
            logger.info("incident %s closed at size %d", incident_id, incident.size)
        return events

    def _evict(self) -> None:
        """Tickets older than the window (or past ``max_window``) leave it for the baseline."""
        horizon = self._clock - self.config.window_s
        while self._window and (
            self._window[0].time < horizon or len(self._window) > self.config.max_window
        ):
            entry = self._window.popleft()
            self._by_id.pop(entry.ticket_id, None)
            self._window_terms.subtract(entry.terms)
            elapsed = entry.time - self._last_evicted if self._last_evicted is not None else 0.0
            self._last_evicted = entry.time
            self.baseline.add(entry.vector, elapsed)

    def _event(self, incident: _Incident, status: IncidentStatus) -> IncidentEvent:
        if status is not IncidentStatus.CLOSED and incident.term_counts:
            background = self._window_terms - sum(
                (e.terms for e in self._window if e.incident == incident.incident_id), Counter()
            )
            incident.top_terms = top_terms(
                incident.term_counts,
                incident.term_members,
                background,
                self.config.top_terms,
                members=incident.size,
            )
        return IncidentEvent(
            incident_id=incident.incident_id,
            status=status,
            member_ticket_ids=incident.members[:MAX_MEMBER_IDS],
            size=incident.size,
            first_seen=_moment(incident.first_seen),
            last_seen=_moment(incident.last_seen),
            representative_ticket_id=_representative(incident),
            top_terms=incident.top_terms,
            label_counts={t: dict(c.most_common()) for t, c in incident.labels.items()},
            detected_by_ticket_id=incident.detected_by,
            neighbours_at_detection=incident.neighbours,
            expected_at_detection=incident.expected,
        )


def _representative(incident: _Incident) -> str:
    if not incident.vectors:
        return incident.members[0]
    return incident.vector_ids[int(np.argmax(np.vstack(incident.vectors) @ incident.centre()))]


def tokens(text: str) -> list[str]:
    return [t for t in (m.lower() for m in _TOKEN.findall(text)) if t not in _STOP]


def top_terms(
    term_counts: Counter[str],
    term_members: Counter[str],
    background: Counter[str],
    count: int,
    *,
    members: int,
) -> list[str]:
    """Class-based TF-IDF (as in BERTopic) of the members' words as one class against the
    background's as the other: a term's share of its class's words times
    ``log(1 + average words per class / its count over both classes)``; the members' best
    ``count`` terms, ties by name. ``term_members``: how many members hold each term; with
    more than one member a term must be in two at least, so one ticket's signature or name
    is never the incident's headline."""
    member_total = sum(term_counts.values())
    if member_total == 0:
        return []
    average = (member_total + sum(max(0, n) for n in background.values())) / 2
    floor = 2 if members > 1 else 1
    scores = {
        term: (n / member_total) * math.log(1 + average / (n + max(0, background[term])))
        for term, n in term_counts.items()
        if term_members[term] >= floor
    }
    return [t for t, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


def text_terms(texts: Sequence[str], background: Sequence[str], count: int) -> list[str]:
    """:func:`top_terms` of ``texts`` against ``background`` (whole texts)."""
    term_counts: Counter[str] = Counter()
    term_members: Counter[str] = Counter()
    for text in texts:
        words = tokens(text)
        term_counts.update(words)
        term_members.update(set(words))
    background_counts: Counter[str] = Counter(w for text in background for w in tokens(text))
    return top_terms(term_counts, term_members, background_counts, count, members=len(texts))
