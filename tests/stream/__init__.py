"""Tests for the streaming layer (Kafka broker, topics)."""
