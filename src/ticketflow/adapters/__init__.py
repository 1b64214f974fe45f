"""Adapters to the outside services: Kafka and the vector store. Stream and batch share them."""
