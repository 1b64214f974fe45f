"""Event contracts at every boundary. A leaf package: it imports no other project package."""

from ticketflow.schemas.dead_letter import DeadLetter, DeadLetterReason
from ticketflow.schemas.drift import DriftEvent, FeatureDrift
from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.schemas.incident import IncidentEvent, IncidentStatus
from ticketflow.schemas.labeled import LabeledTicket, LabelScore, SourcePosition, TargetPrediction
from ticketflow.schemas.model_update import ModelUpdate
from ticketflow.schemas.monitoring import MonitorRecord
from ticketflow.schemas.ticket import DEFAULT_LIMITS, FieldLimits, Ticket, fold_tag_columns

__all__ = [
    "DEFAULT_LIMITS",
    "DeadLetter",
    "DeadLetterReason",
    "DriftEvent",
    "FeatureDrift",
    "FieldLimits",
    "IncidentEvent",
    "IncidentStatus",
    "LabelFeedback",
    "LabelScore",
    "LabeledTicket",
    "ModelUpdate",
    "MonitorRecord",
    "SourcePosition",
    "TargetPrediction",
    "Ticket",
    "fold_tag_columns",
]
