"""A service's lag as the service itself reports it on /metrics (services/bus/positions.py), for the suite's
waits: no committed-offset fetch, which under exactly-once load waits behind an open transaction (KIP-447).

`service_lag` is the service's own figure (its position against the high-water mark its consumer last heard).
A wait for "drained" uses `behind` instead: the positions the service reports against end offsets asked of
the broker now. The service's own high-water mark is only as fresh as its last fetch, so a wait that starts
right after a test produced could read a page from before the messages arrived and take its 0 for drained."""
from __future__ import annotations

import threading
import weakref

from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from services.bus.context import Bus
from services.bus.kafka import admin_config
from services.bus.positions import Partition, lag_by_topic, merged, served


def service_lag(port: int, topics: list[str]) -> dict[str, int] | None:
    """The service's own lag per topic, or None (it does not answer, or reports no partition of a topic)."""
    found = served(port)
    return None if found is None else lag_by_topic(found, topics)


def behind(bus: Bus, ports: list[int], topics: list[str]) -> int | None:
    """Messages on `topics` the services on `ports` (copies of one service) have not handled yet: the broker's
    end offsets now (read_committed: what a consumer can read) less the positions they report. None when some
    partition is reported by none of them (not assigned yet, a copy that does not answer)."""
    reports = [found for port in ports if (found := served(port)) is not None]
    positions = merged(reports)
    ends = _ends(bus).of(topics)
    if any(at not in positions for at in ends):
        return None
    return sum(max(0, end - positions[at].position) for at, end in ends.items())


class EndOffsets:
    """End offsets of catalogue topics, through one admin client kept open (a wait polls many times)."""

    def __init__(self, bus: Bus):
        self.catalogue = bus.catalogue
        self.admin = AdminClient(admin_config(bus.settings))

    def of(self, topics: list[str]) -> dict[Partition, int]:
        physical = {self.catalogue.physical(topic): topic for topic in topics}
        asked = {}
        for name in physical:
            for partition in self.admin.list_topics(name, timeout=10).topics[name].partitions:
                asked[TopicPartition(name, partition)] = OffsetSpec.latest()
        futures = self.admin.list_offsets(asked, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10)
        return {(physical[tp.topic], tp.partition): future.result().offset for tp, future in futures.items()}


_CLIENTS: dict[int, tuple[weakref.ref, EndOffsets]] = {}
_LOCK = threading.Lock()


def _ends(bus: Bus) -> EndOffsets:
    with _LOCK:
        known = _CLIENTS.get(id(bus))
        if known is None or known[0]() is not bus:
            known = _CLIENTS[id(bus)] = (weakref.ref(bus), EndOffsets(bus))
            weakref.finalize(bus, _CLIENTS.pop, id(bus), None)
        return known[1]
