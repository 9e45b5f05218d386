"""exporter: mirrors chosen topics exactly once into Confluent-framed copies (`mlbus export TOPIC...`)."""
