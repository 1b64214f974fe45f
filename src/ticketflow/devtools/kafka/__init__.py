"""Local single-node KRaft Kafka broker built from Maven Central jars."""
