"""Topic administration: the pure plan (catalogue vs broker) and the adapter that applies it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

import dataclasses
import threading
import time
import weakref
from typing import Callable, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from .catalogue import Catalogue, Topic
from .consumed import position
from .context import Bus
from .kafka import admin_config, base_config, group_id
from .positions import served
from .retrying import retry_while_transient
from .settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class ExistingTopic:
    partitions: int
    replication: int
    config: Mapping[str, str]


@dataclass(frozen=True)
class Change:
    topic: str                  # physical name
    action: str                 # create | add-partitions | set-config | drift
    detail: str


# Topics whose partition count is fixed when they are made: apply never adds partitions to them.
FIXED_PARTITIONS = {"audit.log": "its partitions are the log's shards, each audits the source partitions a hash "
                                 "gives it, so another shard would audit some of them a second time; kept as made"}


def plan_topics(catalogue: Catalogue, existing: Mapping[str, ExistingTopic]) -> list[Change]:
    """What `topics apply` must do so the broker matches topics.yaml (pure: no I/O)."""
    changes: list[Change] = []
    for topic in catalogue:
        name = catalogue.physical(topic.name)
        found = existing.get(name)
        if found is None:
            changes.append(Change(name, "create", f"{topic.partitions} partitions, replication {topic.replication}"))
            continue
        changes.extend(_differences(name, topic, found))
    return changes


def _differences(name: str, topic: Topic, found: ExistingTopic) -> list[Change]:
    changes = []
    if found.partitions != topic.partitions and topic.name in FIXED_PARTITIONS:
        changes.append(Change(name, "drift", f"has {found.partitions} partitions, topics.yaml says "
                                            f"{topic.partitions}: {FIXED_PARTITIONS[topic.name]}"))
    elif found.partitions < topic.partitions:
        changes.append(Change(name, "add-partitions", f"{found.partitions} → {topic.partitions}"))
    elif found.partitions > topic.partitions:
        changes.append(Change(name, "drift", f"has {found.partitions} partitions, topics.yaml says "
                                            f"{topic.partitions} (Kafka cannot remove partitions)"))
    if found.replication != topic.replication:
        changes.append(Change(name, "drift", f"replication {found.replication}, topics.yaml says "
                                            f"{topic.replication} (reassign partitions to change it)"))
    for key, wanted in sorted(topic.config.items()):
        actual = found.config.get(key)
        if actual != wanted:
            changes.append(Change(name, "set-config", f"{key}: {actual} → {wanted}"))
    return changes


class TopicAdmin:
    def __init__(self, bus: Bus):
        self.bus = bus
        self.admin = AdminClient(admin_config(bus.settings))

    def existing(self) -> dict[str, ExistingTopic]:
        metadata = self.admin.list_topics(timeout=30).topics
        wanted = {self.bus.catalogue.physical(t.name) for t in self.bus.catalogue}
        names = sorted(wanted & set(metadata))
        configs = self._configs(names)
        return {name: ExistingTopic(partitions=len(metadata[name].partitions),
                                    replication=len(next(iter(metadata[name].partitions.values())).replicas),
                                    config=configs[name]) for name in names}

    def apply(self, changes: list[Change]) -> None:
        """Create topics, add partitions and set configs; drift that Kafka cannot fix is only reported."""
        by_name = {self.bus.catalogue.physical(t.name): t for t in self.bus.catalogue}
        creates = [_new_topic(name, by_name[name]) for name in {c.topic for c in changes if c.action == "create"}]
        if creates:
            _wait(self.admin.create_topics(creates, operation_timeout=30))
        grow = [NewPartitions(c.topic, by_name[c.topic].partitions) for c in changes if c.action == "add-partitions"]
        if grow:
            _wait(self.admin.create_partitions(grow))
        for name in sorted({c.topic for c in changes if c.action == "set-config"}):
            resource = ConfigResource(ConfigResource.Type.TOPIC, name, set_config=dict(by_name[name].config))
            _wait(self.admin.alter_configs([resource]))    # topics.yaml lists every config mlbus sets

    def create_with_partitions(self, name: str, partitions: int, timeout_s: float = 30.0) -> None:
        """A catalogue topic made with `partitions` rather than topics.yaml's (audit.log with another number of
        shards), with topics.yaml's config; returns once the metadata shows it (a cluster's brokers learn of a new
        topic a moment apart: `apply` right after would try to create it again). A topic already there is kept."""
        physical = self.bus.catalogue.physical(name)
        new = _new_topic(physical, dataclasses.replace(self.bus.catalogue[name], partitions=partitions))
        try:
            _wait(self.admin.create_topics([new], operation_timeout=30))
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        deadline = time.monotonic() + timeout_s
        while len(self.admin.list_topics(physical, timeout=10).topics[physical].partitions) != partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{physical} was made with {partitions} partitions but the metadata does not "
                                   f"show them after {timeout_s:.0f} s")
            time.sleep(0.1)

    def ensure_internal(self, physical: str, partitions: int) -> None:
        """A service's own topic outside the catalogue (e.g. a re-keyed stream): created if missing."""
        if physical not in self.admin.list_topics(timeout=30).topics:
            new = NewTopic(physical, num_partitions=partitions,
                           replication_factor=self.bus.settings.connection.replication or 1)
            try:
                _wait(self.admin.create_topics([new], operation_timeout=30))
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def _configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        if not names:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
        result = {}
        for resource, future in self.admin.describe_configs(resources).items():
            result[resource.name] = {k: v.value for k, v in future.result().items()}
        return result


