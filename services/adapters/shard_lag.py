"""How far the auditor's shards are behind the bus, from their groups' committed offsets: each shard commits its own
source partitions in a group of its own (shards.shard_group), so no one group answers for the auditor — and every
shard also reads the erasure topics' partitions another shard audits (to delete its own key of an erased subject),
so an erasure is behind until every shard's group has passed it."""
from __future__ import annotations

from confluent_kafka import Consumer

from services.bus.context import Bus
from services.bus.kafka import base_config, group_id
from services.bus.topics import consumer_lag
from services.domain import shard_group, shard_partitions

from .audit_log import audited_topics


def auditor_lag(bus: Bus, topics: list[str] | None = None) -> dict[str, int]:
    """Messages on the audited topics (or `topics`) not yet committed by every shard that reads them, per catalogue
    topic: each partition counted in the group of the shard that audits it, and an erasure topic's partition also in
    the group of each shard that only observes it (0 then means: audited, and erased in every shard)."""
    topics = audited_topics(bus) if topics is None else topics
    physical = bus.catalogue.physical("audit.log")
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "shards")})
    try:
        listed = consumer.list_topics(timeout=30).topics
    finally:
        consumer.close()
    shards = len(listed[physical].partitions)
    partitions = [(t, p) for t in topics for p in listed[bus.catalogue.physical(t)].partitions]
    group = f"{bus.settings.connection.namespace}mlbus.auditor"        # the auditor's, as its own principal
    erasure_topics = {t for t in topics if bus.catalogue.topics[t].schema == "mlbus.ErasureRequested"}
    lag = {topic: 0 for topic in topics}
    for shard in range(shards):
        mine, observed = shard_partitions(partitions, erasure_topics, shard, shards)
        for topic, behind in consumer_lag(bus, shard_group(group, shard), topics, only={*mine, *observed}).items():
            lag[topic] += behind
    return lag
