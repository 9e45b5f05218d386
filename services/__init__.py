"""mlbus services: independent processes that meet only on Avro-typed Kafka topics."""