def replication_warning(brokers: int, replication: int) -> str | None:
    """What `topics apply` says when a cluster's topics have fewer than three replicas: a partition of one replica
    loses its leader whenever its broker stops, and a transaction writing there can then be completed without
    its markers by Kafka itself (docs/explanation/guarantees.md). One broker (the local setup): nothing to say."""
    if brokers < 2 or replication >= 3:
        return None
    return (f"warning: a cluster of {brokers} brokers, but topics get {replication} replica(s): set "
            "MLBUS_REPLICATION=3 (and the brokers' min.insync.replicas to 2), else a broker that stops, even "
            "gracefully, leaves partitions without a leader and exactly once is not kept "
            "(docs/explanation/guarantees.md#a-single-broker-killed-mid-commit)")


def _new_topic(name: str, topic: Topic) -> NewTopic:
    return NewTopic(name, num_partitions=topic.partitions, replication_factor=topic.replication,
                    config=dict(topic.config))


def _wait(futures: Mapping) -> None:
    for future in futures.values():
        future.result()


def consumer_lag(bus: Bus, group: str, topics: list[str],
                 only: Collection[tuple[str, int]] | None = None) -> dict[str, int]:
    """Messages not yet committed by `group`, per catalogue topic (end offset − committed offset), through the
    bus's one long-lived LagMeter (a test or a demo that polls the lag opens no client per poll); with `only`,
    of these (catalogue topic, partition) alone (a group that commits some partitions of its topics)."""
    with _METERS_LOCK:
        known = _METERS.get(id(bus))
        if known is None or known[0]() is not bus:
            known = _METERS[id(bus)] = (weakref.ref(bus), LagMeter(bus.settings, bus.catalogue))
            weakref.finalize(bus, _forget_meter, id(bus))
    return known[1].lag(group, topics, only)


def running_lag(bus: Bus, group: str, topics: list[str], metrics_port: int) -> tuple[dict[str, int], str]:
    """A running service's lag per topic and where the figure came from: "metrics", the service's own /metrics
    (its consumer's positions: nothing that waits behind an open transaction), for every topic it reports; else,
    when it has no port, does not answer or has no partition yet, "committed": the group's committed offsets."""
    found = served(metrics_port) if metrics_port else None
    if found:
        lag: dict[str, int] = {}
        for (topic, _), consumed in found.items():
            lag[topic] = lag.get(topic, 0) + consumed.lag
        return lag, "metrics"
    return (consumer_lag(bus, group, topics), "committed") if topics else ({}, "-")


MARKER_PROBE_GAP = 16
PROBE_S = 10.0
_METERS: dict[int, tuple[weakref.ref, LagMeter]] = {}     # a Bus (by identity, while it lives) → its meter
_METERS_LOCK = threading.Lock()


def _forget_meter(bus_id: int) -> None:
    with _METERS_LOCK:
        known = _METERS.pop(bus_id, None)
    if known is not None:
        known[1].close()


