"""The notebooks (notebooks/NN_*.ipynb): committed without outputs, and executed headless by
notebooks/run.py as ``make notebooks`` runs them, each with no error and at least one plot."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_eda.ipynb", "02_embedding_tests.ipynb", "03_model_experiments.ipynb"]
PARAMETERS = ("DATA", "TARGETS", "MAP", "ROWS", "ENCODERS", "BACKEND", "FOLDS")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _runner() -> ModuleType:
    """notebooks/run.py (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("notebooks_run", REPO / "notebooks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs(notebook: Any) -> list[Any]:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def _sample_parameters(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    """The defaults (generated sample tickets), whatever the caller's environment says."""
    for name in PARAMETERS:
        monkeypatch.delenv(f"TICKETFLOW_NOTEBOOK_{name}", raising=False)
    monkeypatch.setenv("TICKETFLOW_NOTEBOOK_ROWS", str(rows))


@pytest.mark.unit
def test_committed_notebooks_carry_no_outputs_and_no_execution_counts() -> None:
    found = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert found == NOTEBOOKS
    for name in NOTEBOOKS:
        notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code, name
        for cell in code:
            assert cell.outputs == [], f"{name}: a cell has outputs: clear them before committing"
            assert cell.execution_count is None, f"{name}: a cell has an execution count"
        assert notebook.metadata.kernelspec.name == "python3"
        assert "widgets" not in notebook.metadata


@pytest.mark.unit
def test_error_outputs_are_found_even_when_execution_went_on() -> None:
    runner = _runner()
    notebook = new_notebook(
        cells=[
            new_code_cell("1", outputs=[new_output("execute_result", {"text/plain": "1"})]),
            new_code_cell(
                "1/0",
                outputs=[
                    new_output(
                        "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]
                    )
                ],
            ),
        ]
    )
    assert runner.error_outputs(notebook) == ["ZeroDivisionError: division by zero"]


@pytest.mark.slow
def test_the_runner_fails_on_an_error_and_keeps_the_executed_copy(tmp_path: Path) -> None:
    runner = _runner()
    source = tmp_path / "source" / "99_broken.ipynb"
    source.parent.mkdir()
    notebook = new_notebook(cells=[new_code_cell("print('before')"), new_code_cell("1/0")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, source)
    out = tmp_path / "out"
    assert runner.main(["--out", str(out), str(source)]) == 1
    executed = nbformat.read(out / "99_broken.ipynb", as_version=4)
    assert runner.error_outputs(executed) == ["ZeroDivisionError: division by zero"]
    assert executed.cells[0].outputs[0]["text"] == "before\n"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_on_sample_tickets_with_a_plot(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sample_parameters(monkeypatch, rows=600)
    executed = _runner().execute(REPO / "notebooks" / name, tmp_path)
    outputs = _outputs(executed)
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no plot"
    assert all(base64.b64decode(png).startswith(PNG_MAGIC) for png in images)
    assert (tmp_path / name).is_file()  # the executed copy, as make notebooks keeps it
    # The notebook called the command's function: its own files are there, with its numbers.
    written = tmp_path / name.removesuffix(".ipynb")
    if name == "01_eda.ipynb":
        summary = json.loads((written / "summary.json").read_text(encoding="utf-8"))
        assert summary["rows"] == 600 and "queue" in summary["targets"]
        assert (written / "index.html").is_file()
        assert len(images) >= 8  # class balance, lengths, languages, tags, co-occurrence
    elif name == "02_embedding_tests.ipynb":
        report = json.loads((written / "encoders.json").read_text(encoding="utf-8"))
        assert [r["encoder"] for r in report["results"]] == ["onnx-int8", "static"]
        for row in report["results"]:
            assert row["tickets_per_second"] > 0
            # Six queues: chance is about 0.17; every encoder learns them.
            assert all(s["test_macro_f1"] > 0.5 for s in row["targets"]["queue"].values())
        assert len(images) == 2  # speed, then macro-F1 per target
    else:
        report = json.loads((written / "results.json").read_text(encoding="utf-8"))
        scores = {r["candidate"]: r["test"]["macro_f1"] for r in report["results"]}
        assert scores[report["winner"]] > scores["majority class"] + 0.3
        assert len(images) == 3  # reliability, coverage-precision, confusion
        assert all((written / p).is_file() for p in report["plots"]["sample / queue"].values())
