"""Execute the notebooks headless (``make notebooks``, tests/test_notebooks.py).

    .venv/bin/python notebooks/run.py [--out reports/notebooks] [NOTEBOOK.ipynb ...]

Each notebook runs in a fresh kernel from the repository root (as the ``ticketflow`` commands
do, so ``.env`` applies) and is written, with its outputs, to ``OUT/NAME.ipynb``; what it
writes itself goes to ``OUT/NAME/``. The run fails (exit 1) on any error output. Parameters
reach the kernels as environment variables (docs/reports.md, "Notebooks"):
``TICKETFLOW_NOTEBOOK_DATA``, ``_TARGETS``, ``_MAP``, ``_ROWS``, ``_ENCODERS``, ``_BACKEND``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 600


class NotebookError(RuntimeError):
    """A notebook raised, or left an error output."""


def error_outputs(notebook: Any) -> list[str]:
    """``ename: evalue`` of every error output of the notebook's code cells."""
    return [
        f"{output.get('ename', 'error')}: {output.get('evalue', '')}"
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def execute(path: Path, out_dir: Path) -> Any:
    """Run ``path`` in a fresh kernel; write the executed copy to ``out_dir/NAME.ipynb``
    (also when it fails, to read the traceback) and return it."""
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = nbformat.read(path, as_version=4)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The notebooks read their parameters and their output folder from the environment.
    env = {**os.environ, "TICKETFLOW_NOTEBOOK_OUT": str(out_dir.resolve())}
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="ticketflow-kernel-") as sockets:
        # Unix sockets in a private folder instead of TCP on localhost: no port to find, no
        # other local user can reach the kernel (and ipykernel does not warn about it).
        kernel = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=f"{sockets}/kernel")
        client = NotebookClient(
            notebook,
            km=kernel,
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(REPO)}},
        )
        try:
            # cleanup_kc: shut the kernel down although its manager was passed in.
            client.execute(cleanup_kc=True, env=env)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            # The error output names it (below); a timeout or a dead kernel leaves none.
            lines = str(exc).strip().splitlines()
            failure = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
        finally:
            nbformat.write(notebook, out_dir / path.name)
    errors = error_outputs(notebook)
    if failure or errors:
        raise NotebookError(
            f"{path.name}: {'; '.join(errors) or failure} (see {out_dir / path.name})"
        )
    return notebook


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    parser.add_argument(
        "--out", type=Path, default=REPO / "reports" / "notebooks", help="output folder"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    failed = 0
    for path in args.notebooks or NOTEBOOKS:
        started = time.perf_counter()
        try:
            execute(path, args.out)
        except NotebookError as exc:
            failed += 1
            print(f"FAILED {exc}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - started
        print(f"ok {path.name}: {seconds:.1f} s -> {args.out / path.name}")
    if failed:
        print(f"{failed} notebook(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