class LagMeter:
    """Reads committed offsets and end offsets with clients it keeps open (one per group, one probe).

    Transactions leave commit markers that occupy offsets but are no messages: a small gap is probed with a
    read_committed consumer, and counts as empty only if the probe reached its end and found no message in it.
    A probe that could not tell in time (a slow hour, an open transaction) counts the gap as lag: "not drained
    yet" is the safe answer, and a caller polling for 0 simply asks again."""

    def __init__(self, settings: Settings, catalogue: Catalogue):
        self.settings = settings            # not the Bus: a meter must not keep its bus alive
        self.catalogue = catalogue
        self._readers: dict[str, Consumer] = {}
        self._probe: Consumer | None = None
        self._lock = threading.Lock()

    def lag(self, group: str, topics: list[str],
            only: Collection[tuple[str, int]] | None = None) -> dict[str, int]:
        with self._lock:
            gaps = self._gaps(self._reader(group), topics)
            if only is not None:
                gaps = {at: gap for at, gap in gaps.items() if at in only}
            markers_only = self._marker_only({k: v for k, v in gaps.items() if 0 < v[1] - v[0] <= MARKER_PROBE_GAP})
        lag = {topic: 0 for topic in topics}
        for (topic, partition), (committed, high) in gaps.items():
            if (topic, partition) not in markers_only:
                lag[topic] += high - committed
        return lag

    def close(self) -> None:
        with self._lock:
            for consumer in [*self._readers.values(), *([self._probe] if self._probe else [])]:
                consumer.close()
            self._readers, self._probe = {}, None

    def _reader(self, group: str) -> Consumer:
        if group not in self._readers:
            # read_uncommitted: a read_committed client asks for *stable* offsets (KIP-447) and, under sustained
            # exactly-once load, waits for a transaction that is always open — every look-up timed out. The
            # offsets it returns are the group's last committed ones either way.
            self._readers[group] = Consumer({**base_config(self.settings), "group.id": group,
                                             "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
        return self._readers[group]

    def _gaps(self, consumer: Consumer, topics: list[str]) -> dict[tuple[str, int], tuple[int, int]]:
        gaps: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in topics:
            physical = self.catalogue.physical(topic)
            metadata = consumer.list_topics(physical, timeout=10).topics[physical]
            partitions = [TopicPartition(physical, p) for p in metadata.partitions]
            for tp in retry_while_retriable(lambda: consumer.committed(partitions, timeout=10)):
                low, high = consumer.get_watermark_offsets(TopicPartition(physical, tp.partition), timeout=10)
                gaps[(topic, tp.partition)] = (tp.offset if tp.offset >= 0 else low, high)
        return gaps

    def _marker_only(self, gaps: dict[tuple[str, int], tuple[int, int]]) -> set[tuple[str, int]]:
        """The partitions whose gap the probe read to its end without finding a committed message."""
        if not gaps:
            return set()
        if self._probe is None:
            self._probe = Consumer({**base_config(self.settings), "enable.auto.commit": False,
                                    "group.id": group_id(self.settings, "lag-probe"),
                                    "isolation.level": "read_committed"})
        probe = self._probe
        where = {(self.catalogue.physical(t), p): (t, p) for t, p in gaps}
        probe.assign([TopicPartition(physical, p, gaps[key][0]) for (physical, p), key in where.items()])
        try:
            with_messages: set[tuple[str, int]] = set()
            reached: set[tuple[str, int]] = set()
            deadline = time.monotonic() + PROBE_S
            while time.monotonic() < deadline and len(with_messages | reached) < len(gaps):
                for message in probe.consume(100, 0.2):
                    if not message.error():
                        with_messages.add(where[position(message)[:2]])
                for pos in probe.position([TopicPartition(physical, p) for physical, p in where]):
                    key = where[(pos.topic, pos.partition)]
                    if pos.offset >= gaps[key][1]:
                        reached.add(key)
            return reached - with_messages
        finally:
            probe.unassign()


def service_group(bus: Bus, service: str) -> str:
    """A service's consumer group: `<ns>mlbus.<service>` when it runs as its own principal, else
    `<ns>mlbus.<principal>.<service>` (kafka.group_id), found among the broker's groups."""
    own = f"{bus.settings.connection.namespace}mlbus.{service}"
    admin = AdminClient(admin_config(bus.settings))      # kept in a name: a collected client cancels its futures
    groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid]
    prefix = f"{bus.settings.connection.namespace}mlbus."
    return own if own in groups else next(
        (g for g in groups if g.startswith(prefix) and g.endswith(f".{service}")), own)


def committed_topics(bus: Bus, group: str) -> list[str]:
    """The catalogue topics a consumer group has committed offsets for."""
    admin = AdminClient(admin_config(bus.settings))
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    partitions = next(iter(futures.values())).result().topic_partitions or []
    return sorted({bus.catalogue.logical(tp.topic) for tp in partitions})


def retry_while_retriable(call: Callable[[], T], deadline_s: float = 30.0) -> T:
    """Look-ups (group coordinator, partition leaders) fail retriably while a fresh broker loads its state:
    try again until the deadline."""
    # a failure up to the deadline is still tried again, a backoff later: the last try may start past deadline_s
    give_up = time.monotonic() + deadline_s + LOOKUP_BACKOFF_S
    return retry_while_transient(lambda _timeout: call(), give_up, LOOKUP_BACKOFF_S, not_ready_too=True)


LOOKUP_BACKOFF_S = 0.2      # between tries of a look-up that failed transiently
