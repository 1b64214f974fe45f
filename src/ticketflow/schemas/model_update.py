"""Contract of the ``model-updates`` topic: a model was promoted (or rolled back to)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class ModelUpdate(BaseModel):
    """Every worker reads every update and hot-reloads ``version`` after verifying it."""

    version: str = Field(description="The version to serve now.")
    previous_version: str | None = Field(default=None, description="The champion it replaces.")
    action: Literal["promote", "rollback"]
    reason: str
    promoted_by: str
    promoted_at: datetime
    model_sha256: str = Field(description="sha256 of model.joblib; workers check it on load.")
    embedding_model: str
    embedding_dimension: int
