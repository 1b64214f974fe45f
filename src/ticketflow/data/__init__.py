"""Reading what users hand in: ticket files (JSONL, CSV, Parquet) with a column mapping, the
errors such input raises, and progress reporting for long reads and loops.

Below :mod:`ticketflow.models` (it imports only :mod:`ticketflow.schemas`), so the Kafka
adapter, training and the CLI read files the same way.
"""
