"""Which vector-store errors are worth retrying."""

from __future__ import annotations

import chromadb.errors
import pytest

from ticketflow.adapters.store import VectorStoreError, is_permanent

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "error",
    [
        chromadb.errors.InvalidArgumentError("Collection expecting embedding with dimension 256"),
        chromadb.errors.NotFoundError("Collection [tickets] does not exist"),
        chromadb.errors.AuthorizationError("forbidden"),
        VectorStoreError("collection holds vectors of another model"),
    ],
)
def test_permanent(error: Exception) -> None:
    assert is_permanent(error)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("connection refused"),
        TimeoutError("timed out"),
        chromadb.errors.InternalError("Error executing plan: Internal error: Error finding id"),
        RuntimeError("Error finding id"),
    ],
)
def test_transient(error: Exception) -> None:
    assert not is_permanent(error)
