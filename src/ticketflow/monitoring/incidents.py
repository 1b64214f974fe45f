"""Emerging incidents: a burst of close tickets becomes one :class:`IncidentEvent`.

Pure (no I/O): the worker feeds each labelled micro-batch to :meth:`IncidentDetector.observe`
and publishes what it returns. The method is an online nearest-neighbour burst score,
chosen over HDBSCAN on the window by ``python -m bench.incidents`` (docs/incidents.md):

- the *space*: the stored vector joined with the :class:`TermVectors` of the ticket's words
  (``text_weight`` of the closeness from the words, :func:`joint`), or the vector alone;
- for each ticket, its *neighbours*: tickets seen before it whose cosine distance in that
  space is at most ``max_distance`` and whose event time is within ``window_s`` of its own;
- the *baseline*: how many such neighbours that kind of ticket usually has, the share of a
  sample of older tickets (the history) within ``max_distance`` of it times the usual number
  of tickets per window;
- a ticket with at least ``min_size - 1`` neighbours, and at least ``baseline_ratio`` times
  the expected number, in the whole window or in its latest ``RATE_SPAN`` (against that share
  of the expected number), opens an incident with them (and the window's unassigned tickets
  near their centre); a later ticket in a burst itself and within ``max_distance`` of an
  incident's centre joins it, alone; an incident with no new member for ``quiet_s`` of
  event time is closed;
- with the words' part on, two open incidents overlapping in event time that both hold a
  rare word in two members (``MERGE_*``: the two languages of one outage) are merged: the
  one opened first keeps its id and the other's centre, the other closes with
  ``merged_into``.

State is bounded: the window (``window_s``, at most ``max_window`` tickets, in a
preallocated ring of vectors with ``HEADROOM`` slots for one batch), the baseline sample
(``baseline_sample`` vectors), the words' document counts (a fixed table) and, per open
incident, its last ``MEMBER_VECTORS`` member vectors. Cost: see :class:`IncidentDetector`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain

import numpy as np
import numpy.typing as npt
from threadpoolctl import ThreadpoolController

from ticketflow.schemas.incident import IncidentEvent, IncidentStatus

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

# Vectors kept per open incident to match joiners against: a long incident drifts (new
# wording), its latest members are the best match, and memory stays bounded.
MEMBER_VECTORS = 200
# Top terms and the representative are chosen again when an incident has grown this much.
SUMMARY_GROWTH = 1.25
# Ids listed in an event: a record stays far below the broker's size limit.
MAX_MEMBER_IDS = 500
# Two concurrent incidents are one when both hold a word in at least this many members that
# is in at most MERGE_RARE_SHARE of the documents counted (the history and the tickets
# that left the window): a product, host or error name new to the desk, which the two
# languages of one outage share where their vectors do not. At 1% it also joined distinct
# bursts of bench.incidents on "fehler", "fails", "every"; at 0.1% none
# (docs/incidents.md, "Mixed-language bursts").
MERGE_MEMBERS = 2
MERGE_RARE_SHARE = 0.001
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
    # The share of closeness from the tickets' words (:class:`TermVectors`), the rest from
    # the stored vectors; 0: the vectors alone.
    text_weight: float = 0.0
    text_dimension: int = 256
    # Character n-grams of each word beside the word (0: the words alone).
    text_ngram: int = 4
    # Concurrent incidents sharing a rare repeated word become one (needs text_weight > 0).
    merge: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.text_weight < 1:
            raise ValueError("text_weight must be in [0, 1)")
        if self.window_s <= 0 or self.quiet_s <= 0:
            raise ValueError("window_s and quiet_s must be positive")
        if self.min_size < 2:
            raise ValueError("min_size must be at least 2")
        if not 0 < self.max_distance <= 2:
            raise ValueError("max_distance must be in (0, 2]")


# Character n-grams of a word (with its boundaries) beside the word itself: "mails" and
# "e-mails", "druckserver" and "server" share some, and a typo or an inflection keeps most.
NGRAM = 4
_NGRAM_SALT = 0x5BD1E995  # n-grams apart from the words of the same letters


# Words whose features are kept (one small array each); a desk's vocabulary repeats, and
# past this many the table starts over (features are a pure function of the word).
FEATURE_CACHE = 1 << 15
_EMPTY = np.zeros(0, dtype=np.int64)


def _word_features(word: str, ngram: int = NGRAM) -> npt.NDArray[np.int64]:
    """The word's hashed features: itself and its distinct character n-grams (none when
    ``ngram`` is 0). crc32, not
    hash(): Python salts str hashes per process, and a restarted worker must put a word
    where the one before it did (the store's tickets are hashed again)."""
    padded = f"<{word}>"
    grams = {padded[i : i + ngram] for i in range(len(padded) - ngram + 1)} if ngram else set()
    return np.array(
        [
            zlib.crc32(word.encode("utf-8")),
            *(zlib.crc32(g.encode("utf-8")) ^ _NGRAM_SALT for g in sorted(grams)),
        ],
        dtype=np.int64,
    )


class TermVectors:
    """A ticket's words as a bounded vector: signed feature hashing of the TF-IDF weights
    of its words and their character n-grams into ``dimension`` buckets, unit length.
    Tickets about one outage share rare words (product names, error words, hostnames)
    across phrasings; their weights come from how many documents hold each feature, counted
    in a table of ``2**table_bits`` hashed slots (bounded memory; the counts are halved once
    ``max_documents`` were counted, so they follow the stream). The cosine of two rows is
    about that of their TF-IDF vectors: a signed hash makes collisions cancel on average
    instead of adding closeness.

    Cost: per word of a batch one dictionary look-up (its features' array, computed once per
    word), the rest whole-batch array operations (a sort of the batch's features for their
    counts, a gather of their document counts, one bincount). The words' per-feature
    Counter this replaced held the GIL, which the worker's event loop needs, for most of
    the detector's time (``bench.incidents --cost``, docs/incidents.md).
    """

    def __init__(
        self,
        dimension: int = 256,
        *,
        table_bits: int = 18,
        max_documents: int = 100_000,
        ngram: int = NGRAM,
    ) -> None:
        self.dimension = dimension
        self._ngram = ngram
        self._mask = (1 << table_bits) - 1
        self._frequency = np.zeros(1 << table_bits, dtype=np.float32)
        self._documents = 0.0
        self._max_documents = max_documents
        # Known words' features: word -> its number, whose features are the run
        # _flat[_starts[n] : _starts[n] + _lengths[n]].
        self._ids: dict[str, int] = {}
        self._flat = np.zeros(FEATURE_CACHE * 8, dtype=np.int64)
        self._used = 0
        self._starts = np.zeros(FEATURE_CACHE, dtype=np.int64)
        self._lengths = np.zeros(FEATURE_CACHE, dtype=np.int64)

    @property
    def documents(self) -> float:
        return self._documents

    def document_share(self, word: str) -> float:
        """The share of the documents counted that held ``word`` (its own slot of the table,
        shared with the words hashed to it: an upper bound)."""
        if self._documents <= 0:
            return 0.0
        slot = zlib.crc32(word.encode("utf-8")) & self._mask
        return float(self._frequency[slot]) / self._documents

    def learn(self, documents: Iterable[Sequence[str]]) -> None:
        """Count each document's distinct words (call with tickets that left the window, so
        a burst's own words stay rare while it is going on)."""
        documents = list(documents)
        if not documents:
            return
        # A feature counts once per document: _counted gives each (document, feature) once.
        _, hashes, _ = self._counted(documents)
        self._count(hashes, len(documents))

    def learn_features(self, features: Sequence[npt.NDArray[np.int64]]) -> None:
        """:meth:`learn` from each document's distinct features as
        :meth:`vectors_with_features` gave them: the detector hashes a ticket's words once,
        when it arrives, not again when it leaves the window."""
        if features:
            self._count(np.concatenate(features), len(features))

    def _count(self, hashes: npt.NDArray[np.int64], documents: int) -> None:
        slots, counts = np.unique(hashes & self._mask, return_counts=True)
        self._frequency[slots] += counts
        self._documents += documents
        if self._documents > self._max_documents:
            self._frequency *= 0.5
            self._documents *= 0.5

    def vectors(self, documents: Sequence[Sequence[str]]) -> Vector:
        """One unit row per document (zeros for one without words), in whole-batch
        operations: (1 + log tf) x smoothed idf, each word into a signed bucket."""
        return self.vectors_with_features(documents)[0]

    def vectors_with_features(
        self, documents: Sequence[Sequence[str]]
    ) -> tuple[Vector, list[npt.NDArray[np.int64]]]:
        """:meth:`vectors`, and each document's distinct features (for
        :meth:`learn_features`)."""
        out = np.zeros((len(documents), self.dimension), dtype=np.float32)
        rows, h, frequencies = self._counted(documents)
        # Rows come sorted (the keys were): one split gives each document's features.
        features = np.split(h, np.searchsorted(rows, np.arange(1, len(documents))))
        if not len(h):
            return out, features
        idf = np.log((self._documents + 1.0) / (self._frequency[h & self._mask] + 1.0)) + 1.0
        weight = (1.0 + np.log(frequencies.astype(np.float32))) * idf
        weight *= np.where((h >> 31) & 1, 1.0, -1.0)  # the sign: the hash's top bit
        cells = rows * self.dimension + (h >> 1) % self.dimension
        flat = np.bincount(cells, weights=weight, minlength=out.size)
        out[:] = flat.reshape(out.shape)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out, features

    def _append_word(self, word: str) -> None:
        features = _word_features(word, self._ngram)
        number = len(self._ids)
        if number == len(self._starts):  # a batch of more new words than the cache holds
            self._starts = np.concatenate([self._starts, np.zeros_like(self._starts)])
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
        if self._used + len(features) > len(self._flat):
            self._flat = np.concatenate([self._flat, np.zeros_like(self._flat)])
        self._flat[self._used : self._used + len(features)] = features
        self._starts[number], self._lengths[number] = self._used, len(features)
        self._used += len(features)
        self._ids[word] = number

    def _forget_words(self) -> None:
        """The table starts over (a word's features are a pure function of it)."""
        self._ids.clear()
        self._used = 0

    def _counted(
        self, documents: Sequence[Sequence[str]]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Each document's distinct features with their counts: ``(rows, hashes, counts)``,
        one entry per (document, feature)."""
        words = list(chain.from_iterable(documents))
        if not words:
            return _EMPTY, _EMPTY, _EMPTY
        ids = self._ids
        new = set(words).difference(ids)
        if new and len(ids) + len(new) > FEATURE_CACHE:
            self._forget_words()
        for word in new:  # a new word: its features once, at the end of the flat table
            self._append_word(word)
        which = np.fromiter(map(ids.__getitem__, words), dtype=np.int64, count=len(words))
        starts, per_word = self._starts[which], self._lengths[which]
        # Each word's run of the flat table, gathered in one indexing: run k starts at
        # starts[k] and its i-th feature is at starts[k] + i.
        ends = np.cumsum(per_word)
        offsets = np.repeat(starts - ends + per_word, per_word) + np.arange(int(ends[-1]))
        features = self._flat[offsets]
        per_document = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
        rows = np.repeat(np.repeat(np.arange(len(documents)), per_document), per_word)
        # One sort of (row, feature) keys: the hashes are 32 bits.
        keys, counts = np.unique((rows << 32) | features, return_counts=True)
        return keys >> 32, keys & 0xFFFFFFFF, counts


def joint(vectors: Vector, terms: Vector, weight: float) -> Vector:
    """Rows whose dot product is ``(1 - weight) x`` the vectors' cosine ``+ weight x`` the
    terms' cosine (both unit rows): one space, one distance, one matrix product."""
    if weight <= 0:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    out = np.hstack([math.sqrt(1.0 - weight) * vectors, math.sqrt(weight) * terms])
    # A ticket without words: its vector alone, at unit length.
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    joined: Vector = (out / np.maximum(norms, 1e-12)).astype(np.float32)
    return joined


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
    ticket of the batch, the events to publish (one per incident touched), and the incidents
    open after it (read here, not from the detector, which another batch may be changing)."""

    assigned: dict[str, str]
    events: list[IncidentEvent]
    open_ids: list[str] = field(default_factory=list)  # the incidents open after the batch


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


@dataclass(eq=False)
class _Entry:
    ticket_id: str
    time: float  # event time, epoch seconds
    vector: Vector
    labels: Mapping[str, str]
    # Its text's words, as a list: Counter.update counts a list in C, a mapping in Python.
    words: list[str]
    incident: str | None = None
    # Its words' distinct hashed features (with the words' part on): counted when it leaves.
    features: npt.NDArray[np.int64] = field(default_factory=lambda: _EMPTY)
    slot: int = -1  # its slot in the window's ring, -1 once it left
    row: int = -1  # its row in the batch being observed, -1 outside it
    counted: bool = False  # its words are in its incident's window words


def _subtract(counts: Counter[str], words: list[str]) -> None:
    """``words`` out of ``counts`` in place, dropping the words that reach zero: the
    window's vocabulary must not grow with every word ever seen."""
    for word in words:
        left = counts[word] - 1
        if left > 0:
            counts[word] = left
        else:
            counts.pop(word, None)


@dataclass(eq=False)
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
    window_terms: Counter[str] = field(default_factory=Counter)  # members still in the window
    labels: dict[str, Counter[str]] = field(default_factory=dict)
    top_terms: list[str] = field(default_factory=list)
    member_set: set[str] = field(default_factory=set)
    size: int = 0
    opened: bool = False  # its "open" event was emitted
    summarised_at: int = 0  # its size when its top terms and representative were chosen
    representative: str | None = None
    merged_into: str | None = None  # closed by a merge into this incident
    opened_at: float = 0.0  # event time of the ticket that opened it (restored: first_seen)
    # Incidents merged into this one, kept for their centres: a joiner near either group's
    # centre joins (one centre between two languages would be near neither).
    parts: list[_Incident] = field(default_factory=list)
    track: bool = False  # keep ``repeated``/``fresh`` (the detector can merge)
    repeated: set[str] = field(default_factory=set)  # words in MERGE_MEMBERS members or more
    fresh: list[str] = field(default_factory=list)  # words repeated since the last look
    _sum: npt.NDArray[np.float64] | None = None  # of the kept vectors, for the centre
    _centre: Vector | None = None

    def centre(self) -> Vector:
        """The normalised mean of the kept member vectors (a running sum: O(dimension))."""
        if self._centre is None:
            total = self._sum if self._sum is not None else np.zeros(1)
            norm = max(float(np.linalg.norm(total)), 1e-12)
            self._centre = (total / norm).astype(np.float32)
        return self._centre

    def keep(self, ticket_id: str, vector: Vector) -> None:
        """One more member vector to match joiners against; the oldest goes past the limit."""
        if self._sum is None:
            self._sum = np.zeros(len(vector), dtype=np.float64)
        if len(self.vectors) == MEMBER_VECTORS:
            self._sum -= self.vectors[0]
        self.vectors.append(vector)
        self.vector_ids.append(ticket_id)
        self._sum += vector
        self._centre = None

    def count_members(self, words: Iterable[str]) -> None:
        """One more member holds ``words``; with ``track`` (a merge possible), those reaching
        MERGE_MEMBERS are fresh."""
        distinct = set(words)
        self.term_members.update(distinct)  # in C: the default detector pays no loop here
        if not self.track:
            return
        for word in distinct:
            if self.term_members[word] == MERGE_MEMBERS:
                self.repeated.add(word)
                self.fresh.append(word)

    def add(self, entry: _Entry, part: _Incident | None = None) -> None:
        """``entry`` joins; its vector goes to ``part`` (a merged incident's group whose
        centre it matched) or to this incident's own centre."""
        if entry.ticket_id in self.member_set:
            return
        self.member_set.add(entry.ticket_id)
        self.members.append(entry.ticket_id)
        self.size += 1
        self.first_seen = min(self.first_seen, entry.time)
        self.last_seen = max(self.last_seen, entry.time)
        (part or self).keep(entry.ticket_id, entry.vector)
        self.term_counts.update(entry.words)
        self.count_members(entry.words)
        if entry.slot >= 0:
            self.window_terms.update(entry.words)
            entry.counted = True
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


_blas: ThreadpoolController | None = None


def _one_blas_thread() -> AbstractContextManager[object]:
    """The detector's products on its own thread only. OpenBLAS would spread each over every
    core, where the worker's encoder threads already are: measured on a loaded 2-core
    machine (2026-12-07), a batch-by-window product took 52 ms in the mean with 2 BLAS
    threads and 6 ms with 1, at a quarter of the CPU time. The limit is the process's for
    its duration (OpenBLAS has no per-thread setting): a BLAS call on another thread
    meanwhile runs on one thread too, as the worker's small per-batch ones can."""
    global _blas  # one controller: creating one scans the loaded libraries
    if _blas is None:
        _blas = ThreadpoolController()
    limit: AbstractContextManager[object] = _blas.limit(limits=1, user_api="blas")
    return limit


# The burst test is made on the whole window and on its latest half: a burst's first
# tickets come within minutes, and in a dense region of the space (one language, one
# product) the whole window's usual count kept it below the ratio until its 10th ticket
# (bench.incidents, 2026-12-07: by the 5th with the half, no more false incidents).
RATE_SPAN = 0.5

# Ring slots beyond ``max_window``: a batch is appended before the end-of-batch eviction, so
# the ring holds the full window plus one batch; a larger batch evicts its oldest early.
HEADROOM = 1_024


class IncidentDetector:
    """Online burst detection over labelled tickets (see the module docstring).

    Cost: the window is a preallocated ring of vectors (``max_window`` plus one batch), and a
    batch is compared with it in one matrix product (batch x window) plus one within the
    batch; what is left per ticket are a few vector operations over the window's length, and
    Python work only for the tickets that open or join an incident.
    """

    def __init__(self, config: IncidentConfig, baseline: Baseline | None = None) -> None:
        self.config = config
        self.baseline = baseline or Baseline(config.baseline_sample)
        self.terms = (
            TermVectors(config.text_dimension, ngram=config.text_ngram)
            if config.text_weight > 0
            else None
        )
        # Features of the tickets that left the window, for ``terms``' document counts.
        self._left: list[npt.NDArray[np.int64]] = []
        self._capacity = config.max_window + HEADROOM
        self._vectors: Vector | None = None  # (capacity, dimension) once the first came
        self._times = np.full(self._capacity, -np.inf, dtype=np.float64)
        self._live = np.zeros(self._capacity, dtype=bool)
        self._free = np.zeros(self._capacity, dtype=bool)  # live and in no incident
        self._entries: list[_Entry | None] = [None] * self._capacity
        self._head = 0  # the oldest slot
        self._used = 0  # slots from the head on, live or left mid-ring
        self._size = 0  # live slots
        self._slot_of: dict[str, int] = {}
        # While a batch is observed: which pre-batch slots still count, which rows are live.
        self._valid = np.zeros(0, dtype=bool)
        self._batch_head = self._batch_used = 0
        self._batch_alive = np.zeros(0, dtype=bool)
        self._dropped_columns: list[int] = []  # columns and rows that left mid-batch
        self._dropped_rows: list[int] = []
        self._open: dict[str, _Incident] = {}
        # Stacked centres: the incident of each row, whose centre it is, the centres (cached).
        self._centres: tuple[list[_Incident], list[_Incident], Vector] | None = None
        self._moved: set[str] = set()  # incidents (or parts) whose row is out of date
        self._member_of: dict[str, str] = {}  # ticket id -> open incident id
        self._clock = -math.inf  # latest event time seen
        self._last_evicted: float | None = None
        self._window_terms: Counter[str] = Counter()  # the window's words, for top terms
        self._window_words = 0
        # Rare words repeated in an open incident -> those incidents (merge candidates).
        self._rare: dict[str, set[str]] = {}
        self._merging = self.terms is not None and config.merge
        # While merging a batch's incidents: absorbed incident id -> the one it went into.
        self._merged: dict[str, str] = {}

    @property
    def open_incidents(self) -> list[IncidentEvent]:
        """The current state of every open incident."""
        return [self._event(i, IncidentStatus.UPDATED) for i in self._open.values()]

    @property
    def open_ids(self) -> list[str]:
        return list(self._open)

    @property
    def window_size(self) -> int:
        """Tickets in the window now."""
        return self._size

    def incident_of(self, ticket_id: str) -> str | None:
        return self._member_of.get(ticket_id)

    def observe(self, batch: Sequence[Observation]) -> Detection:
        """Take a batch in arrival order; returns the incidents of its members and the events
        to publish: ``open`` for a new incident, ``updated`` when one grew, ``closed`` when
        one has been quiet for ``quiet_s``."""
        touched: dict[str, _Incident] = {}
        assigned: dict[str, str] = {}
        if batch:
            with _one_blas_thread():
                self._process(batch, touched, assigned)
        merged = self._merge_concurrent(touched)
        events = [
            self._event(i, IncidentStatus.UPDATED if i.opened else IncidentStatus.OPEN)
            for i in touched.values()
            if i.incident_id in self._open
        ]
        for incident in touched.values():
            incident.opened = True
        # An absorbed incident that had been published closes with a pointer; one opened
        # and absorbed in this batch was never published and needs no event.
        events += [self._event(i, IncidentStatus.CLOSED) for i in merged if i.opened]
        events += self._close_quiet()
        self._evict()
        if self.terms is not None and self._left:
            self.terms.learn_features(self._left)
            self._left = []
        return Detection(assigned=assigned, events=events, open_ids=list(self._open))

    def space(self, vectors: Vector, words: Sequence[Sequence[str]]) -> Vector:
        """Stored vectors (unit rows) and their tickets' words as the detector compares them:
        the vectors alone, or joined with the words' :class:`TermVectors`."""
        if self.terms is None:
            return np.ascontiguousarray(vectors, dtype=np.float32)
        return joint(vectors, self.terms.vectors(words), self.config.text_weight)

    def seed(self, vectors: Sequence[Vector], texts: Sequence[str], span_s: float) -> None:
        """The history: its texts' word counts first (the words' weights), then its tickets
        into the baseline sample, in the detector's space. ``texts``: one per vector, "" for
        one without (the worker's store keeps the redacted model text by default)."""
        if not len(vectors):
            return
        words = [tokens(t) for t in texts]
        if self.terms is not None:
            self.terms.learn(words)
        self.baseline.seed(list(self.space(np.vstack(vectors), words)), span_s)

    def restore(
        self,
        events: Iterable[IncidentEvent],
        vectors: Mapping[str, Vector],
        texts: Mapping[str, str] | None = None,
    ) -> int:
        """Reopen the incidents whose last event (the compacted topic's) is not ``closed``;
        ``vectors``: the members' stored vectors, to match joiners against, ``texts`` their
        stored texts (for the words' part of the space). Returns how many."""
        texts = texts or {}
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
                opened_at=_epoch(event.first_seen),
                track=self._merging,
            )
            kept = [m for m in event.member_ticket_ids if m in vectors]
            for ticket_id in event.member_ticket_ids:
                self._member_of[ticket_id] = event.incident_id
            if kept:
                words = [tokens(texts.get(m, "")) for m in kept]
                joined = self.space(
                    np.vstack([np.asarray(vectors[m], dtype=np.float32) for m in kept]), words
                )
                for ticket_id, vector in zip(kept, joined, strict=True):
                    incident.keep(ticket_id, vector.copy())
                for member_words in words:  # for a merge with a later incident
                    incident.count_members(member_words)
            self._index_rare(incident)
            self._open[event.incident_id] = incident
            self._clock = max(self._clock, incident.last_seen)
            restored += 1
        self._centres = None
        return restored

    def _process(
        self,
        batch: Sequence[Observation],
        touched: dict[str, _Incident],
        assigned: dict[str, str],
    ) -> None:
        config = self.config
        entries = [self._entry(o) for o in batch]
        vectors = np.vstack([e.vector for e in entries])
        if self.terms is None:
            matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        else:
            terms, features = self.terms.vectors_with_features([e.words for e in entries])
            matrix = joint(vectors, terms, self.config.text_weight)
            for entry, hashed in zip(entries, features, strict=True):
                entry.features = hashed
        for row, entry in enumerate(entries):
            entry.vector = matrix[row].copy()  # a view would keep the batch's matrix alive
        ring = self._ring(matrix.shape[1])
        times = np.fromiter((e.time for e in entries), dtype=np.float64, count=len(entries))
        # Two products per batch: with the window as it was before the batch (the ring's
        # used slots, oldest first, in at most two runs), and within the batch; row i may use
        # the window and the batch's rows before it (the tickets seen before it).
        cut = 1.0 - config.max_distance
        runs = self._runs()
        columns = np.concatenate([np.arange(a, b) for a, b in runs] or [np.zeros(0, np.int64)])
        window_close = np.hstack(
            [matrix @ ring[a:b].T >= cut for a, b in runs] or [np.zeros((len(entries), 0), bool)]
        )
        window_times = self._times[columns]
        batch_close = (matrix @ matrix.T) >= cut
        # Per column: the slot still holds the ticket it held at the start of the batch.
        self._valid = self._live[columns]
        self._batch_head, self._batch_used = self._head, self._used
        self._batch_alive = np.zeros(len(entries), dtype=bool)
        # Every row's close tickets as the batch starts, in whole-batch operations: the loop
        # below runs no operation over the window per ticket (each would also give up the
        # GIL and wait to get it back behind the worker's other threads).
        near_all = (
            window_close
            & self._valid
            & (np.abs(window_times[None, :] - times[:, None]) <= config.window_s)
        )
        earlier_all = np.tril(batch_close, -1) & (
            np.abs(times[None, :] - times[:, None]) <= config.window_s
        )
        counts = (
            np.count_nonzero(near_all, axis=1) + np.count_nonzero(earlier_all, axis=1)
        ).tolist()
        # The same in the latest part of the window (RATE_SPAN of it): the burst test is made
        # on both, so a burst's rate counts and not only its total in the whole window.
        recent = config.window_s * RATE_SPAN
        near_recent = near_all & (np.abs(window_times[None, :] - times[:, None]) <= recent)
        earlier_recent = earlier_all & (np.abs(times[None, :] - times[:, None]) <= recent)
        recent_counts = (
            np.count_nonzero(near_recent, axis=1) + np.count_nonzero(earlier_recent, axis=1)
        ).tolist()
        self._dropped_columns, self._dropped_rows = [], []
        expected = self._candidates_expected(matrix, counts)
        try:
            for row, entry in enumerate(entries):
                known = self._member_of.get(entry.ticket_id)
                if known is not None:  # a redelivery: it stays where it was
                    entry.incident = known
                    self._append(entry, row)
                    continue
                self._clock = max(self._clock, entry.time)
                # A copy already in the window: the newest counts, once, and not as its own
                # neighbour.
                self._forget(entry.ticket_id)
                # Less the tickets that left the window since the batch started (rare: a
                # copy of the same id, or a batch larger than the ring's headroom).
                count = counts[row]
                count -= sum(int(near_all[row, c]) for c in self._dropped_columns)
                count -= sum(int(earlier_all[row, j]) for j in self._dropped_rows)
                latest = recent_counts[row]
                latest -= sum(int(near_recent[row, c]) for c in self._dropped_columns)
                latest -= sum(int(earlier_recent[row, j]) for j in self._dropped_rows)
                self._append(entry, row)
                nearest, part = self._joined(entry)
                if nearest is None and count + 1 < config.min_size:
                    continue  # can neither join nor open one: no baseline needed
                # A joiner must be in a burst too (more close tickets than its kind usually
                # has): otherwise every usual ticket near the centre joins, and an incident in
                # a dense region of the space (one language, one product) grows into the
                # background.
                usual = expected.get(row)
                if usual is None:  # a candidate only since an incident opened in the batch
                    usual = float(self._expected(matrix[row : row + 1])[0])
                dense = self._dense(count, latest, usual)
                incident = nearest if dense else None
                if incident is not None:
                    # Only the ticket itself: taking its neighbours too would let the group
                    # walk away, ticket by ticket, from the problem it was opened for.
                    self._add(incident, [entry], part)
                elif self._bursting(count, latest, usual):
                    incident = self._opened(entry, count, usual)
                    near = near_all[row] & self._valid
                    earlier = earlier_all[row] & self._batch_alive
                    neighbours = [self._entries[s] for s in columns[np.flatnonzero(near)]]
                    neighbours += [entries[j] for j in np.flatnonzero(earlier) if j != row]
                    self._add(incident, [entry, *(n for n in neighbours if n is not None)])
                    # The burst's first tickets need not be close to the one that tipped it
                    # but are close to the group's centre: they are in it from the start.
                    self._add(incident, self._around(incident, entry.time))
                if incident is not None:
                    touched[incident.incident_id] = incident
        finally:
            for entry in entries:
                entry.row = -1
            self._valid = np.zeros(0, dtype=bool)
            self._batch_alive = np.zeros(0, dtype=bool)
            self._dropped_columns, self._dropped_rows = [], []
        for observation in batch:
            member_of = self._member_of.get(observation.ticket_id)
            if member_of is not None:
                assigned[observation.ticket_id] = member_of

    def _candidates_expected(self, matrix: Vector, counts: list[int]) -> dict[int, float]:
        """The baseline's expected count for the rows that may open or join an incident, in
        one product with the history sample: rows with enough close tickets (``counts``, as
        the batch started) or near an open incident's centre. The others (nearly all on a
        usual day) never pay for the comparison with the history."""
        config = self.config
        candidate = np.asarray(counts) + 1 >= config.min_size
        centres = self._centre_matrix()
        if centres is not None:
            candidate |= (matrix @ centres[2].T).max(axis=1) >= 1.0 - config.max_distance
        rows = np.flatnonzero(candidate)
        if not len(rows):
            return {}
        found = self._expected(matrix[rows])
        return {int(r): float(e) for r, e in zip(rows, found, strict=True)}

    def _expected(self, vectors: Vector) -> Vector:
        config = self.config
        return self.baseline.expected(vectors, config.max_distance, config.window_s)

    def _runs(self) -> list[tuple[int, int]]:
        """The ring's used slots as at most two ``(start, stop)`` runs, oldest first."""
        end = self._head + self._used
        if end <= self._capacity:
            return [(self._head, end)] if self._used else []
        return [(self._head, self._capacity), (0, end - self._capacity)]

    def _ring(self, dimension: int) -> Vector:
        if self._vectors is None:
            self._vectors = np.zeros((self._capacity, dimension), dtype=np.float32)
        return self._vectors

    def _opened(self, entry: _Entry, neighbours: int, expected: float) -> _Incident:
        incident = _Incident(
            incident_id=incident_id_for(entry.ticket_id),
            members=[],
            first_seen=entry.time,
            last_seen=entry.time,
            detected_by=entry.ticket_id,
            neighbours=neighbours,
            expected=expected,
            opened_at=entry.time,
            track=self._merging,
        )
        self._open[incident.incident_id] = incident
        self._centres = None
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
            words=tokens(observation.text),
        )

    def _append(self, entry: _Entry, row: int) -> None:
        """Into the ring's next slot (a copy of the same id leaves first)."""
        self._forget(entry.ticket_id)
        if self._used == self._capacity:  # a batch larger than the headroom
            self._evict_head()
        ring = self._ring(len(entry.vector))
        slot = (self._head + self._used) % self._capacity
        self._used += 1
        ring[slot] = entry.vector
        self._times[slot] = entry.time
        self._live[slot] = True
        self._free[slot] = entry.incident is None
        self._entries[slot] = entry
        self._slot_of[entry.ticket_id] = slot
        self._size += 1
        entry.slot, entry.row = slot, row
        if 0 <= row < len(self._batch_alive):
            self._batch_alive[row] = True
        self._window_terms.update(entry.words)
        self._window_words += len(entry.words)

    def _forget(self, ticket_id: str) -> None:
        slot = self._slot_of.get(ticket_id)
        if slot is not None:
            self._leave(slot)

    def _leave(self, slot: int) -> _Entry | None:
        """Slot ``slot`` leaves the window (its ring position stays until the head passes)."""
        entry = self._entries[slot]
        if entry is None:
            return None
        self._entries[slot] = None
        self._live[slot] = False
        self._free[slot] = False
        self._size -= 1
        if self._slot_of.get(entry.ticket_id) == slot:
            del self._slot_of[entry.ticket_id]
        _subtract(self._window_terms, entry.words)
        self._window_words -= len(entry.words)
        incident = self._open.get(entry.incident) if entry.incident else None
        if entry.counted and incident is not None:
            _subtract(incident.window_terms, entry.words)
        entry.slot = -1
        if entry.row >= 0:
            if entry.row < len(self._batch_alive):
                self._batch_alive[entry.row] = False
                self._dropped_rows.append(entry.row)
        else:
            column = (slot - self._batch_head) % self._capacity
            if column < min(self._batch_used, len(self._valid)) and self._valid[column]:
                self._valid[column] = False
                self._dropped_columns.append(column)
        return entry

    def _add(
        self, incident: _Incident, entries: Iterable[_Entry], part: _Incident | None = None
    ) -> None:
        centre = part or incident  # whose centre the vectors move
        for entry in entries:
            if entry.incident is None and entry.ticket_id not in self._member_of:
                had_vectors = bool(centre.vectors)
                incident.add(entry, part)
                self._member_of[entry.ticket_id] = incident.incident_id
                if entry.slot >= 0:
                    self._free[entry.slot] = False
                if had_vectors:  # its row in the stacked centres moves
                    self._moved.add(centre.incident_id)
                else:  # a new row
                    self._centres = None

    def _around(self, incident: _Incident, moment: float) -> list[_Entry]:
        """Unassigned window tickets within ``max_distance`` of the incident's centre, oldest
        first: one product with the ring."""
        if self._vectors is None:
            return []
        centre, config = incident.centre(), self.config
        found: list[_Entry] = []
        for a, b in self._runs():
            slots = a + np.flatnonzero(
                self._free[a:b]
                & (np.abs(self._times[a:b] - moment) <= config.window_s)
                & (self._vectors[a:b] @ centre >= 1.0 - config.max_distance)
            )
            found += [e for s in slots if (e := self._entries[s]) is not None]
        return found

    def _joined(self, entry: _Entry) -> tuple[_Incident | None, _Incident | None]:
        """The open incident with a centre within ``max_distance`` (the closest one), and
        the merged part whose centre that is (None: the incident's own).

        The centre, not the nearest member: in a space where a tenth of all tickets are
        within the distance of any one ticket, joining by nearest member chains the group
        into the background within hours.
        """
        stacked = self._centre_matrix()
        if stacked is None:
            return None, None
        owners, parts, centres = stacked
        distance = 1.0 - centres @ entry.vector
        best = int(np.argmin(distance))
        if distance[best] > self.config.max_distance:
            return None, None
        owner, part = owners[best], parts[best]
        return owner, (part if part is not owner else None)

    def _centre_matrix(self) -> tuple[list[_Incident], list[_Incident], Vector] | None:
        """The centres of the open incidents (and of the parts merged into them) that have
        member vectors, stacked, with the incident each row belongs to and whose centre it
        is (cached until one changes)."""
        if self._centres is None:
            rows = [
                (incident, part)
                for incident in self._open.values()
                for part in (incident, *incident.parts)
                if part.vectors
            ]
            if not rows:
                return None
            self._centres = (
                [owner for owner, _ in rows],
                [part for _, part in rows],
                np.vstack([part.centre() for _, part in rows]),
            )
            self._moved.clear()
        elif self._moved:
            _, parts, centres = self._centres
            for row, part in enumerate(parts):
                if part.incident_id in self._moved:
                    centres[row] = part.centre()
            self._moved.clear()
        return self._centres

    def _dense(self, neighbours: int, recent: int, expected: float) -> bool:
        """More close tickets than usual (``expected`` in a window), in the whole window or
        in its latest ``RATE_SPAN``."""
        ratio = self.config.baseline_ratio
        return neighbours >= ratio * expected or recent >= ratio * expected * RATE_SPAN

    def _bursting(self, neighbours: int, recent: int, expected: float) -> bool:
        """Enough close tickets to open an incident: ``min_size`` with the ticket, and
        ``baseline_ratio`` times the usual number, in the whole window or in its latest
        ``RATE_SPAN`` (the same count in half the time is twice the rate)."""
        size = self.config.min_size - 1
        ratio = self.config.baseline_ratio
        return (neighbours >= size and neighbours >= ratio * expected) or (
            recent >= size and recent >= ratio * expected * RATE_SPAN
        )

    def _merge_concurrent(self, touched: dict[str, _Incident]) -> list[_Incident]:
        """Merge the touched incidents with the open ones they share a rare repeated word
        with (MERGE_MEMBERS, MERGE_RARE_SHARE) and overlap in event time (within a window):
        the older (earlier first member, then id) keeps its id and takes the other's members.
        Needs the words' document counts (the joined space). Returns the absorbed ones;
        ``touched`` then holds the kept ones in their place."""
        absorbed: list[_Incident] = []
        if not self._merging or self.terms is None:  # terms: for the type checker
            for incident in touched.values():
                incident.fresh.clear()
            return absorbed
        for incident in list(touched.values()):
            if incident.incident_id not in self._open:  # absorbed in this loop
                continue
            fresh, incident.fresh = incident.fresh, []
            for word in fresh:
                if self.terms.document_share(word) > MERGE_RARE_SHARE:
                    continue
                holders = self._rare.setdefault(word, set())
                for other_id in sorted(holders):
                    other = self._open.get(other_id)
                    current = self._open.get(self._current(incident.incident_id))
                    if other is None or current is None or other is current:
                        continue
                    if current.parts or other.parts:
                        # Two groups at most (the two languages of one outage): merges
                        # chained through the union's growing vocabulary took all 50
                        # generated incidents of bench.incidents --cost into 2.
                        continue
                    if not self._concurrent(current, other):
                        continue
                    # The one opened first keeps its id: readers and labelled tickets have
                    # held it longest.
                    keep, gone = sorted(
                        (current, other), key=lambda i: (i.opened_at, i.incident_id)
                    )
                    self._merge(keep, gone)
                    absorbed.append(gone)
                    touched.pop(gone.incident_id, None)
                    touched[keep.incident_id] = keep
                holders.add(self._current(incident.incident_id))
        self._merged.clear()
        return absorbed

    def _index_rare(self, incident: _Incident) -> None:
        """A restored incident's rare repeated words into the index, without merging."""
        fresh, incident.fresh = incident.fresh, []
        if self.terms is None:
            return
        for word in fresh:
            if self.terms.document_share(word) <= MERGE_RARE_SHARE:
                self._rare.setdefault(word, set()).add(incident.incident_id)

    def _current(self, incident_id: str) -> str:
        """The incident that holds ``incident_id``'s members now (itself unless merged)."""
        seen = self._merged.get(incident_id)
        while seen is not None and seen in self._merged:
            seen = self._merged[seen]
        return seen or incident_id

    def _concurrent(self, a: _Incident, b: _Incident) -> bool:
        gap = self.config.window_s
        return a.first_seen <= b.last_seen + gap and b.first_seen <= a.last_seen + gap

    def _merge(self, keep: _Incident, gone: _Incident) -> None:
        logger.info(
            "incident %s (size %d) merged into %s (size %d): a rare word in both",
            gone.incident_id,
            gone.size,
            keep.incident_id,
            keep.size,
        )
        for ticket_id in gone.members:
            if ticket_id in keep.member_set:
                continue
            keep.member_set.add(ticket_id)
            keep.members.append(ticket_id)
            if self._member_of.get(ticket_id) == gone.incident_id:
                self._member_of[ticket_id] = keep.incident_id
            slot = self._slot_of.get(ticket_id)
            entry = self._entries[slot] if slot is not None else None
            if entry is not None and entry.incident == gone.incident_id:
                entry.incident = keep.incident_id
        keep.size += gone.size
        keep.first_seen = min(keep.first_seen, gone.first_seen)
        keep.last_seen = max(keep.last_seen, gone.last_seen)
        # Its centre stays its own: the two groups (two languages) are far apart, and one
        # mean between them would be near neither group's next tickets.
        keep.parts.append(gone)
        keep.term_counts.update(gone.term_counts)
        keep.window_terms.update(gone.window_terms)
        for word, members in gone.term_members.items():
            keep.term_members[word] += members
            if keep.term_members[word] >= MERGE_MEMBERS and word not in keep.repeated:
                keep.repeated.add(word)
                if word not in gone.repeated:  # repeated only together: looked at next time
                    keep.fresh.append(word)
        for target, counts in gone.labels.items():
            keep.labels.setdefault(target, Counter()).update(counts)
        gone.merged_into = keep.incident_id
        self._merged[gone.incident_id] = keep.incident_id
        del self._open[gone.incident_id]
        for word in gone.repeated:  # its rare words are the kept one's now
            holders = self._rare.get(word)
            if holders is not None and gone.incident_id in holders:
                holders.discard(gone.incident_id)
                holders.add(keep.incident_id)
        self._centres = None

    def _unindex(self, incident: _Incident) -> None:
        for word in incident.repeated:
            holders = self._rare.get(word)
            if holders is not None:
                holders.discard(incident.incident_id)
                if not holders:
                    del self._rare[word]

    def _close_quiet(self) -> list[IncidentEvent]:
        events = []
        for incident_id, incident in list(self._open.items()):
            if self._clock - incident.last_seen <= self.config.quiet_s:
                continue
            events.append(self._event(incident, IncidentStatus.CLOSED))
            del self._open[incident_id]
            self._unindex(incident)
            self._centres = None
            for ticket_id in incident.members:
                if self._member_of.get(ticket_id) == incident_id:
                    del self._member_of[ticket_id]
            logger.info("incident %s closed at size %d", incident_id, incident.size)
        return events

    def _evict(self) -> None:
        """Tickets older than the window (or past ``max_window``) leave it for the baseline."""
        horizon = self._clock - self.config.window_s
        while self._used and (
            not self._live[self._head]
            or self._times[self._head] < horizon
            or self._size > self.config.max_window
        ):
            self._evict_head()

    def _evict_head(self) -> None:
        entry = self._leave(self._head) if self._live[self._head] else None
        self._head = (self._head + 1) % self._capacity
        self._used -= 1
        if entry is not None:
            elapsed = entry.time - self._last_evicted if self._last_evicted is not None else 0.0
            self._last_evicted = entry.time
            self.baseline.add(entry.vector, elapsed)
            if self.terms is not None:
                self._left.append(entry.features)

    def _event(self, incident: _Incident, status: IncidentStatus) -> IncidentEvent:
        # Top terms and representative again only once the incident grew by a quarter
        # since they were last chosen: a long incident touched by every batch would
        # otherwise pay for its whole vocabulary each time, and a quarter more members
        # is about what it takes to change them.
        if (
            status is not IncidentStatus.CLOSED
            and incident.term_counts
            and incident.size >= SUMMARY_GROWTH * incident.summarised_at
        ):
            incident.summarised_at = incident.size
            incident.representative = _representative(incident)
            # The window's other tickets, for the members' words only: O(their vocabulary).
            background = {
                term: self._window_terms[term] - incident.window_terms[term]
                for term in incident.term_counts
            }
            incident.top_terms = top_terms(
                incident.term_counts,
                incident.term_members,
                background,
                self.config.top_terms,
                members=incident.size,
                background_total=self._window_words - incident.window_terms.total(),
            )
        return IncidentEvent(
            incident_id=incident.incident_id,
            status=status,
            member_ticket_ids=incident.members[:MAX_MEMBER_IDS],
            size=incident.size,
            first_seen=_moment(incident.first_seen),
            last_seen=_moment(incident.last_seen),
            representative_ticket_id=incident.representative or _representative(incident),
            top_terms=incident.top_terms,
            label_counts={t: dict(c.most_common()) for t, c in incident.labels.items()},
            detected_by_ticket_id=incident.detected_by,
            neighbours_at_detection=incident.neighbours,
            expected_at_detection=incident.expected,
            merged_into=incident.merged_into,
        )


def _representative(incident: _Incident) -> str:
    if not incident.vectors:
        return incident.members[0]
    return incident.vector_ids[int(np.argmax(np.vstack(incident.vectors) @ incident.centre()))]


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def top_terms(
    term_counts: Counter[str],
    term_members: Counter[str],
    background: Mapping[str, int],
    count: int,
    *,
    members: int,
    background_total: int | None = None,
) -> list[str]:
    """Class-based TF-IDF (as in BERTopic) of the members' words as one class against the
    background's as the other: a term's share of its class's words times
    ``log(1 + average words per class / its count over both classes)``; the members' best
    ``count`` terms, ties by name. ``term_members``: how many members hold each term; with
    more than one member a term must be in two at least, so one ticket's signature or name
    is never the incident's headline. ``background_total``: the background's word count, when
    ``background`` holds only the members' words."""
    member_total = sum(term_counts.values())
    if member_total == 0:
        return []
    if background_total is None:
        background_total = sum(max(0, n) for n in background.values())
    average = (member_total + max(0, background_total)) / 2
    floor = 2 if members > 1 else 1
    scores = {
        term: (n / member_total) * math.log(1 + average / (n + max(0, background.get(term, 0))))
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
