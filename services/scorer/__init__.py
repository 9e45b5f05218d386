"""The scorer: the deployer's data plane, its own process and consumer group (python -m services.scorer)."""
