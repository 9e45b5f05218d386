"""Where the log left off (read_committed): the chain's last record and the Merkle tree's frontier, resumed
from the latest signed checkpoint and the records committed after it."""
from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from services.bus import Bus
from services.bus.kafka import base_config, group_id
from services.bus.errors import InfrastructureError
from services.domain import ChainHead, Frontier, audit_records, checkpoints, data_keys, leaf

from .decide import Log

TAIL_STEP = 256


def read_log(bus: Bus, timeout_s: float = 30.0) -> Log:
    """The log as committed: from the latest checkpoint that carries a frontier, the records after it read
    backwards from the end (the last offsets may hold transaction markers or aborted records); without one
    (an empty log, or one written before the Merkle tree), every record from the start."""
    kept = [c for c in checkpoints(bus) if c.get("root_hash")]
    latest = max(kept, key=lambda c: c["sequence"], default=None)
    if latest is None:
        return _grown(Log(), audit_records(bus))
    tree = Frontier(latest["sequence"], [bytes.fromhex(h) for h in latest["frontier"]])
    return _grown(Log.resumed(ChainHead(latest["sequence"], latest["hash"]), tree),
                  _records_after(bus, latest["sequence"], timeout_s))


def _grown(log: Log, records: list[dict]) -> Log:
    for record in records:
        if record["sequence"] != log.head.sequence + 1 or record["prev_hash"] != log.head.hash:
            raise RuntimeError(f"audit.log does not continue its checkpoint at sequence {log.head.sequence}: run "
                               f"`mlbus audit verify` (the auditor will not extend a log it cannot vouch for)")
        log.add(record, leaf(record))
    return log


def _records_after(bus: Bus, sequence: int, timeout_s: float) -> list[dict]:
    """The committed records past `sequence`, in order: windows of the tail, each twice as long as the last,
    until one reaches back to `sequence` or to the start."""
    topic = bus.catalogue.physical("audit.log")
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "tail"),
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "fetch.wait.max.ms": 10})      # windows at the end of the log: no held fetches
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout_s)
        step, start = TAIL_STEP, high
        while True:
            start = max(low, high - step)
            records = _window(bus, consumer, topic, start, high, timeout_s)
            if start == low or (records and records[0]["sequence"] <= sequence):
                return [r for r in records if r["sequence"] > sequence]
            step *= 2
    finally:
        consumer.close()


def _window(bus: Bus, consumer: Consumer, topic: str, start: int, end: int, timeout_s: float) -> list[dict]:
    consumer.assign([TopicPartition(topic, 0, start)])
    found = []
    while True:
        messages = consumer.consume(500, min(timeout_s, 1.0))
        found += [bus.schemas.decode(m.value(), "mlbus.AuditRecord")[1] for m in messages if not m.error()]
        position = consumer.position([TopicPartition(topic, 0)])[0].offset
        if not messages or position >= end:
            return found



def read_keys(bus: Bus) -> dict[str, bytes]:
    """Every subject's live data key on audit.keys; the auditor cannot seal without them."""
    keys = data_keys(bus)
    if keys is None:
        raise InfrastructureError("the auditor cannot read audit.keys (its ACL, or the broker)")
    return keys
