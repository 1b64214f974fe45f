"""Contract of the ``drift-events`` topic: one record per window in which drift was detected."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class FeatureDrift(BaseModel):
    """One monitored feature of a window compared with the reference."""

    feature: str = Field(description="e.g. embedding, label:queue, confidence:queue, language.")
    method: str = Field(description="mmd, model, distance, ratio, jensenshannon, wasserstein…")
    score: float = Field(description="Effect size (or the embedding method's score).")
    threshold: float
    p_value: float | None = Field(default=None, description="None for embedding methods.")
    drifted: bool


class DriftEvent(BaseModel):
    """A window of labelled tickets that no longer looks like the model's reference set."""

    model_version: str
    reference_version: str
    window_start: datetime
    window_end: datetime
    window_size: int
    drifted: bool = True
    share_drifted: float = Field(description="Share of monitored features that drifted.")
    features: list[FeatureDrift]
    report_path: str | None = Field(default=None, description="Evidently HTML report, if any.")
    detected_at: datetime
