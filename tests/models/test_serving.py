from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from ticketflow.models.registry import ModelMetadata, ModelVerificationError
from ticketflow.models.serving import ServingEncoders

pytestmark = pytest.mark.unit


def metadata(**changes: object) -> ModelMetadata:
    base = ModelMetadata(
        version="v1",
        created_at=datetime.now(UTC),
        targets=["queue"],
        labels={"queue": ["a", "b"]},
        embedding_model="test/hashing",
        embedding_dimension=256,
        max_text_chars=1000,
    )
    return base.model_copy(update=changes)


def test_a_model_of_the_same_encoder_and_space_is_accepted(tmp_path: Path) -> None:
    encoders = ServingEncoders(HashingEncoder(), registry_dir=tmp_path)
    encoders.vector_model = "test/hashing"
    encoders.check(metadata())
    assert encoders.static_for(metadata()) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"embedding_model": "other/model"}, "embedding model"),
        ({"embedding_backend": "onnx-int8"}, "backend"),
        ({"static_model": "model2vec:test/hashing"}, "vector store holds"),
    ],
)
def test_a_model_needing_another_encoder_or_space_is_refused(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    encoders = ServingEncoders(HashingEncoder(), registry_dir=tmp_path)
    encoders.vector_model = "test/hashing"
    with pytest.raises(ModelVerificationError, match=message):
        encoders.check(metadata(**changes))


def test_a_cascade_model_without_its_static_files_is_refused(tmp_path: Path) -> None:
    encoders = ServingEncoders(HashingEncoder(), registry_dir=tmp_path)
    with pytest.raises(ModelVerificationError, match="static model"):
        encoders.static_for(metadata(static_model="model2vec:test/hashing"))
