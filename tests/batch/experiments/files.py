"""A labelled file of the user's own making, shared by the comparisons' tests."""

import csv
from pathlib import Path

from ticketflow.devtools.sample import generate_tickets


def write_labelled_file(path: Path, n: int = 260) -> Path:
    """A labelled file of the user's own making: its own column names, a rare class."""
    tickets = generate_tickets(n, seed=6)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Text", "Team", "Urgency", "language"])
        for i, t in enumerate(tickets):
            team = "Rare" if i < 3 else t["queue"]  # 3 rows: too few for the protocol
            writer.writerow([t["body"], team, t["priority"], t["language"]])
    return path
