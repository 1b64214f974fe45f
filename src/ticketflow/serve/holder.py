"""The model ``ticketflow serve`` answers with, swapped atomically on hot reload.

:class:`~ticketflow.runtime.reload.ModelReloader` loads and verifies a promoted model off the
request path and hands it to :meth:`ModelHolder.accept`; a request reads
:attr:`ModelHolder.current` once and runs on that model from start to end.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import LoadedModel
from ticketflow.runtime.reload import PreparedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One model in service: what a request reads, all at once."""

    model: LoadedModel
    pipeline: LabelingPipeline

    @property
    def version(self) -> str:
        return self.model.metadata.version


class ModelHolder:
    """The served model, swapped atomically. :attr:`lock` serialises use of the pipeline (its
    encoders and text cache are shared by every request)."""

    def __init__(self, served: Served) -> None:
        self._served = served
        self._swap = threading.Lock()
        self.lock = threading.Lock()

    @property
    def current(self) -> Served:
        with self._swap:
            return self._served

    def swap(self, served: Served) -> Served:
        with self._swap:
            old, self._served = self._served, served
        return old

    def accept(self, prepared: PreparedModel) -> None:
        """Put a model the reloader loaded and verified in service."""
        self.swap(Served(prepared.model, prepared.pipeline))
