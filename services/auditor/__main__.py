"""auditor: python -m services.auditor — the only writer of audit.log. audit.log's partitions are shards, each its
own chain; this copy runs the shards its group gives it (shards.py), `mlbus up --auditors N` runs N copies.

MLBUS_AUDIT_CHECKPOINT_EVERY: records between signed tree heads (default 1000); MLBUS_AUDIT_HEAD_INTERVAL_S:
a head at least this often while records come (default 30); MLBUS_AUDIT_ANCHOR: where heads are kept outside
Kafka (default var/audit-anchor/); MLBUS_AUDIT_KEY: the signing key `mlbus acl apply` made."""

import signal

from confluent_kafka import Consumer

from services.bus import Bus, RawBatch, RuntimeConfig, ServiceRuntime, Task, Ticker
from services.bus.identity import act_verifier
from services.bus.kafka import base_config, group_id
from services.bus.logs import configure_logging
from services.bus.metrics import ServiceMetrics
from services.bus.settings import ConfigError
from services.domain import (combined_log_id, keys_of_shard, LogKey, shard_group, shard_log_id, shard_partitions,
                             shard_transactional_id)
from services.adapters import Anchor, audited_topics, committed_chain_hash, log_id

from .adapters import CheckpointTail, read_keys, read_log
from .handlers import AuditMetrics, Auditor, Combine
from .shards import Shards


def main() -> None:
    bus = Bus.from_env(principal="auditor")
    configure_logging("auditor", bus.settings.observability.log_format, bus.settings.observability.log_level)
    if not bus.settings.audit.key.exists():
        raise ConfigError(f"no audit signing key at {bus.settings.audit.key} (MLBUS_AUDIT_KEY): `mlbus acl apply` "
                          f"(as the broker admin) makes it and declares its public key on the identities topic")
    key, log_name = LogKey.load(bus.settings.audit.key), log_id(bus)
    # It resumes only from a checkpoint signed with its own key: one that another key signed (even one the admin
    # declared a log-signer) is refused, so nobody who can write audit.checkpoints can choose where it resumes.
    own = {key.key_id: key.public}
    topics = audited_topics(bus)
    partitions = source_partitions(bus, topics)
    erasure_topics = {t for t in topics if bus.catalogue.topics[t].schema == "mlbus.ErasureRequested"}
    metrics = ServiceMetrics("auditor")
    audit_metrics = AuditMetrics(metrics.registry)
    base = group_id(bus.settings, "" if bus.settings.connection.client_principal == "auditor" else "auditor")

    def shard_runtime(shard: int, shards: int) -> ServiceRuntime:
        """Shard k's runtime: its partitions, its group (shard 0 keeps the auditor's: a v1 log's offsets), its
        transactional id (which fences an older runner of it on any copy) and its auditor."""
        mine, observed = shard_partitions(partitions, erasure_topics, shard, shards)
        shard_log = shard_log_id(log_name, shard)
        combine = None if shard != 0 or shards == 1 else Combine(
            CheckpointTail(bus), log_name, shards, own,
            lambda size, root, at: key.sign(combined_log_id(log_name), size, root, at),
            lambda k, sequence: committed_chain_hash(bus, k, sequence))
        auditor = Auditor(bus, lambda: read_log(bus, own, shard_log, shard=shard, log=log_name),
                          lambda size, root, at: key.sign(shard_log, size, root, at), Anchor(bus.settings.audit.anchor),
                          act_verifier(bus), lambda: keys_of_shard(read_keys(bus), shard), shard=shard,
                          observed=frozenset((bus.catalogue.physical(t), p) for t, p in observed), combine=combine,
                          bind=key.bind)
        auditor.metrics = audit_metrics
        task = Task(f"shard-{shard}", tuple(mine + observed), shard_group(base, shard),
                    shard_transactional_id(base, shard))
        # Large batches: each transaction's commit costs a broker round trip or two (~30 ms locally), which at
        # 1,000 records a batch was a third of the auditor's time under a backlog.
        config = RuntimeConfig(topics=sorted({t for t, _ in mine + observed}), transactional=True, batch_size=5000,
                               ticker=Ticker(auditor.tick), on_stop=auditor.on_stop,
                               on_committed=auditor.on_committed, on_aborted=auditor.forget_uncommitted,
                               outputs=("mlbus.AuditPage", "mlbus.AuditCheckpoint", "mlbus.DataKey"), task=task,
                               metrics=metrics)
        return ServiceRuntime(bus, "auditor", RawBatch(auditor), config)

    if unserved := metrics.serve(bus.settings.observability.metrics_port, bus.settings.observability.metrics_host):
        print(unserved)
    shards = Shards(bus, shard_runtime, bus.settings.runtime.instance, retire=audit_metrics.forget)
    signal.signal(signal.SIGTERM, shards.stop)
    signal.signal(signal.SIGINT, shards.stop)
    shards.run()


def source_partitions(bus: Bus, topics: list[str]) -> list[tuple[str, int]]:
    """Every partition of the audited topics on the broker, as (catalogue topic, partition)."""
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "shards")})
    try:
        listed = consumer.list_topics(timeout=30).topics
    finally:
        consumer.close()
    missing = sorted(t for t in topics if bus.catalogue.physical(t) not in listed)
    if missing:
        raise ConfigError(f"topics missing on the broker: {', '.join(missing)}; run `mlbus topics apply`")
    return [(t, p) for t in topics for p in sorted(listed[bus.catalogue.physical(t)].partitions)]


if __name__ == "__main__":
    main()
