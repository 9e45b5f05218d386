"""What the suite and the chaos scenarios ask of audit.log, in any number of shards (one: a v1 log): every message on
the bus on record exactly once, in the shard its partition belongs to; each shard numbered 1..n with no gap, its
chain and Merkle tree verifying against every head signed for it (on audit.checkpoints and in the anchor)."""
from __future__ import annotations

from confluent_kafka import Consumer

from services.bus import Bus
from services.bus.kafka import base_config
from services.domain import shard_log_id, shard_of, verify_chain
from services.adapters import audit_records, kept_heads, log_id, log_signers
from tests.support.polling import bus_messages


def shard_count(bus: Bus) -> int:
    """audit.log's partitions on the broker: its shards."""
    physical = bus.catalogue.physical("audit.log")
    consumer = Consumer({**base_config(bus.settings), "group.id": "shards"})
    try:
        return len(consumer.list_topics(physical, timeout=30).topics[physical].partitions)
    finally:
        consumer.close()


def log_problems(bus: Bus, records: list[dict] | None = None) -> list[str]:
    """What is wrong with audit.log now (empty: nothing): messages missing or on record twice, a record in the
    wrong shard, a shard whose sequence has a gap, or whose chain, tree or any signed head does not verify."""
    records = audit_records(bus) if records is None else records
    shards = shard_count(bus)
    sources = [(r["source_topic"], r["source_partition"], r["source_offset"]) for r in records]
    on_bus = {(bus.catalogue.logical(t), p, o) for t, p, o in bus_messages(bus)}
    problems = []
    if missing := on_bus - set(sources):
        problems.append(f"{len(missing)} messages on the bus not on record, e.g. {sorted(missing)[:3]}")
    if (twice := len(sources) - len(set(sources))) > 0:
        problems.append(f"{twice} messages on record twice")
    misplaced = [r for r in records if r["shard"] != shard_of(r["source_topic"], r["source_partition"], shards)]
    if misplaced:
        problems.append(f"{len(misplaced)} records in another shard than their partition's")
    on_topic, anchored = kept_heads(bus)
    for shard in range(shards):
        mine = [r for r in records if r["shard"] == shard]
        if [r["sequence"] for r in mine] != list(range(1, len(mine) + 1)):
            problems.append(f"shard {shard}: its sequence numbers are not 1..{len(mine)}")
        name = shard_log_id(log_id(bus), shard)
        heads = [h for h in on_topic + anchored if h.signed is None or h.signed.log_id == name]
        verified = verify_chain(mine, heads, log_signers(bus), name)
        if verified.broken is not None:
            problems.append(f"shard {shard}: BROKEN at {verified.broken}")
    return problems


def describe(bus: Bus, records: list[dict]) -> str:
    """One line on the log for a scenario's report."""
    on_topic, anchored = kept_heads(bus)
    return (f"audit.log: {len(records)} records in {shard_count(bus)} shard(s), "
            f"{len(on_topic) + len(anchored)} signed heads")
