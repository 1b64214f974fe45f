"""MLflow tracking against a real MLflow server started here (SQLite store): ``train`` and
``retrain`` appear as runs with their metrics, registered versions carry the ``champion`` /
``challenger`` aliases and a promotion moves ``champion``; a server that is down costs one
warning, never the training.

The server is the full ``mlflow`` package, which pins older cryptography, pyarrow and
python-dateutil than ticketflow's environment holds, so it runs from an environment of its
own: ``$MLFLOW_SERVER_COMMAND`` (e.g. ``/opt/mlflow/bin/mlflow``), else ``uv tool run --from
mlflow==<the client's version> mlflow`` (uv caches it after the first run). ticketflow itself
needs only ``mlflow-skinny`` (the ``[mlflow]`` extra).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder, open_store
from ticketflow.batch import tracking
from ticketflow.batch.backfill import BackfillRequest, backfill
from ticketflow.cli.main import main
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import ModelRegistry

# The server's version: the client's (pyproject pins mlflow-skinny below 3.18, whose server
# cannot be installed from PyPI), whatever the client resolved to within that range.
SERVER_VERSION = metadata.version("mlflow-skinny")
SERVER_START_S = 300  # the first `uv tool run` installs the server's environment


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _uv_module() -> list[str]:
    """uv as `make install` may leave it: pip-installed for the system Python, off PATH."""
    for python in ("python3", "python"):
        interpreter = shutil.which(python)
        if interpreter is None:
            continue
        probe = subprocess.run(
            [interpreter, "-m", "uv", "--version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return [interpreter, "-m", "uv"]
    return []


def _server_command() -> list[str]:
    configured = os.environ.get("MLFLOW_SERVER_COMMAND")
    if configured:
        return shlex.split(configured)
    uv = [found] if (found := shutil.which("uv")) else _uv_module()
    assert uv, (
        "the MLflow server runs from its own environment: set MLFLOW_SERVER_COMMAND to an "
        "`mlflow` executable of the full mlflow package, or install uv"
    )
    return [*uv, "tool", "run", "--from", f"mlflow=={SERVER_VERSION}", "mlflow"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            *_server_command(),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while tracking.reachable(uri, timeout_s=2) is not None:
            assert process.poll() is None, (root / "server.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the MLflow server did not answer /health"
            time.sleep(1)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str) -> Path:
    data = tmp_path / "t.jsonl"
    data.write_text("\n".join(json.dumps(t) for t in generate_tickets(200, seed=4)) + "\n")
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name, value in {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT": f"test-{tmp_path.name}",
        "MLFLOW_MODEL_NAME": f"ticketflow-{tmp_path.name}",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}",  # no broker: a warning
        "MODEL_REGISTRY_DIR": str(tmp_path / "models"),
        "DRIFT_REFERENCE_DIR": str(tmp_path / "reference"),
        "RETRAIN_REPORT_DIR": str(tmp_path / "reports"),
        "CHROMA_PATH": str(tmp_path / "chroma"),
        "CHROMA_DOCUMENT": "full",
        "CASCADE": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    monkeypatch.setattr("ticketflow.batch.configured.encoder", lambda *a, **k: HashingEncoder())
    monkeypatch.setattr("ticketflow.cli.models.ANNOUNCE_TIMEOUT_S", 0.5)
    return data


def _fill_store(tmp_path: Path, data: Path) -> None:
    """The training file, backfilled into the store with the current model: what retrain
    learns from (imported labels count as people's)."""
    registry = ModelRegistry(tmp_path / "models")
    loaded = registry.load()
    encoder = HashingEncoder()
    pipeline = LabelingPipeline(encoder, loaded.classifier, max_text_chars=1000)
    store = open_store(tmp_path, pipeline)
    backfill(
        BackfillRequest(data, document="full"),
        pipeline=pipeline,
        store=store,
        model_version=loaded.metadata.version,
        progress=False,
    )


@pytest.mark.integration
@pytest.mark.slow
def test_train_retrain_and_promotion_appear_in_mlflow(
    server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow import MlflowClient

    data = _env(tmp_path, monkeypatch, server)
    registry = ModelRegistry(tmp_path / "models")
    name = f"ticketflow-{tmp_path.name}"
    client = MlflowClient(tracking_uri=server, registry_uri=server)

    assert main(["train", "--data", str(data), "--target", "queue"]) == 0
    first = registry.current_version()
    assert first is not None
    assert "MLflow run " in capsys.readouterr().out
    assert (
        main(["train", "--data", str(data), "--target", "queue", "--no-promote", "--seed", "7"])
        == 0
    )
    second = next(v for v in registry.versions() if v != first)
    _fill_store(tmp_path, data)
    assert main(["retrain", "--force", "--no-promote"]) == 0
    third = next(v for v in registry.versions() if v not in (first, second))

    experiment = client.get_experiment_by_name(f"test-{tmp_path.name}")
    assert experiment is not None
    runs = {
        run.data.tags[tracking.VERSION_TAG]: run
        for run in client.search_runs([experiment.experiment_id])
    }
    assert set(runs) == {first, second, third}
    trained = runs[first]
    assert trained.data.tags["ticketflow.command"] == "train"
    assert trained.data.metrics["queue.accuracy"] == pytest.approx(
        registry.metadata(first).metrics["queue"]["accuracy"]
    )
    assert "queue.macro_f1" in trained.data.metrics and "queue.ece" in trained.data.metrics
    assert trained.data.params["ticketflow_version"] == first
    assert trained.data.params["seed"] == "42"
    artifacts = {a.path for a in client.list_artifacts(trained.info.run_id, "ticketflow")}
    assert {"ticketflow/metadata.json", "ticketflow/confusion-queue.png"} <= artifacts
    retrained = runs[third]
    assert retrained.data.tags["ticketflow.command"] == "retrain"
    assert retrained.data.params["decision"] == "forced"
    assert "queue.macro_f1" in retrained.data.metrics
    assert any(".champion.queue.macro_f1" in key for key in retrained.data.metrics)

    def alias(which: str) -> str:
        found = client.get_model_version_by_alias(name, which)
        return str(found.tags[tracking.VERSION_TAG])

    assert alias(tracking.CHAMPION) == first
    assert alias(tracking.CHALLENGER) == third  # the latest trained and not current

    assert main(["models", "promote", second, "--reason", "test"]) == 0
    assert alias(tracking.CHAMPION) == second
    assert main(["models", "rollback", "--reason", "test"]) == 0
    assert alias(tracking.CHAMPION) == first
    assert registry.current_version() == first  # ticketflow's pointer is the truth


@pytest.mark.unit
def test_a_tracking_server_that_is_down_costs_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _env(tmp_path, monkeypatch, f"http://127.0.0.1:{_free_port()}")
    assert main(["train", "--data", str(data), "--target", "queue"]) == 0
    out, err = capsys.readouterr()
    assert "registered model" in out and "MLflow run" not in out
    lines = [line for line in err.splitlines() if "MLflow at http://127.0.0.1" in line]
    assert len(lines) == 1 and "unreachable" in lines[0] and "not logged" in lines[0]
    assert ModelRegistry(tmp_path / "models").current_version() is not None


@pytest.mark.unit
def test_the_worker_never_imports_mlflow() -> None:
    """The glue is imported lazily: the worker's modules must not reach for mlflow."""
    code = (
        "import sys, ticketflow.stream.worker, ticketflow.cli.main; print('mlflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.stdout.strip() == "False"


@pytest.mark.unit
def test_metrics_are_flattened_with_valid_keys() -> None:
    numbers = tracking.flat_metrics(
        {
            "queue": {
                "accuracy": 0.5,
                "per_class": {"a": {"f1-score": 1.0}},
                "auto_route": {"0.80": {"coverage": 0.3}},
                "odd": float("nan"),
                "ok": True,
            },
            "Topic (é)": {"macro_f1": 0.25},
        }
    )
    assert numbers == {
        "queue.accuracy": 0.5,
        "queue.auto_route.0.80.coverage": 0.3,
        "Topic ___.macro_f1": 0.25,
    }
