"""What a process that reads the help desk's memory loads once: the current model on its
encoders (:mod:`ticketflow.models.serving`) and the vector store of that model's vector space.

``ticketflow serve``, ``ticketflow similar`` and ``ticketflow backfill`` load it here, so they
embed exactly as the worker does and search the collection the worker writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ticketflow.adapters.store import ChromaVectorStore
from ticketflow.config import Settings
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import LoadedModel, ModelRegistry
from ticketflow.models.serving import ServingEncoders, make_pipeline

logger = logging.getLogger(__name__)


@dataclass
class Serving:
    registry: ModelRegistry
    encoders: ServingEncoders
    model: LoadedModel
    pipeline: LabelingPipeline
    store: ChromaVectorStore

    @property
    def model_version(self) -> str:
        return self.model.metadata.version


def open_store(settings: Settings, pipeline: LabelingPipeline) -> ChromaVectorStore:
    """The configured collection, declared for ``pipeline``'s vector space."""
    client = settings.chroma_client()
    return ChromaVectorStore(
        client,
        settings.chroma_collection,
        embedding_model=pipeline.vector_model,
        dimension=pipeline.dimension,
    )


def load_serving(settings: Settings) -> Serving:
    """The served model (``MODEL_VERSION``, else the registry's current one), its pipeline and
    the vector store; raises with a clear message when there is no model."""
    registry = ModelRegistry(settings.model_registry_dir)
    version = settings.model_version or registry.current_version()
    if version is None:
        registry.load()  # raises the "train one first" error
        raise AssertionError("unreachable")
    metadata = registry.metadata(version)
    encoders = settings.serving_encoders(metadata)
    model = registry.load(
        version, expect_embedding_model=encoders.name, expect_dimension=encoders.dimension
    )
    pipeline = make_pipeline(encoders, model)
    store = open_store(settings, pipeline)
    logger.info(
        "serving model %s (vectors: %s, %d-d)", version, pipeline.vector_model, pipeline.dimension
    )
    return Serving(registry, encoders, model, pipeline, store)
