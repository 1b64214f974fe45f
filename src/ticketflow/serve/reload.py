"""Hot reload for the HTTP API: follow the registry's ``current`` pointer, as the worker does.

A thread compares the registry's current version with the served one every ``poll_s``
seconds; a new one is loaded and verified (:meth:`ModelRegistry.load`, and
:func:`ticketflow.models.serving.make_pipeline`, which refuses a model of another vector
space) off the request path, then swapped in under a lock: a request runs on one model from
start to end. A model that fails is refused, logged and counted; the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import LoadedModel, ModelRegistry
from ticketflow.models.serving import ServingEncoders, make_pipeline

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


class RegistryPoller:
    """Loads the registry's current model when it changes; see the module docstring."""

    def __init__(
        self,
        holder: ModelHolder,
        registry: ModelRegistry,
        encoders: ServingEncoders,
        *,
        poll_s: float,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.holder = holder
        self.registry = registry
        self.encoders = encoders
        self.poll_s = poll_s
        self.on_result = on_result or (lambda result: None)
        self.refused: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Swap in the registry's current model when it is new and loads; True when swapped."""
        version = self.registry.current_version()
        served = self.holder.current.version
        if version is None or version == served or version in self.refused:
            return False
        try:
            model = self.registry.load(
                version,
                expect_embedding_model=self.encoders.name,
                expect_dimension=self.encoders.dimension,
            )
            pipeline = make_pipeline(self.encoders, model)
        except Exception as exc:  # every failure is a refusal: the old model keeps serving
            self.refused.add(version)
            self.on_result("refused")
            logger.error(
                "model reload refused: %s (%s: %s); still serving %s",
                version,
                type(exc).__name__,
                exc,
                served,
            )
            return False
        self.holder.swap(Served(model, pipeline))
        self.on_result("ok")
        logger.info("hot swap %s -> %s", served, version)
        return True

    def start(self) -> None:
        if self.poll_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="serve-reload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:
                logger.exception("registry check failed")
