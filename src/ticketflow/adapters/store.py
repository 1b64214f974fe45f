"""ChromaDB: one vector per ticket id, with its labels as metadata; written and searched."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ticketflow.schemas import store as layout
from ticketflow.schemas.store import FloatMatrix, MetadataValue

logger = logging.getLogger(__name__)


class VectorStoreError(RuntimeError):
    """A vector-store problem that retrying cannot fix (its message says what to change)."""


# Errors that come back the same on every try: a wrong dimension or argument, a missing
# collection, refused credentials. Retrying them would stall a partition forever; they must
# fail with their reason. Everything else (connection refused, timeouts, a server restarting,
# the embedded store's transient "Error finding id") is worth another try.
_PERMANENT_NAMES = frozenset(
    {
        "AuthorizationError",
        "ChromaAuthError",
        "InvalidArgumentError",
        "InvalidDimensionException",
        "InvalidUUIDError",
        "NotFoundError",
        "VersionMismatchError",
        "BatchSizeExceededError",
        "DuplicateIDError",
    }
)


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying ``exc`` is pointless (see ``_PERMANENT_NAMES``)."""
    if isinstance(exc, VectorStoreError | TypeError):
        return True
    return any(cls.__name__ in _PERMANENT_NAMES for cls in type(exc).__mro__)


@dataclass(frozen=True)
class Neighbour:
    """One search result: a stored ticket and its cosine distance to the query."""

    ticket_id: str
    distance: float
    metadata: dict[str, Any]
    document: str | None = None


@dataclass(frozen=True)
class StoredRecord:
    ticket_id: str
    metadata: dict[str, Any]
    vector: npt.NDArray[np.float32] | None = None
    document: str | None = None


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

    def records(
        self, ids: Sequence[str], *, vectors: bool = False, documents: bool = False
    ) -> dict[str, StoredRecord]:
        """The stored records of ``ids`` that exist, by id (missing ids are left out)."""
        if not ids:
            return {}
        include = ["metadatas"]
        if vectors:
            include.append("embeddings")
        if documents:
            include.append("documents")
        result = self.collection.get(ids=list(dict.fromkeys(ids)), include=include)
        return {record.ticket_id: record for record in _records(result, vectors, documents)}

    def pages(
        self, page_size: int = 1_000, *, vectors: bool = False, documents: bool = False
    ) -> Iterator[list[StoredRecord]]:
        """Every record, ``page_size`` at a time (offset paging: a store written to meanwhile
        may shift under it)."""
        include = ["metadatas"]
        if vectors:
            include.append("embeddings")
        if documents:
            include.append("documents")
        offset = 0
        while True:
            page = self.collection.get(include=include, limit=page_size, offset=offset)
            if not page["ids"]:
                return
            yield list(_records(page, vectors, documents))
            offset += len(page["ids"])

    def held_ids(self) -> list[str]:
        """The ids of every record held for review whose labels are still the model's (not a
        person's, not a historical file's). Ids only: reading 30,000 of them from 100,000
        records takes a few hundred milliseconds; their metadata, by id (:meth:`records`,
        in chunks), ten times that."""
        where = {
            "$and": [
                {"needs_review": True},
                {layout.LABEL_SOURCE: layout.LabelSource.MODEL.value},
            ]
        }
        return [str(i) for i in self.collection.get(where=where, include=[])["ids"]]

    def query(
        self,
        vectors: FloatMatrix,
        k: int,
        *,
        where: Mapping[str, MetadataValue] | None = None,
        documents: bool = False,
    ) -> list[list[Neighbour]]:
        """The ``k`` nearest stored tickets of each query vector, nearest first.

        ``where``: metadata equality filters, all of which must hold (e.g. ``{"queue":
        "Billing"}``)."""
        matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if matrix.shape[0] == 0 or k <= 0:
            return [[] for _ in range(matrix.shape[0])]
        include = ["metadatas", "distances"]
        if documents:
            include.append("documents")
        result = self.collection.query(
            query_embeddings=matrix,
            n_results=k,
            where=_where(where),
            include=include,
        )
        found: list[list[Neighbour]] = []
        for row, ids in enumerate(result["ids"]):
            distances = result["distances"][row]
            metadatas = result["metadatas"][row]
            docs = (result.get("documents") or [None] * len(result["ids"]))[row]
            found.append(
                [
                    Neighbour(
                        ticket_id=str(ticket_id),
                        distance=float(distances[i]),
                        metadata=dict(metadatas[i] or {}),
                        document=docs[i] if docs is not None else None,
                    )
                    for i, ticket_id in enumerate(ids)
                ]
            )
        return found


def _where(filters: Mapping[str, MetadataValue] | None) -> dict[str, Any] | None:
    """Chroma's filter syntax: one condition as is, several under ``$and``."""
    if not filters:
        return None
    conditions = [{key: value} for key, value in filters.items()]
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def _records(result: Mapping[str, Any], vectors: bool, documents: bool) -> Iterator[StoredRecord]:
    ids = result["ids"]
    metadatas = result.get("metadatas") or [None] * len(ids)
    embeddings = result.get("embeddings") if vectors else None
    docs = result.get("documents") if documents else None
    for i, ticket_id in enumerate(ids):
        yield StoredRecord(
            ticket_id=str(ticket_id),
            metadata=dict(metadatas[i] or {}),
            vector=np.asarray(embeddings[i], dtype=np.float32) if embeddings is not None else None,
            document=docs[i] if docs is not None else None,
        )
