"""Prometheus metrics of a service process, served at http://HOST:MLBUS_METRICS_PORT/metrics (0: none served).

Every service on the runtime counts what it does with each input topic and how long it takes; services add
their own (the scorer's prediction latency per model, version and variant). Names start with `mlbus_`;
`service` is a label on all of them, so one Prometheus job can scrape every process."""
from __future__ import annotations

import threading
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from .positions import HIGH_WATERMARK, POSITION, Consumed, Partition

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """One process's metrics, in a registry of its own (tests may make several in one process)."""

    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        labels = ["service", "topic"]
        self.messages = Counter("mlbus_messages_total", "Input messages by outcome (handled | dead_lettered)",
                                [*labels, "outcome"], registry=self.registry)
        self.handler_seconds = Histogram("mlbus_handler_seconds", "Time to handle one input batch", labels,
                                         buckets=LATENCY_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram("mlbus_commit_seconds", "Time to publish outputs and commit a batch",
                                        ["service"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.emitted = Counter("mlbus_events_emitted_total", "Output events published", ["service"],
                               registry=self.registry)
        self.consumed = ConsumedPartitions(service)
        self.registry.register(self.consumed)      # mlbus_consumer_position, _high_watermark and _lag
        self.aborted = Counter("mlbus_transactions_aborted_total", "Transactions aborted (a rebalance during a batch)",
                               ["service"], registry=self.registry)
        self.restarts = Gauge("mlbus_restarts", "Restarts by the keep-alive supervisor", ["service"],
                              registry=self.registry)
        self.registry.register(_Shared())        # mlbus_poison_total, counted wherever the process meets poison
        self._served = False
        self._lock = threading.Lock()

    def serve(self, port: int, host: str = "127.0.0.1") -> str | None:
        """Expose /metrics on port (once; 0: not at all). A port already taken is reported, not fatal: the
        service matters more than its metrics. Returns why nothing is served, or None."""
        with self._lock:
            if not port or self._served:
                return None
            try:
                start_http_server(port, addr=host, registry=self.registry)
            except OSError as error:
                return f"metrics not served on port {port}: {error}"
            self._served = True
            return None

    def handled(self, topic: str, outcome: str, count: int = 1) -> None:
        self.messages.labels(self.service, topic, outcome).inc(count)


class ConsumedPartitions:
    """Where a service stands in its input partitions, as its loop last measured it: after each committed batch
    and every runtime.LAG_EVERY_S. The figures are not refreshed when /metrics is read: a consumer called from
    the HTTP thread waits for the loop's consume() to return (measured with confluent-kafka 2.16: blocked for
    as long as the loop kept polling), so a page would hang exactly when the loop is busiest."""

    def __init__(self, service: str):
        self.service = service
        self._positions: dict[Partition, Consumed] = {}
        self._lock = threading.Lock()

    def record(self, positions: dict[Partition, Consumed]) -> None:
        """Positions of these input partitions (catalogue topic names), with the high-water marks seen then."""
        with self._lock:
            self._positions.update(positions)

    def forget(self, partitions: set[Partition]) -> None:
        """Partitions taken away (a rebalance): no copy reports a partition it has left."""
        with self._lock:
            for at in partitions:
                self._positions.pop(at, None)

    def now(self) -> dict[Partition, Consumed]:
        with self._lock:
            return dict(self._positions)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        consumed = self.now()
        position = GaugeMetricFamily(POSITION, "Next offset the service will read in each input partition (what it "
                                     "has handled and committed ends just before it)",
                                     labels=["service", "topic", "partition"])
        high = GaugeMetricFamily(HIGH_WATERMARK, "High-water mark of each input partition, as the service's "
                                 "consumer last heard it from the broker", labels=["service", "topic", "partition"])
        lag = GaugeMetricFamily("mlbus_consumer_lag", "Messages behind the end of each input topic",
                                labels=["service", "topic"])
        by_topic: dict[str, int] = {}
        for (topic, partition), at in sorted(consumed.items()):
            position.add_metric([self.service, topic, str(partition)], at.position)
            high.add_metric([self.service, topic, str(partition)], at.high)
            by_topic[topic] = by_topic.get(topic, 0) + at.lag
        for topic, behind in sorted(by_topic.items()):
            lag.add_metric([self.service, topic], behind)
        yield from (position, high, lag)


# Records a service could not handle or fold (skipped by a rebuild or a follower, dead-lettered live), counted
# per process and served beside whichever ServiceMetrics the process has (the MlbusPoison alert).
POISON_REGISTRY = CollectorRegistry()
POISON = Counter("mlbus_poison_total", "Records skipped or dead-lettered because they could not be handled or "
                 "folded, by path (live | rebuild | follow | agent) and topic", ["service", "path", "topic"],
                 registry=POISON_REGISTRY)


class _Shared:
    """Hands a registry's collect() the process-wide poison counter."""

    def collect(self):
        return POISON_REGISTRY.collect()
