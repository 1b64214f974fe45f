"""Write the JSON Schema files under ``schemas/json/`` (``python -m ticketflow.schemas.export``)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from ticketflow.schemas.dead_letter import DeadLetter
from ticketflow.schemas.drift import DriftEvent
from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.schemas.incident import IncidentEvent
from ticketflow.schemas.labeled import LabeledTicket
from ticketflow.schemas.model_update import ModelUpdate
from ticketflow.schemas.monitoring import MonitorRecord
from ticketflow.schemas.ticket import Ticket

SCHEMA_DIR = Path(__file__).resolve().parent / "json"
CONTRACTS: dict[str, type[BaseModel]] = {
    "ticket": Ticket,
    "labeled-ticket": LabeledTicket,
    "dead-letter": DeadLetter,
    "monitor-record": MonitorRecord,
    "drift-event": DriftEvent,
    "label-feedback": LabelFeedback,
    "model-update": ModelUpdate,
    "incident-event": IncidentEvent,
}


def render(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in CONTRACTS.items():
        path = directory / f"{name}.schema.json"
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export():
        print(path)
