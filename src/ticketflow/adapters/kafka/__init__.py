"""Kafka: one connection config, clients (produce/consume), topic administration, errors."""
