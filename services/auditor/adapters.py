"""Where the chain left off: the last committed record of audit.log (read_committed)."""
from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from services.bus import Bus
from services.domain import ChainHead
from services.bus.kafka import base_config, group_id

TAIL_STEP = 64


def chain_head(bus: Bus, timeout_s: float = 30.0) -> ChainHead:
    """The sequence and hash of audit.log's last committed record; the genesis head for an empty log.
    Reads backwards in steps: the last offsets may hold transaction markers or aborted records."""
    topic = bus.catalogue.physical("audit.log")
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "tail"), "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout_s)
        start = high
        while start > low:
            start = max(low, start - TAIL_STEP)
            last = _last_record(bus, consumer, topic, start, high, timeout_s)
            if last is not None:
                return ChainHead(last["sequence"], last["hash"])
        return ChainHead()
    finally:
        consumer.close()


def _last_record(bus: Bus, consumer: Consumer, topic: str, start: int, end: int, timeout_s: float) -> dict | None:
    consumer.assign([TopicPartition(topic, 0, start)])
    last = None
    while True:
        messages = consumer.consume(500, min(timeout_s, 1.0))
        for message in messages:
            if not message.error():
                last = bus.schemas.decode(message.value())[1]
        position = consumer.position([TopicPartition(topic, 0)])[0].offset
        if not messages or position >= end:
            return last
