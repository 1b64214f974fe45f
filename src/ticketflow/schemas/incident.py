"""Contract of the ``ticket-incidents`` topic: an emerging incident, keyed by its id.

The topic is compacted: the last event per key is the incident's current state, so a reader
(``ticketflow incidents list``, a restarting worker) needs only the last one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class IncidentStatus(StrEnum):
    OPEN = "open"  # first event: the group just passed the minimum size and the burst test
    UPDATED = "updated"  # it grew
    CLOSED = "closed"  # no new member for INCIDENT_QUIET_S of event time, or merged


class IncidentEvent(BaseModel):
    """A group of close tickets that arrived far faster than that kind of ticket usually does."""

    incident_id: str = Field(description="Stable for the incident's life; the record key.")
    status: IncidentStatus
    member_ticket_ids: list[str] = Field(
        description="Member tickets in arrival order (the first 500 when there are more)."
    )
    size: int = Field(ge=1, description="How many tickets belong to the incident.")
    first_seen: datetime = Field(description="Event time of the earliest member.")
    last_seen: datetime = Field(description="Event time of the latest member.")
    representative_ticket_id: str = Field(
        description="The member closest to the members' mean vector."
    )
    top_terms: list[str] = Field(
        default_factory=list,
        description="Terms that tell the members apart from the other recent tickets "
        "(class-based TF-IDF), best first.",
    )
    label_counts: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Per target, how many members got each label.",
    )
    detected_by_ticket_id: str = Field(description="The ticket whose arrival opened it.")
    neighbours_at_detection: int = Field(
        ge=0, description="Close tickets within the window when it was opened."
    )
    expected_at_detection: float = Field(
        ge=0.0,
        description="How many close tickets the baseline expected in that window.",
    )
    merged_into: str | None = Field(
        default=None,
        description="On a closed event: the incident that took this one's members over (two "
        "concurrent incidents sharing a rare word, e.g. the two languages of one outage); "
        "its events list them from then on.",
    )
