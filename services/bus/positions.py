"""Where a service stands in its inputs, from its own consumer: the position (next offset it will read, once
what it read is handled and committed), the partition's high-water mark and the lag between them, per topic
and partition — served on /metrics and read back by `mlbus status` and the suite's waits.

No committed-offset fetch: under exactly-once load a read_committed OffsetFetch waits for a transaction that is
always open (KIP-447; issue 34 measured 15 look-ups of 15 timing out). The consumer knows its own position.
One gap: librdkafka's position() is unknown (-1001) for a partition nothing was read from since it was
assigned — a drained service after a restart. There the offset the consumer started from stands in for it:
the committed offset librdkafka fetched at the assignment, or the low watermark when there was none
(auto.offset.reset=earliest), both taken from its statistics (`start_offsets`).
The drift-watcher's router is on the runtime, so its inputs are on its page; faust's own consumer (the internal
observations topic) is not: faust's monitor has its read offsets and high-water marks, but a read offset never
passes the commit marker the router's transaction leaves last (tried: drained, it read 301 of 302), so a drained
watcher would show 1 behind for ever."""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Iterable

from prometheus_client.parser import text_string_to_metric_families

ANSWER_S = 2.0          # a page not served in this is no answer (a paused or dying process): its readers fall back
POSITION = "mlbus_consumer_position"
HIGH_WATERMARK = "mlbus_consumer_high_watermark"
Partition = tuple[str, int]         # (topic, partition)


@dataclass(frozen=True)
class Consumed:
    """One input partition as a service reported it."""

    position: int           # the next offset it will read (what it handled and committed ends just before)
    high: int               # the partition's high-water mark, as the consumer last heard it from the broker

    @property
    def lag(self) -> int:
        return max(0, self.high - self.position)


def start_offsets(statistics: str) -> dict[Partition, int]:
    """From librdkafka's statistics (JSON, physical topic names): where each partition whose fetch is under way
    started — the committed offset fetched at its assignment, or the low watermark when the group had none."""
    started: dict[Partition, int] = {}
    for topic, found in json.loads(statistics).get("topics", {}).items():
        for partition, state in found.get("partitions", {}).items():
            if partition == "-1" or state.get("fetch_state") != "active":
                continue            # -1: librdkafka's unassigned bucket; not active: the start is not known yet
            committed, low = state.get("committed_offset", -1001), state.get("lo_offset", -1001)
            if committed >= 0 or low >= 0:
                started[(topic, int(partition))] = committed if committed >= 0 else low
    return started


def reported(page: str) -> dict[Partition, Consumed]:
    """The positions a service's /metrics page reports, by (topic, partition), across its services' labels."""
    values: dict[str, dict[Partition, float]] = {POSITION: {}, HIGH_WATERMARK: {}}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name in values:
                values[sample.name][(sample.labels["topic"], int(sample.labels["partition"]))] = sample.value
    return {at: Consumed(int(position), int(values[HIGH_WATERMARK].get(at, position)))
            for at, position in values[POSITION].items()}


def served(port: int, host: str = "127.0.0.1") -> dict[Partition, Consumed] | None:
    """The input positions the process serving /metrics on `port` reports, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=ANSWER_S) as page:
            return reported(page.read().decode())
    except OSError:
        return None


def lag_by_topic(consumed: dict[Partition, Consumed], topics: Iterable[str]) -> dict[str, int] | None:
    """Each topic's lag summed over its reported partitions; None when a topic has none reported (not assigned
    yet, or read by another copy): no figure is better than a 0 that only means "not looked at"."""
    lag: dict[str, int] = {}
    for topic in topics:
        partitions = [c for (t, _), c in consumed.items() if t == topic]
        if not partitions:
            return None
        lag[topic] = sum(c.lag for c in partitions)
    return lag


def merged(reports: Iterable[dict[Partition, Consumed]]) -> dict[Partition, Consumed]:
    """Several copies' reports as one; a partition two copies report during a rebalance counts at the position
    further behind (the safe answer for "drained yet?")."""
    together: dict[Partition, Consumed] = {}
    for report in reports:
        for at, consumed in report.items():
            if at not in together or consumed.position < together[at].position:
                together[at] = consumed
    return together
