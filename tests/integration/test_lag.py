"""The consumer lag an operator and the tests read (`mlbus status`, `consumer_lag`) answers while the group has a
transaction open — under exactly-once load one always is (issue 34: every look-up used to time out, because a
read_committed client asks for stable offsets, KIP-447)."""
from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from services.bus.kafka import base_config, producer_config
from services.bus.topics import consumer_lag


def test_the_lag_answers_at_once_while_the_groups_transaction_is_open(bus):
    topic = bus.catalogue.physical("inference.requests")
    group = f"{bus.settings.namespace}mlbus.lag-test-{uuid.uuid4().hex[:6]}"
    producer = Producer(producer_config(bus.settings, "lag-test", transactional_id=f"lag-test-{uuid.uuid4().hex}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    for _ in range(5):
        producer.produce(topic, b"x", key=b"k", partition=0)
    producer.flush(30)
    member = Consumer({**base_config(bus.settings), "group.id": group, "enable.auto.commit": False})
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 3)], member.consumer_group_metadata(), 30)
    try:                       # the transaction, with the group's offsets, stays open: a read_committed look-up of
        lag = consumer_lag(bus, group, ["inference.requests"])      # the committed offsets raised _TIMED_OUT here
        assert lag == {"inference.requests": 5}    # nothing committed yet: the five messages count (not drained)
    finally:
        producer.abort_transaction(30)
        member.close()
