"""Heavy, once-per-process resources of a worker: encoder, model, vector store."""

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
class Runtime:
    pipeline: LabelingPipeline
    model: LoadedModel
    store: ChromaVectorStore
    encoders: ServingEncoders

    @property
    def model_version(self) -> str:
        return self.model.metadata.version


def load_runtime(settings: Settings) -> Runtime:
    """Load everything a worker needs; raises with a clear message when something is missing."""
    registry = ModelRegistry(settings.model_registry_dir)
    # Read the metadata first so a missing model fails before the slow encoder load.
    version = settings.model_version or registry.current_version()
    metadata = registry.metadata(version) if version else None
    if metadata is None:
        registry.load()  # raises the "train one first" error
        raise AssertionError("unreachable")
    if metadata.embedding_backend != settings.embedding_backend:
        logger.warning(
            "model %s was trained with the %s backend; EMBEDDING_BACKEND=%s is ignored for "
            "serving (vectors must come from the backend the model was fitted on)",
            metadata.version,
            metadata.embedding_backend,
            settings.embedding_backend,
        )
    encoder = settings.serving_encoders(metadata)
    if metadata.embedding_model != settings.embedding_model:
        logger.warning(
            "model %s was trained with %s; EMBEDDING_MODEL=%s is ignored for serving",
            metadata.version,
            metadata.embedding_model,
            settings.embedding_model,
        )
    model = registry.load(
        metadata.version,
        expect_embedding_model=encoder.name,
        expect_dimension=encoder.dimension,
    )
    pipeline = make_pipeline(encoder, model)
    store = ChromaVectorStore(
        settings.chroma_client(),
        settings.chroma_collection,
        embedding_model=pipeline.vector_model,
        dimension=pipeline.dimension,
    )
    logger.info("runtime ready: model %s, encoder %s", metadata.version, encoder.name)
    return Runtime(pipeline=pipeline, model=model, store=store, encoders=encoder)
