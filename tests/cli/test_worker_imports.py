"""The worker imports only what it runs: cold start is dominated by imports."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY_UNUSED = [
    "torch",
    "sentence_transformers",
    "transformers",
    "evidently",
    "matplotlib",
    "pandas",
]


def test_worker_modules_do_not_import_torch_or_evidently() -> None:
    code = (
        "import sys, ticketflow.cli\n"
        "ticketflow.cli.build_parser()\n"
        "from ticketflow.cli.worker import skip_unused_imports\n"
        "skip_unused_imports()  # what `ticketflow worker` does first\n"
        "import ticketflow.stream.app, ticketflow.runtime.loading, ticketflow.stream.worker\n"
        "import ticketflow.models.onnx_encoder, ticketflow.models.static_encoder\n"
        "import ticketflow.models.encoders\n"
        f"print(sorted(m for m in {HEAVY_UNUSED!r} if sys.modules.get(m) is not None))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"the worker path imported {out.strip()}"
