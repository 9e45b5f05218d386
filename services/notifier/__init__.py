"""notifier: delivers alerts to people — webhooks (JSON, Slack, Alertmanager) and email — with routing,
grouping, de-duplication and retries, and puts a record of every attempt on the bus."""
