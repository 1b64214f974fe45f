"""The static encoder reads a distilled directory as model2vec's own loader does."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model2vec import StaticModel
from tokenizers import Tokenizer, models, pre_tokenizers

from ticketflow.models.static_encoder import load_distilled

pytestmark = pytest.mark.unit

WORDS = ["[UNK]", "[PAD]", "vpn", "gateway", "down", "invoice", "refund", "printer", "offline"]
TEXTS = ["VPN gateway down", "refund for invoice", "printer offline again", "nothing known", ""]


def saved_model(directory: Path, *, normalize: bool) -> Path:
    """A small model2vec model saved with model2vec's own ``save_pretrained`` (the layout
    ``distill_static`` writes): float16 vectors, a word-level tokenizer."""
    tokenizer = Tokenizer(
        models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    vectors = np.random.default_rng(0).normal(size=(len(WORDS), 8)).astype(np.float16)
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=normalize).save_pretrained(
        str(directory)
    )
    return directory


@pytest.mark.parametrize("normalize", [True, False])
def test_a_distilled_directory_gives_the_vectors_from_pretrained_gives(
    tmp_path: Path, normalize: bool
) -> None:
    directory = saved_model(tmp_path / "static", normalize=normalize)
    ours = load_distilled(directory)
    theirs = StaticModel.from_pretrained(str(directory))
    assert ours.normalize == theirs.normalize == normalize
    assert ours.dim == theirs.dim == 8
    np.testing.assert_array_equal(ours.encode(TEXTS), theirs.encode(TEXTS))
    assert np.abs(ours.encode(TEXTS[:1])).sum() > 0


def test_loading_a_distilled_directory_leaves_the_hub_client_unimported(tmp_path: Path) -> None:
    directory = saved_model(tmp_path / "static", normalize=True)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ticketflow.models.static_encoder import load_distilled\n"
        f"model = load_distilled(Path({str(directory)!r}))\n"
        "assert model.encode(['vpn down']).shape == (1, 8)\n"
        "hub = ('huggingface_hub', 'model2vec.persistence')\n"
        "print(sorted(m for m in hub if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
