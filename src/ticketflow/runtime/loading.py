"""Load what serves a model: the served version on the encoders it was trained with, its
pipeline and the vector store of its vector space.

The worker, ``ticketflow serve``, ``ticketflow backfill`` and ``ticketflow similar`` all load
here, so they embed exactly as the worker does and search the collection the worker writes.
The ChromaDB client and the encoders are built here from one ``Settings``, not in
:mod:`ticketflow.config`, which only reads settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.config import Settings
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import LoadedModel, ModelMetadata, ModelRegistry
from ticketflow.models.serving import ServingEncoders, make_pipeline
from ticketflow.models.serving import serving_encoders as load_serving_encoders

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The served model, loaded once per process."""

    registry: ModelRegistry
    encoders: ServingEncoders
    model: LoadedModel
    pipeline: LabelingPipeline
    store: ChromaVectorStore

    @property
    def model_version(self) -> str:
        return self.model.metadata.version


def chroma_client(settings: Settings) -> Any:
    """The ChromaDB client the settings name: a server (CHROMA_HOST) or embedded."""
    token = settings.chroma_auth_token
    return open_chroma_client(
        host=settings.chroma_host,
        port=settings.chroma_port,
        path=settings.chroma_path,
        auth_token=token.get_secret_value() if token else None,
    )


def serving_encoders(
    settings: Settings, metadata: ModelMetadata, *, text_cache: bool = True
) -> ServingEncoders:
    """The encoders ``metadata``'s model was trained with, loaded as configured (device, batch
    size, threads, the text cache unless ``text_cache`` is off)."""
    return load_serving_encoders(
        metadata,
        registry_dir=settings.model_registry_dir,
        cache_dir=settings.cache_dir,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        threads=settings.torch_threads,
        text_cache_size=settings.text_cache_size if text_cache else 0,
    )


def open_store(settings: Settings, pipeline: LabelingPipeline) -> ChromaVectorStore:
    """The configured collection, declared for ``pipeline``'s vector space."""
    return ChromaVectorStore(
        chroma_client(settings),
        settings.chroma_collection,
        embedding_model=pipeline.vector_model,
        dimension=pipeline.dimension,
    )


def store_location(settings: Settings) -> str:
    """Where the configured ChromaDB is, for messages: ``host:port`` or the embedded path."""
    if settings.chroma_host:
        return f"{settings.chroma_host}:{settings.chroma_port}"
    return str(settings.chroma_path)


def open_written_store(settings: Settings) -> ChromaVectorStore:
    """The configured collection in the vector space it was declared with, for commands that
    read what the worker or backfill wrote and load no model; it is never created here (a
    reader must not declare a vector space)."""
    where = store_location(settings)
    client = chroma_client(settings)
    name = settings.chroma_collection
    try:
        declared: dict[str, Any] = dict(client.get_collection(name).metadata or {})
    except Exception as exc:  # chromadb raises NotFoundError or ValueError by version
        raise RuntimeError(
            f"no collection {name!r} in ChromaDB at {where} (CHROMA_COLLECTION, CHROMA_PATH / "
            f"CHROMA_HOST): run the worker or ticketflow backfill first ({exc})"
        ) from exc
    if "embedding_model" not in declared or "dimension" not in declared:
        raise RuntimeError(f"collection {name!r} at {where} was not written by ticketflow")
    return ChromaVectorStore(
        client,
        name,
        embedding_model=str(declared["embedding_model"]),
        dimension=int(declared["dimension"]),
    )


def load_runtime(settings: Settings) -> Runtime:
    """The served model (``MODEL_VERSION``, else the registry's current one), its pipeline and
    the vector store; raises with a clear message when there is no model."""
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
    if metadata.embedding_model != settings.embedding_model:
        logger.warning(
            "model %s was trained with %s; EMBEDDING_MODEL=%s is ignored for serving",
            metadata.version,
            metadata.embedding_model,
            settings.embedding_model,
        )
    encoders = serving_encoders(settings, metadata)
    model = registry.load(
        metadata.version,
        expect_embedding_model=encoders.name,
        expect_dimension=encoders.dimension,
    )
    pipeline = make_pipeline(encoders, model)
    store = open_store(settings, pipeline)
    logger.info(
        "serving model %s (encoder %s; vectors: %s, %d-d)",
        metadata.version,
        encoders.name,
        pipeline.vector_model,
        pipeline.dimension,
    )
    return Runtime(registry, encoders, model, pipeline, store)
