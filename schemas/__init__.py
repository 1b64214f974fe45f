"""Event contracts at every boundary. A leaf package: it imports no other project package."""

from schemas.dead_letter import DeadLetter, DeadLetterReason
from schemas.drift import DriftEvent, FeatureDrift
from schemas.feedback import LabelFeedback
from schemas.labeled import LabeledTicket, LabelScore, SourcePosition, TargetPrediction
from schemas.model_update import ModelUpdate
from schemas.monitoring import MonitorRecord
from schemas.ticket import DEFAULT_LIMITS, FieldLimits, Ticket, fold_tag_columns

__all__ = [
    "DEFAULT_LIMITS",
    "DeadLetter",
    "DeadLetterReason",
    "DriftEvent",
    "FeatureDrift",
    "FieldLimits",
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
