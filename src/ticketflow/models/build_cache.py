"""Derived model files (ONNX exports, distilled static models) built once per machine.

They must travel with the model registry (a worker verifies them against the model's
metadata), but building them takes a minute; so each is built into ``CACHE_DIR/encoders``
and copied into the registry that needs it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


def materialise(
    directory: Path,
    *,
    marker: str,
    build: Callable[[Path], object],
    cache_root: Path | None,
) -> Path:
    """``directory`` with ``marker`` in it: copied from the cache, or built (into the cache)."""
    if (directory / marker).is_file():
        return directory
    if cache_root is None:
        build(directory)
        return directory
    cached = cache_root / directory.name
    if not (cached / marker).is_file():
        build(cached)
    with atomic_directory(directory) as work:
        shutil.copytree(cached, work, dirs_exist_ok=True)
    logger.info("copied %s from the cache %s", directory.name, cache_root)
    return directory


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A temporary sibling of ``target`` that replaces it when the block succeeds.

    A crash half-way never leaves a partial directory that a worker would load.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield work
        if target.exists():
            shutil.rmtree(target)
        work.replace(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
