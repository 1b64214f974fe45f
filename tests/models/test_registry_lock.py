"""The registry's write lock: a second train/retrain/promotion is refused while one runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ticketflow.models.registry import ModelRegistry, RegistryLockedError

pytestmark = pytest.mark.unit


def test_a_second_holder_is_refused_with_the_lock_path(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    second = ModelRegistry(tmp_path / "registry")
    with (
        registry.lock(),
        pytest.raises(RegistryLockedError, match=r"\.lock"),
        second.lock(),
    ):
        pass
    with registry.lock():  # released: free again
        pass
    assert registry.versions() == []  # the lock file is not a model version


def test_retrain_refuses_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ticketflow.models.registry import ModelRegistry\n"
            f"with ModelRegistry(__import__('pathlib').Path({str(root)!r})).lock():\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        out = subprocess.run(
            [sys.executable, "-m", "ticketflow", "retrain", "--no-promote"],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "MODEL_REGISTRY_DIR": str(root), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 1, out.stderr
    assert "locked by another train, retrain or promotion" in out.stderr
