"""Emerging incidents as a reader sees them: the ``ticket-incidents`` topic folded into the
latest state per incident id, and the text ``ticketflow incidents list|show`` prints.

Pure (no I/O): the CLI and serve's review desk read the records and pass them in. The topic
is compacted and keyed by incident id, so the last record of a key is the incident's state;
a record without a value is a tombstone (the key's incident is gone). Reading the whole
topic before compaction has run gives the same answer: older events of a key are overridden.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ticketflow.schemas.incident import IncidentEvent, IncidentStatus

logger = logging.getLogger(__name__)

TERMS_LISTED = 5  # top terms in a listing row and on the desk; `show` prints them all
LABELS_LISTED = 2  # most common labels per target in a listing row


@dataclass(frozen=True)
class IncidentBook:
    """The latest event of every incident, and which incident lists each ticket."""

    incidents: dict[str, IncidentEvent] = field(default_factory=dict)
    unreadable: int = 0  # records that are not IncidentEvents (left out)
    _by_ticket: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        # Oldest first, so a ticket listed by two incidents (possible across a restart) maps to
        # the one that saw it last.
        for event in sorted(self.incidents.values(), key=lambda e: e.last_seen):
            for ticket_id in event.member_ticket_ids:
                self._by_ticket[ticket_id] = event.incident_id

    def get(self, incident_id: str) -> IncidentEvent | None:
        return self.incidents.get(incident_id)

    def of_ticket(self, ticket_id: str, incident_id: str | None = None) -> IncidentEvent | None:
        """The incident of ``ticket_id``: ``incident_id`` (what its labelled ticket carries)
        when the book has it, else the incident whose member list holds the ticket (members
        published before their incident opened carry no id)."""
        if incident_id is not None and incident_id in self.incidents:
            return self.current(incident_id)
        found = self._by_ticket.get(ticket_id)
        return None if found is None else self.current(found)

    def current(self, incident_id: str) -> IncidentEvent | None:
        """The incident ``incident_id`` is part of now: itself, or the one it was merged into
        (``merged_into`` on its closed event; the worker merges concurrent incidents that
        share a rare word), followed while the book holds it."""
        event = self.incidents.get(incident_id)
        seen = {incident_id}
        while event is not None and event.merged_into and event.merged_into not in seen:
            following = self.incidents.get(event.merged_into)
            if following is None:
                break
            seen.add(event.merged_into)
            event = following
        return event

    def listed(self, *, closed: bool = False) -> list[IncidentEvent]:
        """Open incidents (and closed ones with ``closed``), the latest activity first."""
        chosen = [e for e in self.incidents.values() if closed or not is_closed(e)]
        return sorted(chosen, key=lambda e: (e.last_seen, e.incident_id), reverse=True)

    @property
    def open_count(self) -> int:
        return sum(1 for e in self.incidents.values() if not is_closed(e))


def is_closed(event: IncidentEvent) -> bool:
    return event.status is IncidentStatus.CLOSED


def fold(records: Iterable[tuple[bytes | None, bytes | None]]) -> IncidentBook:
    """The book of ``records`` ((key, value) in topic order): the last event per incident id
    wins; a tombstone (no value) removes its key; unreadable values are counted and skipped."""
    latest: dict[str, IncidentEvent] = {}
    unreadable = 0
    for key, value in records:
        if value is None:
            if key is not None:
                latest.pop(key.decode("utf-8", errors="replace"), None)
            continue
        try:
            event = IncidentEvent.model_validate_json(value)
        except ValidationError as exc:
            unreadable += 1
            logger.debug("not an IncidentEvent: %s", exc)
            continue
        # The event's own id, not the record key: the worker writes both the same, and the
        # id is what the labelled tickets carry.
        latest[event.incident_id] = event
    return IncidentBook(latest, unreadable)


def top_labels(event: IncidentEvent, per_target: int = LABELS_LISTED) -> dict[str, list[str]]:
    """Per target, the most common labels of the members, as ``label (count)``."""
    shown: dict[str, list[str]] = {}
    for target, counts in sorted(event.label_counts.items()):
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:per_target]
        shown[target] = [f"{label} ({count})" for label, count in ranked]
    return shown


def summary(event: IncidentEvent) -> dict[str, Any]:
    """One incident as ``incidents list --json`` prints it: what the desk shows, and more."""
    return {
        **desk_view(event),
        "first_seen": _time(event.first_seen),
        "last_seen": _time(event.last_seen),
        "labels": {t: dict(c) for t, c in sorted(event.label_counts.items())},
        "representative_ticket_id": event.representative_ticket_id,
    }


def table(events: Iterable[IncidentEvent]) -> list[str]:
    """``incidents list``'s rows under a header; ids, terms and labels in full (a terminal
    wraps long lines; cutting an id would make it useless to ``show``)."""
    lines = [f"{'incident':<24} {'state':<8} {'size':>5}  {'first seen':<20}  {'last seen':<20}"]
    for e in events:
        lines.append(
            f"{e.incident_id:<24} {e.status.value:<8} {e.size:>5}  "
            f"{_time(e.first_seen):<20}  {_time(e.last_seen):<20}"
        )
        lines.append(f"  terms: {', '.join(e.top_terms[:TERMS_LISTED]) or '-'}")
        labels = top_labels(e)
        if labels:
            lines.append(
                "  labels: " + "; ".join(f"{t}: {', '.join(ls)}" for t, ls in labels.items())
            )
    return lines


def details(event: IncidentEvent) -> list[str]:
    """``incidents show``: the whole incident."""
    lines = [
        f"incident {event.incident_id}",
        f"  state:          {event.status.value}"
        + (f" (merged into {event.merged_into})" if event.merged_into else ""),
        f"  size:           {event.size}"
        + (
            f" ({len(event.member_ticket_ids)} listed)"
            if len(event.member_ticket_ids) < event.size
            else ""
        ),
        f"  first seen:     {_time(event.first_seen)}",
        f"  last seen:      {_time(event.last_seen)}",
        f"  representative: {event.representative_ticket_id}",
        f"  detected by:    {event.detected_by_ticket_id} "
        f"({event.neighbours_at_detection} close tickets in the window, "
        f"{event.expected_at_detection:.2f} expected)",
        f"  top terms:      {', '.join(event.top_terms) or '-'}",
        "  labels:",
    ]
    for target, counts in sorted(event.label_counts.items()):
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        lines.append(f"    {target}: " + ", ".join(f"{label} ({n})" for label, n in ranked))
    if not event.label_counts:
        lines[-1] += " -"
    lines.append("  members:")
    lines.extend(f"    {ticket_id}" for ticket_id in event.member_ticket_ids)
    return lines


def desk_view(event: IncidentEvent) -> Mapping[str, Any]:
    """What the review desk shows of a held ticket's incident."""
    return {
        "incident_id": event.incident_id,
        "status": event.status.value,
        "size": event.size,
        "top_terms": event.top_terms[:TERMS_LISTED],
    }


def _time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
