"""Where a consumed message sits, typed. The client's stubs make topic(), partition() and offset() Optional (an
error event may lack them); a message the consumer returned without error() always has all three."""
from __future__ import annotations

from confluent_kafka import Message

from .errors import InfrastructureError


def position(message: Message) -> tuple[str, int, int]:
    """(physical topic, partition, offset) of a message consumed without error (poison.Offset)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise InfrastructureError(f"a consumed message without a position ({topic}, {partition}, {offset}): "
                                  "an error event taken for a message?")
    return topic, partition, offset
