"""Internal contract: what the worker tells the drift monitor about each labelled ticket."""

from __future__ import annotations

import base64
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field


class MonitorRecord(BaseModel):
    """One labelled ticket on the internal ``ticket-monitoring`` topic (key = ticket_id).

    Compact on purpose: the vector travels as little-endian float16 in base64 (~1 KB for
    384 dimensions) so the monitor never reads the vector store or re-encodes.
    """

    ticket_id: str
    model_version: str
    embedding_model: str
    vector_f16_b64: str = Field(description="L2-normalised embedding, float16 LE, base64.")
    dimension: int
    labels: dict[str, str]
    probabilities: dict[str, float]
    needs_review: bool = Field(description="The ticket's top-level `needs_review` (its gate).")
    needs_review_by_target: dict[str, bool] = Field(
        default_factory=dict,
        description="Per target, its prediction's `needs_review`; empty from workers older "
        "than per-target review.",
    )
    text_length: int
    language: str | None = None
    processed_time: datetime


def pack_vector(vector: npt.NDArray[np.float32]) -> str:
    """The ``vector_f16_b64`` form of a vector: little-endian float16, base64."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def unpack_vector(record: MonitorRecord) -> npt.NDArray[np.float32]:
    """The vector of ``record`` as float32 (float16 precision)."""
    raw = base64.b64decode(record.vector_f16_b64)
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)
