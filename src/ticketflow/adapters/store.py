"""ChromaDB sink: one vector per ticket id, with its labels as metadata."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ticketflow.models.embedding import FloatMatrix
from ticketflow.schemas.store import MetadataValue

logger = logging.getLogger(__name__)


class VectorStoreError(RuntimeError):
    pass


class VectorStore(Protocol):
    def upsert(
        self,
        ids: Sequence[str],
        vectors: FloatMatrix,
        metadatas: Sequence[Mapping[str, MetadataValue]],
        documents: Sequence[str] | None = None,
    ) -> None: ...


def open_chroma_client(
    *, host: str | None, port: int, path: Path, auth_token: str | None = None
) -> Any:
    """``HttpClient`` when a host is given (required with several workers), else embedded."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # Telemetry would try to reach the internet from every worker.
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if host and auth_token:
        chroma_settings = ChromaSettings(
            anonymized_telemetry=False,
            chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
            chroma_client_auth_credentials=auth_token,
        )
    if host:
        logger.info("ChromaDB server at %s:%d", host, port)
        return chromadb.HttpClient(host=host, port=port, settings=chroma_settings)
    path.mkdir(parents=True, exist_ok=True)
    logger.info("embedded ChromaDB at %s", path)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class ChromaVectorStore:
    """A collection declared for one embedding model; mixing vector spaces is refused."""

    def __init__(
        self, client: Any, collection: str, *, embedding_model: str, dimension: int
    ) -> None:
        # embedding_function=None: the vectors are ours; Chroma's default would download a model.
        self.collection = client.get_or_create_collection(
            name=collection,
            embedding_function=None,
            metadata={
                "embedding_model": embedding_model,
                "dimension": dimension,
                "hnsw:space": "cosine",
            },
        )
        declared = (self.collection.metadata or {}).get("embedding_model")
        if declared is not None and declared != embedding_model:
            raise VectorStoreError(
                f"collection {collection!r} holds vectors of {declared!r}, "
                f"not {embedding_model!r}; "
                "use another CHROMA_COLLECTION for a different encoder"
            )
        self.dimension = dimension

    def upsert(
        self,
        ids: Sequence[str],
        vectors: FloatMatrix,
        metadatas: Sequence[Mapping[str, MetadataValue]],
        documents: Sequence[str] | None = None,
    ) -> None:
        if not ids:
            return
        self.collection.upsert(
            ids=list(ids),
            embeddings=np.asarray(vectors, dtype=np.float32),
            metadatas=[dict(m) for m in metadatas],
            documents=list(documents) if documents is not None else None,
        )

    def count(self) -> int:
        return int(self.collection.count())

    def get(self, ids: Sequence[str]) -> dict[str, Any]:
        result = self.collection.get(ids=list(ids), include=["metadatas", "embeddings"])
        return dict(result)
