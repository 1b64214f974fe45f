"""A real single-node KRaft Apache Kafka broker run from Maven Central jars.

No Docker, no Kafka distribution tarball: ``mvn dependency:copy-dependencies`` resolves
``org.apache.kafka:kafka_2.13`` (plus a log4j2 binding) into a cache directory, and the broker
is started with ``java -cp 'lib/*' kafka.Kafka server.properties`` as a detached process.

Layout::

    cache_dir/kafka-<version>/pom.xml, lib/*.jar, .complete      (shared, downloaded once)
    state_dir/kafka/server.properties, log4j2.yaml, broker.log, broker.pid, data/

The data directory survives ``down()``/``up()``; storage is formatted only when
``data/meta.properties`` is missing.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_KAFKA_VERSION = "4.1.2"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")

_MARKER = ".complete"
_LOG_TAIL_LINES = 40
_MVN_HINT = (
    "Apache Maven ('mvn') is required to fetch the Kafka jars from Maven Central; "
    "install it (Debian/Ubuntu: 'apt-get install maven', macOS: 'brew install maven') "
    "and make sure it is on PATH."
)
_JAVA_HINT = (
    "A Java runtime ('java', 17 or newer) is required to run the local Kafka broker; "
    "install one (Debian/Ubuntu: 'apt-get install openjdk-17-jre-headless', "
    "macOS: 'brew install openjdk@17') and make sure it is on PATH."
)


class BrokerError(RuntimeError):
    """The local broker could not be provisioned, started or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until a TCP connection to ``host:port`` succeeds; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if _port_open(host, port):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (racy by nature; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_bindable(host: str, port: int) -> bool:
    """True unless something is already listening on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same as the JVM's server sockets: TIME_WAIT leftovers must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def _random_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``: URL-safe base64 of a v4 UUID, no padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):  # Kafka's Uuid.randomUuid() rejects these too
            return cid


def _tail(path: Path, offset: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) if text else "(log is empty)"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _resource_text(name: str) -> str:
    return (
        resources.files(__package__ or "ticketflow.devtools.kafka")
        .joinpath(name)
        .read_text("utf-8")
    )


@dataclass(frozen=True)
class ScramListener:
    """A SASL_PLAINTEXT listener on ``port`` with SCRAM-SHA-256/512 ``users`` (name ->
    password), created at format time: for testing authenticated clients."""

    port: int
    users: Mapping[str, str]

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("a SCRAM listener needs at least one user")


class LocalKafkaBroker:
    """One single-node KRaft broker (combined broker+controller) listening on ``host`` only."""

    def __init__(
        self,
        *,
        version: str,
        cache_dir: Path,
        state_dir: Path,
        port: int,
        controller_port: int,
        heap: str = "512m",
        host: str = "127.0.0.1",
        scram: ScramListener | None = None,
    ) -> None:
        """``scram`` adds a SASL_PLAINTEXT listener with SCRAM users."""
        if port == controller_port:
            raise ValueError("port and controller_port must differ")
        self.sasl_port = scram.port if scram is not None else None
        self.scram_users = dict(scram.users) if scram is not None else {}
        self.version = version
        self.cache_dir = Path(cache_dir).expanduser().resolve()
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.host = host
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ paths
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def home(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}"

    @property
    def lib_dir(self) -> Path:
        return self.home / "lib"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.kafka_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.kafka_dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.kafka_dir / "log4j2.yaml"

    # ------------------------------------------------------------------ jars
    def ensure_jars(self) -> Path:
        """Download the broker jars into ``cache_dir/kafka-<version>/lib`` once; return that dir."""
        if (self.home / _MARKER).exists():
            return self.lib_dir
        self._require_tool("java", _JAVA_HINT)
        mvn = self._require_tool("mvn", _MVN_HINT)
        with _file_lock(self.home / ".lock"):
            if (self.home / _MARKER).exists():  # another process finished it meanwhile
                return self.lib_dir
            started = time.monotonic()
            pom = self.home / "pom.xml"
            pom.write_text(_resource_text("pom.xml"), encoding="utf-8")
            partial = self.home / "lib.partial"
            shutil.rmtree(partial, ignore_errors=True)
            cmd = [
                mvn, "-q", "-B", "-f", str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={partial}",
                "-DincludeScope=runtime",
                f"-Dkafka.version={self.version}",
            ]  # fmt: skip
            logger.info("fetching Kafka %s jars with Maven into %s", self.version, self.lib_dir)
            proc = subprocess.run(
                cmd, cwd=self.home, capture_output=True, text=True, check=False, timeout=900
            )
            if proc.returncode != 0 or not any(partial.glob(f"kafka_2.13-{self.version}.jar")):
                output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
                raise BrokerError(
                    f"fetching Kafka {self.version} jars failed (mvn exit {proc.returncode}):\n"
                    f"{output or '(no output)'}"
                )
            shutil.rmtree(self.lib_dir, ignore_errors=True)
            partial.rename(self.lib_dir)
            (self.home / _MARKER).write_text(f"{self.version}\n", encoding="utf-8")
            logger.info(
                "Kafka %s jars ready in %.1fs (%s)",
                self.version, time.monotonic() - started, self.lib_dir,
            )  # fmt: skip
        return self.lib_dir

    @staticmethod
    def _require_tool(name: str, hint: str) -> str:
        path = shutil.which(name)
        if path is None:
            raise BrokerError(f"'{name}' not found on PATH. {hint}")
        return path

    # ------------------------------------------------------------------ config
    def server_properties(self) -> dict[str, str]:
        properties = self._plaintext_properties()
        if self.sasl_port is not None:
            sasl = f"SASL_PLAINTEXT://{self.host}:{self.sasl_port}"
            jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            properties["listeners"] += f",{sasl}"
            properties["advertised.listeners"] += f",{sasl}"
            properties["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            properties["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
            for mechanism in SCRAM_MECHANISMS:
                key = f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config"
                properties[key] = jaas
        return properties

    @property
    def sasl_bootstrap(self) -> str | None:
        return f"{self.host}:{self.sasl_port}" if self.sasl_port is not None else None

    def _plaintext_properties(self) -> dict[str, str]:
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
        }

    def _write_config(self) -> None:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# written by ticketflow.devtools.kafka.local_broker; regenerated on every up()"]
        lines += [f"{key}={value}" for key, value in self.server_properties().items()]
        self.properties_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log4j_file.write_text(_resource_text("log4j2.yaml"), encoding="utf-8")

    def _java_base(self, heap: str) -> list[str]:
        java = self._require_tool("java", _JAVA_HINT)
        return [
            java,
            f"-Xmx{heap}",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp",
            str(self.lib_dir / "*"),
        ]

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _random_cluster_id()
        cmd = [
            *self._java_base("256m"),
            STORAGE_TOOL_CLASS, "format",
            "-t", cluster_id,
            "-c", str(self.properties_file),
        ]  # fmt: skip
        for name, password in self.scram_users.items():
            for mechanism in SCRAM_MECHANISMS:
                cmd += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        logger.info("formatting KRaft storage in %s (cluster id %s)", self.data_dir, cluster_id)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0 or not (self.data_dir / "meta.properties").exists():
            output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
            raise BrokerError(
                f"formatting Kafka storage failed (exit {proc.returncode}):\n{output}"
            )

    # ------------------------------------------------------------------ process
    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def _pid_alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None  # also reaps our own child
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # someone else's process: a recycled pid, not our broker
        proc_dir = Path("/proc") / str(pid)
        if proc_dir.is_dir():  # Linux: guard against zombies and recycled pids
            try:
                stat = (proc_dir / "stat").read_text()
                if stat.rpartition(")")[2].split()[0] == "Z":
                    return False
                cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
            except OSError:
                return False
            return MAIN_CLASS.encode() in cmdline and str(self.properties_file).encode() in cmdline
        return True

    def _live_pid(self) -> int | None:
        pid = self._read_pid()
        return pid if pid is not None and self._pid_alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        running = pid is not None and _port_open(self.host, self.port)
        return BrokerStatus(
            running=running,
            pid=pid,
            bootstrap=self.bootstrap,
            data_dir=self.data_dir,
            log_file=self.log_file,
        )

    def up(self, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker (idempotent) and wait until its client port accepts connections."""
        existing = self._live_pid()
        if existing is not None:
            if wait_for_port(self.host, self.port, timeout):
                return self.status()
            raise BrokerError(
                f"Kafka broker pid {existing} is running but {self.bootstrap} did not open "
                f"within {timeout:.0f}s; last log lines of {self.log_file}:\n{_tail(self.log_file)}"
            )
        self.pid_file.unlink(missing_ok=True)

        started = time.monotonic()
        self.ensure_jars()
        for port in (
            self.port,
            self.controller_port,
            *([self.sasl_port] if self.sasl_port else []),
        ):
            if not _port_bindable(self.host, port):
                raise BrokerError(
                    f"cannot start the local Kafka broker: {self.host}:{port} is already in use "
                    "(another broker or service?); pick other ports"
                )
        self._write_config()
        self._format_storage()

        cmd = [*self._java_base(self.heap), MAIN_CLASS, str(self.properties_file)]
        with self.log_file.open("ab") as log:
            offset = log.tell()
            header = f"\n===== starting Kafka {self.version} at {time.ctime()} =====\n"
            log.write(header.encode())
            log.flush()
            offset += len(header.encode())
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.kafka_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid = self._proc.pid
        self.pid_file.write_text(f"{pid}\n", encoding="utf-8")
        logger.info("started Kafka %s broker pid %d on %s", self.version, pid, self.bootstrap)

        deadline = started + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"Kafka broker exited with code {code} before {self.bootstrap} opened; "
                    f"last log lines of {self.log_file}:\n{_tail(self.log_file, offset)}"
                )
            if _port_open(self.host, self.port):
                break
            if time.monotonic() >= deadline:
                tail = _tail(self.log_file, offset)
                self.down(timeout=10.0)
                raise BrokerError(
                    f"Kafka broker did not open {self.bootstrap} within {timeout:.0f}s; "
                    f"last log lines of {self.log_file}:\n{tail}"
                )
            time.sleep(0.1)
        logger.info(
            "Kafka broker ready on %s after %.1fs", self.bootstrap, time.monotonic() - started
        )
        return self.status()

    def down(self, timeout: float = 30.0) -> BrokerStatus:
        """SIGTERM the broker, SIGKILL it after ``timeout`` seconds; fine if it is not running."""
        pid = self._live_pid()
        if pid is not None:
            logger.info("stopping Kafka broker pid %d", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                logger.warning(
                    "Kafka broker pid %d ignored SIGTERM for %.0fs; killing", pid, timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # its own session: pid == pgid
                if not self._wait_exit(pid, 10.0):
                    raise BrokerError(f"Kafka broker pid {pid} survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        return self.status()

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True
