"""What the runtime puts on its page for each input partition (ServiceRuntime._measure_lag), with a fake consumer:
librdkafka's position where it has one, where the fetch started where it has none, and nothing it cannot tell."""
from __future__ import annotations

import json
from types import SimpleNamespace

from confluent_kafka import TopicPartition

from services.bus.metrics import ServiceMetrics
from services.bus.positions import Consumed
from services.bus.runtime import ServiceRuntime

UNKNOWN = -1001


class FakeConsumer:
    def __init__(self, positions: dict[tuple[str, int], int], highs: dict[tuple[str, int], int]):
        self.positions, self.highs = positions, highs

    def assignment(self):
        return [TopicPartition(t, p) for t, p in self.positions]

    def position(self, partitions):
        return [TopicPartition(tp.topic, tp.partition, self.positions[(tp.topic, tp.partition)]) for tp in partitions]

    def get_watermark_offsets(self, tp, cached=False):
        assert cached, "the runtime's measurement asks the broker nothing"
        return 0, self.highs.get((tp.topic, tp.partition), UNKNOWN)


def runtime(consumer: FakeConsumer) -> ServiceRuntime:
    service = ServiceRuntime.__new__(ServiceRuntime)        # its parts only: no broker
    catalogue = SimpleNamespace(logical=lambda name: name.removeprefix("ns."))
    service.__dict__.update(service="auditor", consumer=consumer, metrics=ServiceMetrics("auditor"), _started={},
                            bus=SimpleNamespace(catalogue=catalogue))
    return service


def statistics(**partitions: dict) -> str:
    by_number = {name.removeprefix("p"): state for name, state in partitions.items()}
    return json.dumps({"topics": {"ns.alerts": {"partitions": by_number}}})


def test_a_drained_service_after_a_restart_reports_0_from_where_its_fetch_started():
    service = runtime(FakeConsumer({("ns.alerts", 0): UNKNOWN, ("ns.alerts", 1): UNKNOWN, ("ns.alerts", 2): 7},
                                   {("ns.alerts", 0): 5, ("ns.alerts", 1): 0, ("ns.alerts", 2): 9}))
    service._on_statistics(statistics(p0={"fetch_state": "active", "committed_offset": 5, "lo_offset": 0},
                                      p1={"fetch_state": "active", "committed_offset": UNKNOWN, "lo_offset": 0}))
    service._measure_lag()
    assert service.metrics.consumed.now() == {("alerts", 0): Consumed(5, 5), ("alerts", 1): Consumed(0, 0),
                                              ("alerts", 2): Consumed(7, 9)}


def test_a_partition_whose_start_or_end_is_not_known_yet_is_left_out_not_reported_as_0():
    service = runtime(FakeConsumer({("ns.alerts", 0): UNKNOWN, ("ns.alerts", 1): 3},
                                   {("ns.alerts", 0): 5}))     # partition 1: no high-water mark heard yet
    service._on_statistics(statistics(p0={"fetch_state": "offset-query", "committed_offset": UNKNOWN,
                                          "lo_offset": UNKNOWN}))
    service._measure_lag()
    assert service.metrics.consumed.now() == {}


def test_after_a_committed_batch_its_partitions_positions_are_on_the_page_at_once():
    service = runtime(FakeConsumer({("ns.alerts", 0): 100}, {("ns.alerts", 0): 120}))
    service._report_positions({("ns.alerts", 0): 110})      # the batch's next offsets, as committed
    assert service.metrics.consumed.now() == {("alerts", 0): Consumed(110, 120)}
