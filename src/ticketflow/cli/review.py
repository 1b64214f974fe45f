"""``ticketflow review export|import``: the review queue through Label Studio and back.

Export writes the held tickets as Label Studio tasks (the model's labels as pre-annotations)
and the labeling config they need; import turns Label Studio's JSON export into feedback
events on ``KAFKA_TOPIC_FEEDBACK``, as the desk and ``ticketflow feedback`` publish them.
Neither loads the model: the served model's classes come from its registry metadata, the
tickets from the vector store the worker writes. Formats and idempotency:
:mod:`ticketflow.review.labelstudio`; the guide: docs/label-studio.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketflow.cli._checks import UsageError, open_registry, require_broker
from ticketflow.cli._types import Commands
from ticketflow.cli._values import COUNT
from ticketflow.config import Settings

if TYPE_CHECKING:  # the handlers import the store and the registry when they run
    from ticketflow.adapters.store import ChromaVectorStore
    from ticketflow.models.registry import ModelMetadata
    from ticketflow.review.labelstudio import ImportLedger
    from ticketflow.schemas import LabelFeedback

logger = logging.getLogger(__name__)

FORMATS = ["label-studio"]
DEFAULT_WHO = "label-studio"  # an annotation whose export does not say who gave it
READ_CHUNK = 1_000  # records read from the store at a time
PUBLISH_CHUNK = 500  # events acknowledged (and written to the ledger) at a time


def register(commands: Commands) -> None:
    review = commands.add_parser(
        "review",
        help="held tickets out to Label Studio, its annotations back in as feedback",
        description="Annotate the review queue in Label Studio: export held tickets as its "
        "tasks with the model's labels as pre-annotations, and import its JSON export as "
        "feedback events (docs/label-studio.md).",
    )
    actions = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write held tickets as Label Studio tasks, and its labeling config",
        description="Write the tickets held for review (smallest review margin first) as "
        "Label Studio import tasks: the stored text, tags and the model's label per target "
        "as a pre-annotation. Reads the vector store and the registry; needs no broker.",
    )
    export.add_argument("--format", choices=FORMATS, default="label-studio")
    export.add_argument("--out", type=Path, help="the tasks JSON file (default: stdout)")
    export.add_argument(
        "--config", type=Path, help="also write the project's labeling config (XML) here"
    )
    export.add_argument("--limit", type=COUNT, help="at most N tickets (default: all held)")
    export.add_argument("--target", help="only tickets whose label of this target is unsure")
    export.set_defaults(handler=run_export)

    imports = actions.add_parser(
        "import",
        help="publish Label Studio's exported annotations as feedback (idempotent)",
        description="Read Label Studio's JSON export (Export > JSON) and publish each task's "
        "latest answer as a LabelFeedback on KAFKA_TOPIC_FEEDBACK, checked as the desk "
        "checks answers. Answers published before are not published again. Exit 2 when "
        "some answers were refused (each is reported with its reason).",
    )
    imports.add_argument("path", type=Path, metavar="FILE", help="Label Studio JSON export")
    imports.add_argument("--format", choices=FORMATS, default="label-studio")
    imports.add_argument(
        "--dry-run",
        action="store_true",
        help="print the events instead of publishing them (no broker needed)",
    )
    imports.set_defaults(handler=run_import)


def served_model(settings: Settings) -> ModelMetadata:
    """The metadata of the served model (``MODEL_VERSION``, else the registry's current one):
    its targets and classes, without loading the model."""
    from ticketflow.models.registry import RegistryError

    registry = open_registry(settings)
    version = settings.model_version or registry.current_version()
    if version is None:
        raise RegistryError(
            f"no current model in {registry.root}: train one first (ticketflow train --data ...)"
        )
    return registry.metadata(version)


def known_classes(metadata: ModelMetadata) -> dict[str, list[str]]:
    return {target: list(metadata.labels.get(target, [])) for target in metadata.targets}


def stored(
    store: ChromaVectorStore, ids: Sequence[str], *, documents: bool = False
) -> dict[str, Any]:
    """The stored records of ``ids``, read a chunk at a time."""
    found: dict[str, Any] = {}
    for start in range(0, len(ids), READ_CHUNK):
        found.update(store.records(ids[start : start + READ_CHUNK], documents=documents))
    return found


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` at once (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.review import labelstudio
    from ticketflow.review.queue import Order, ReviewQueue
    from ticketflow.runtime.loading import open_written_store

    served = served_model(settings)
    known = known_classes(served)
    if args.target is not None and args.target not in known:
        raise UsageError(
            f"--target {args.target!r}: not a target of the served model {served.version} "
            f"({', '.join(known)})"
        )
    config = labelstudio.label_config(known)
    store = open_written_store(settings)
    queue = ReviewQueue(store, lambda: served.targets)
    page = queue.page(target=args.target, order=Order.MARGIN, limit=args.limit or sys.maxsize)
    records = stored(store, [t.ticket_id for t in page.items], documents=True)
    tasks = labelstudio.tasks(page.items, records, known, served.version)
    text = json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text(args.out, text)
    if args.config is not None:
        write_text(args.config, config)
    no_text = sum(1 for task in tasks if task["data"]["text_missing"])
    unsure = f" unsure on {args.target}" if args.target else ""
    lines = [
        f"wrote {len(tasks)} of {page.total} held tickets{unsure} as Label Studio tasks"
        + (f" to {args.out}" if args.out is not None else "")
    ]
    if no_text:
        lines.append(
            f"{no_text} without stored text (CHROMA_DOCUMENT=none when they were stored): "
            "the task says so; annotators need the ticket from the help desk"
        )
    lines.append(
        f"wrote the labeling config to {args.config}"
        if args.config is not None
        else "the project's labeling config: add --config FILE"
    )
    # The tasks may be on stdout: the summary must not be mixed into them.
    summary = sys.stdout if args.out is not None else sys.stderr
    for line in lines:
        print(line, file=summary)
    return 0


def read_export(path: Path) -> list[Mapping[str, Any]]:
    """The tasks of Label Studio's JSON export at ``path``; ``LabelStudioFormatError`` (one
    line, exit 2) for a file that is not one."""
    from ticketflow.review.labelstudio import LabelStudioFormatError, export_tasks

    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelStudioFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise LabelStudioFormatError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start}): "
            "not a Label Studio JSON export"
        ) from None
    except OSError as exc:
        raise LabelStudioFormatError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        items = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise LabelStudioFormatError(
            f"{path}: not JSON{where}: not a Label Studio JSON export (Export > JSON)"
        ) from None
    try:
        return export_tasks(items)
    except LabelStudioFormatError as exc:
        raise LabelStudioFormatError(f"{path}: {exc}") from None


def ledger_path(settings: Settings) -> Path:
    """The import ledger of the feedback topic (another cluster's topic of the same name
    shares it: the store check still holds there)."""
    return settings.state_dir / "label-studio" / f"imported-{settings.kafka_topic_feedback}.json"


def read_ledger(path: Path) -> ImportLedger:
    from ticketflow.review.labelstudio import ImportLedger

    if not path.exists():
        return ImportLedger()
    try:
        return ImportLedger.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise RuntimeError(
            f"{path}: not an import ledger ({exc}); move it away to import anyway (answers "
            "the worker has applied are still not published twice)"
        ) from None


def publish(
    settings: Settings, events: Sequence[LabelFeedback], ledger: ImportLedger, path: Path
) -> None:
    """Publish ``events`` a chunk at a time; after each acknowledged chunk the ledger says so."""
    from ticketflow.adapters.kafka.clients import produce_raw

    config = settings.kafka_client_config()
    for start in range(0, len(events), PUBLISH_CHUNK):
        chunk = events[start : start + PUBLISH_CHUNK]
        produce_raw(
            config,
            settings.kafka_topic_feedback,
            [(e.ticket_id.encode("utf-8"), e.model_dump_json().encode("utf-8")) for e in chunk],
        )
        now = time.time()
        for event in chunk:
            ledger.record(event, now)
        write_text(path, ledger.to_json())


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    tasks = read_export(args.path)  # first: a wrong file fails before any service is asked
    if not args.dry_run:
        require_broker(settings)

    from ticketflow.review import labelstudio
    from ticketflow.runtime.loading import open_written_store

    served = served_model(settings)
    feedback, problems = labelstudio.feedback_from_export(tasks, known_classes(served), DEFAULT_WHO)
    store = open_written_store(settings)
    records = stored(store, [event.ticket_id for event in feedback])
    current = {ticket_id: record.metadata for ticket_id, record in records.items()}
    path = ledger_path(settings)
    ledger = read_ledger(path)
    new, old, missing = labelstudio.unpublished(feedback, current, ledger)
    # Name the task of a ticket the store does not hold, as every other refusal does.
    task_of = {
        t["data"]["ticket_id"].strip(): t["id"]
        for t in tasks
        if isinstance(t["data"].get("ticket_id"), str) and isinstance(t.get("id"), int | str)
    }
    missing = [replace(p, task=task_of.get(p.ticket_id or "")) for p in missing]
    refused = [p for p in problems if p.refused] + missing
    unanswered = [p for p in problems if not p.refused]
    for problem in refused:
        print(f"{args.path}: refused: {problem}", file=sys.stderr)
    topic = settings.kafka_topic_feedback
    if args.dry_run:
        for event in new:
            print(event.model_dump_json())
    else:
        publish(settings, new, ledger, path)
    why = Counter(reason for _, reason in old)
    seen = ", ".join(f"{count} {reason.value}" for reason, count in why.items())
    verb = "would publish" if args.dry_run else "published"
    print(
        f"{verb} {len(new)} answers to {topic}; already published {len(old)}"
        + (f" ({seen})" if seen else "")
        + f"; not answered {len(unanswered)} (cancelled, not annotated or answered again); "
        f"refused {len(refused)} (of {len(tasks)} tasks)"
    )
    return 2 if refused else 0
