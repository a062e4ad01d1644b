"""The publish stage: topics, the transactional Kafka producer and the position store."""
