"""``ticketflow worker`` caps glibc's malloc arenas (WORKER_MALLOC_ARENAS) before its threads
start; the memory it saves is measured by bench.speed (docs/speed.md)."""

import platform
import subprocess
import sys

import pytest

from ticketflow.cli.worker import limit_malloc_arenas
from ticketflow.config import Settings

pytestmark = pytest.mark.unit


def test_the_worker_caps_malloc_arenas_by_default() -> None:
    assert Settings().worker_malloc_arenas == 2


def test_zero_leaves_glibc_alone() -> None:
    assert limit_malloc_arenas(0) is False


def test_an_explicit_malloc_arena_max_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas(2) is False


def test_the_cap_is_applied_where_the_c_library_is_glibc() -> None:
    # In a process of its own: the cap lasts for the life of the process.
    code = (
        "import os; os.environ.pop('MALLOC_ARENA_MAX', None)\n"
        "from ticketflow.cli.worker import limit_malloc_arenas\n"
        "print(limit_malloc_arenas(2))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str(platform.libc_ver()[0] == "glibc")
