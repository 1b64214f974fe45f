"""Heavy, once-per-process resources of a worker: encoder, model, vector store."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from models.embedding import Encoder, SentenceTransformerEncoder
from models.pipeline import LabelingPipeline
from models.registry import LoadedModel, ModelRegistry
from models.settings import Settings
from stream.vector_store import ChromaVectorStore, open_chroma_client

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    pipeline: LabelingPipeline
    model: LoadedModel
    store: ChromaVectorStore

    @property
    def model_version(self) -> str:
        return self.model.metadata.version


def make_pipeline(encoder: Encoder, model: LoadedModel) -> LabelingPipeline:
    """The serving pipeline of ``model`` on the already-loaded ``encoder``.

    The one place that turns a verified model into a pipeline: the worker's start and its hot
    reload (stream/reload.py) both call it.
    """
    return LabelingPipeline(encoder, model.classifier, max_text_chars=model.metadata.max_text_chars)


def load_runtime(settings: Settings) -> Runtime:
    """Load everything a worker needs; raises with a clear message when something is missing."""
    registry = ModelRegistry(settings.model_registry_dir)
    # Read the metadata first so a missing model fails before the slow encoder load.
    version = settings.model_version or registry.current_version()
    metadata = registry.metadata(version) if version else None
    if metadata is None:
        registry.load()  # raises the "train one first" error
        raise AssertionError("unreachable")
    encoder = SentenceTransformerEncoder(
        metadata.embedding_model,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        threads=settings.torch_threads,
    )
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
    store = ChromaVectorStore(
        open_chroma_client(
            host=settings.chroma_host,
            port=settings.chroma_port,
            path=settings.chroma_path,
            auth_token=(
                settings.chroma_auth_token.get_secret_value()
                if settings.chroma_auth_token
                else None
            ),
        ),
        settings.chroma_collection,
        embedding_model=encoder.name,
        dimension=encoder.dimension,
    )
    pipeline = make_pipeline(encoder, model)
    logger.info("runtime ready: model %s, encoder %s", metadata.version, encoder.name)
    return Runtime(pipeline=pipeline, model=model, store=store)
