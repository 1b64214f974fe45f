"""Who checks what: the review policy a model is trained with, and the cuts it serves with.

:class:`ReviewPolicy` is what an operator sets (``REVIEW_THRESHOLD``, ``REVIEW_PRECISION``,
``REVIEW_PRECISION_BY_TARGET``, ``REVIEW_GATE``) and travels as one value through training,
retraining, backfill, the worker and serve. :class:`ReviewCuts` is that policy resolved
against one fitted model: a probability cut per target (the model's own where training set
one, else the policy's fallback threshold) and the gate (the targets whose review holds the
whole ticket). Pure: no I/O, no settings.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticketflow.models.classifier import Prediction

logger = logging.getLogger(__name__)

# The one default of REVIEW_THRESHOLD: the cut for a target the model has no threshold of its
# own for (a model trained without out-of-fold predictions, or an old artifact).
DEFAULT_REVIEW_THRESHOLD = 0.6
# The one default of REVIEW_PRECISION: training reads each target's cut off its out-of-fold
# predictions so that the labels it lets through reach this precision.
DEFAULT_REVIEW_PRECISION = 0.90


@dataclass(frozen=True)
class ReviewPolicy:
    """How sure a label must be before nobody checks it.

    ``threshold``: the cut for targets whose model has none of its own (serving);
    ``precision``: the precision training aims each target's cut at, ``precision_by_target``
    overriding it per target; ``gate``: the targets whose review holds the whole ticket
    (empty = the model's first target); ``audit_share``: the share of the tickets the gate
    would let through that are held all the same, drawn at random (:meth:`ReviewCuts.audits`).
    """

    threshold: float = DEFAULT_REVIEW_THRESHOLD
    precision: float = DEFAULT_REVIEW_PRECISION
    precision_by_target: Mapping[str, float] = field(default_factory=dict)
    gate: tuple[str, ...] = ()
    audit_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"review threshold must be in [0, 1], got {self.threshold}")
        if not 0 <= self.audit_share < 1:
            raise ValueError(f"review audit share must be in [0, 1), got {self.audit_share}")
        for target, value in {"": self.precision, **self.precision_by_target}.items():
            if not 0 < value <= 1:
                where = f" for {target}" if target else ""
                raise ValueError(f"review precision{where} must be in (0, 1], got {value}")
        object.__setattr__(self, "precision_by_target", dict(self.precision_by_target))
        object.__setattr__(self, "gate", tuple(self.gate))

    def precisions(self, targets: Sequence[str]) -> dict[str, float]:
        """The precision each of ``targets`` aims at; a named target not among them is
        logged and ignored."""
        unknown = sorted(set(self.precision_by_target) - set(targets))
        if unknown:
            logger.warning(
                "REVIEW_PRECISION_BY_TARGET names %s, which the model does not learn; ignored",
                ", ".join(unknown),
            )
        return {t: self.precision_of(t) for t in targets}

    def precision_of(self, target: str) -> float:
        """The precision ``target``'s cut aims at: its own, else the policy's."""
        return float(self.precision_by_target.get(target, self.precision))

    def cuts(self, classifier: Any) -> ReviewCuts:
        """This policy resolved against a fitted classifier (:class:`TicketClassifier`): its
        own per-target cuts and gate, this policy's threshold where it has none."""
        own: Mapping[str, float] = getattr(classifier, "review_thresholds", None) or {}
        targets: list[str] = list(classifier.targets)
        thresholds = {t: float(own.get(t, self.threshold)) for t in targets}
        gate = tuple(getattr(classifier, "review_gate", None) or targets[:1])
        return ReviewCuts(thresholds=thresholds, gate=gate, audit_share=self.audit_share)


@dataclass(frozen=True)
class ReviewCuts:
    """A served model's review cuts: ``thresholds`` per target, and the ``gate``."""

    thresholds: Mapping[str, float]
    gate: tuple[str, ...]
    audit_share: float = 0.0

    def flags(self, predictions: Mapping[str, Prediction]) -> dict[str, bool]:
        """Per target: a person must check this label (its probability is below its cut)."""
        return {t: p.probability < self.thresholds[t] for t, p in predictions.items()}

    def holds(self, predictions: Mapping[str, Prediction]) -> bool:
        """The ticket is held for a person when a gating target is below its cut.

        Only the gate's targets hold the ticket: one sure of its queue is routed by queue even
        when its priority is unsure; that target's own flag (:meth:`flags`) asks for the
        priority to be checked.
        """
        return any(predictions[t].probability < self.thresholds[t] for t in self.gate)

    def audits(self, ticket_id: str, predictions: Mapping[str, Prediction]) -> bool:
        """The ticket is one the gate lets through but a person checks all the same: an
        ``audit_share`` of them, drawn by a hash of ``ticket_id`` (a replay draws the same).

        People's answers are otherwise all about tickets the model was unsure of; retraining
        judges a challenger on them, a sample that is not the stream (docs/learning.md). The
        audited ones are a sample of the rest."""
        if self.audit_share <= 0 or self.holds(predictions):
            return False
        digest = hashlib.blake2b(ticket_id.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.audit_share


# The policy of an unconfigured run (every setting at its default): what library functions
# default to, so a caller that sets nothing gets what `ticketflow train` gets.
DEFAULT_POLICY = ReviewPolicy()
