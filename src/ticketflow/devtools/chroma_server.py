"""A ChromaDB server for local runs: ``chroma run`` (the CLI the chromadb package installs)
on a free port with its data in a given folder, in its own process group.

The server mode is what several processes share in production (``CHROMA_HOST``): the
worker, ``serve`` and the retrain Job. Tests (``tests/fixtures/chroma.py``) and benchmarks
(``bench.loop --broker``) run the product against it through the same settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ticketflow.devtools.kafka.local_broker import free_port

START_TIMEOUT_S = 60.0


@dataclass
class ChromaServer:
    """``chroma run --path PATH --host 127.0.0.1 --port PORT`` in its own process group."""

    path: Path
    log: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings that point ticketflow at this server (config.Settings)."""
        return {"CHROMA_HOST": self.host, "CHROMA_PORT": str(self.port)}

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        # The CLI sits next to the interpreter in the venv; PATH may not have it.
        binary = Path(sys.executable).parent / "chroma"
        command = [
            str(binary), "run",
            "--path", str(self.path), "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        handle = self.log.open("ab")
        # Telemetry off: CI has no internet and the tests must not wait on it.
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        try:
            self.process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        except OSError as exc:  # no `chroma` next to the interpreter: chromadb not installed
            raise RuntimeError(f"cannot run {binary}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"chroma server exited {self.process.returncode}:\n{self.tail()}"
                )
            if self.heartbeat():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma server not answering after {timeout:.0f}s:\n{self.tail()}")

    def heartbeat(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def tail(self, lines: int = 40) -> str:
        if not self.log.is_file():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
