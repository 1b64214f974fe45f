"""The installed command and packages work from any directory, not only the checkout."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def test_project_packages_resolve_to_the_checkout_from_elsewhere(tmp_path: Path) -> None:
    # chromadb installs a namespace directory called `schemas`; ours must win.
    code = "import schemas, models, stream, batch, monitoring; print(schemas.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()).resolve() == REPO / "schemas" / "__init__.py"


def test_console_script_help(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ticketflow"
    out = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("broker", "topics", "worker", "produce", "consume", "sample", "train"):
        assert command in out.stdout
