"""The consumer lag an operator and the tests read (`mlbus status`, `consumer_lag`) answers while the group has a
transaction open — under exactly-once load one always is (issue 34: every look-up used to time out, because a
read_committed client asks for stable offsets, KIP-447)."""
from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from services.bus.kafka import base_config, producer_config
from services.bus.topics import consumer_lag, running_lag
from tests.support.lag import behind, service_lag
from tests.support.polling import read_topic, wait_until
from tests.support.people import Cli
from tests.support.processes import free_port, running, start, stop
from tests.support.traffic import publish_mixed


def test_the_lag_answers_at_once_while_the_groups_transaction_is_open(bus):
    topic = bus.catalogue.physical("inference.requests")
    group = f"{bus.settings.connection.namespace}mlbus.lag-test-{uuid.uuid4().hex[:6]}"
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


def test_a_transactional_service_under_load_answers_its_lag_on_metrics_and_reports_0_once_drained(bus, bus_env):
    """While a transaction holding the service's group offsets stays open (as one always is under exactly-once
    load), the committed-offset look-up a read_committed client makes stalls; the service's /metrics answers
    throughout, shows the load, and reports 0 once it has handled everything."""
    topic = bus.catalogue.physical("inference.requests")
    group = bus.settings.connection.namespace + RELAY_GROUP
    port = free_port()
    # 1 ms of CPU per request: the relay needs ≥ 5 s of CPU for the load, its publisher a fraction of a second,
    # so the relay is behind when the last request is delivered however slow the hour (both slow alike)
    relay = start("tests.support.relay_service", bus_env, MLBUS_RELAY_TRANSACTIONAL="1", MLBUS_RELAY_HANDLE_MS="1",
                  MLBUS_RELAY_BATCH="1000", MLBUS_METRICS_PORT=str(port))
    holder = Producer({**producer_config(bus.settings, "lag-test", transactional_id=f"lag-test-{uuid.uuid4().hex}"),
                       "transaction.timeout.ms": 600_000})
    member = Consumer({**base_config(bus.settings), "group.id": group, "enable.auto.commit": False})
    try:
        # assigned and idle: every partition is reported (empty ones from where the fetch started)
        wait_until(lambda: service_lag(port, ["inference.requests"]) == {"inference.requests": 0}, 120,
                   "the relay to report its (empty) partitions")
        holder.init_transactions(30)
        holder.begin_transaction()
        holder.send_offsets_to_transaction([TopicPartition(topic, 0, 0)], member.consumer_group_metadata(), 30)
        sent, _ = publish_mixed(bus, good=LOAD, bad=0)
        wait_until(lambda: (lag := service_lag(port, ["inference.requests"])) and lag["inference.requests"] > 0, 60,
                   "the relay's page to show the load")
        wait_until(lambda: service_lag(port, ["inference.requests"]) == {"inference.requests": 0}, 300,
                   "the relay to report 0")
        assert behind(bus, [port], ["inference.requests"]) == 0       # against the broker's end offsets now
        reader = stable_reader(bus, group)
        try:
            with pytest.raises(KafkaException):     # the transaction is still open: a stable-offset fetch stalls
                reader.committed([TopicPartition(topic, 0)], timeout=3)
        finally:
            reader.close()
        predictions = read_topic(bus, "inference.predictions", expected=LOAD)
        assert relay.poll() is None
    finally:
        holder.abort_transaction(30)
        member.close()
        stop(relay)
    assert sorted(request_ids(predictions, bus)) == sorted(sent)        # exactly once: none lost, none twice


LOAD = 5_000
RELAY_GROUP = "mlbus.scorer.relay"        # the relay runs as the scorer's principal, in its groups


def stable_reader(bus, group: str) -> Consumer:
    """A read_committed client of the group: its OffsetFetch asks for stable offsets (KIP-447)."""
    return Consumer({**base_config(bus.settings), "group.id": group, "enable.auto.commit": False,
                     "isolation.level": "read_committed"})


def request_ids(messages, bus) -> list[str]:
    return [bus.schemas.decode(m.value())[1]["request_id"] for m in messages]


def test_status_reads_a_running_services_lag_from_its_metrics_and_falls_back_to_committed_offsets(bus, bus_env):
    group, topics, port = bus.settings.connection.namespace + RELAY_GROUP, ["inference.requests"], free_port()
    publish_mixed(bus, good=100, bad=0)
    with running("tests.support.relay_service", bus_env, MLBUS_METRICS_PORT=str(port)):
        assert wait_until(lambda: running_lag(bus, group, topics, port) == ({"inference.requests": 0}, "metrics"),
                          120, "the relay's own page to show it drained")
        # a port nothing serves (a service that does not answer): the group's committed offsets, said so
        assert wait_until(lambda: running_lag(bus, group, topics, free_port()) == (
            {"inference.requests": 0}, "committed"), 60, "the relay's last commit")


def test_mlbus_status_says_where_each_lag_came_from(bus, bus_env):
    cli = Cli({**bus_env, "MLBUS_METRICS_BASE_PORT": str(free_port())})     # the validator: base + 0
    publish_mixed(bus, good=20, bad=0)      # the relay's lag is known once its group has committed offsets
    up = cli("up", "validator", "relay=tests.support.relay_service")
    assert up.returncode == 0, up.stderr
    try:
        # mlbus up gave the validator a metrics port: its page answers once its partitions are assigned (until
        # then its committed offsets stand in); a service of one's own has no port the CLI knows
        rows = wait_until(lambda: (found := status_rows(cli)) and found["validator"]["lag_source"] == "metrics"
                          and found["relay"]["lag"] is not None and found, 120, "both services' lag")
        assert rows["validator"]["lag"] == 0 and rows["validator"]["lag_by_topic"] == {"data.batches": 0}
        assert rows["relay"]["lag_source"] == "committed"
        table = cli("status")
        assert table.returncode == 0 and "LAG FROM" in table.stdout and "metrics" in table.stdout
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr


def status_rows(cli) -> dict[str, dict]:
    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["service"]: row for row in json.loads(result.stdout)}
