"""The bus's half of `mlbus backup` and `mlbus restore`: every catalogue topic's records, bytes as they are (key,
value, headers, timestamp and original offset) in one Avro container file per partition, and every mlbus
consumer group's committed offsets; restored onto empty topics in order, with each group's offsets moved to
where its next record now sits (a fresh topic numbers the records 0, 1, 2, … — the originals had gaps from
transaction markers and compaction).

Layout of a backup folder (format BACKUP_FORMAT):
    manifest.json                    what is in it: topics, partitions, record counts, groups, files, sha256s
    topics/<topic>/<partition>.avro  the records (schema BACKUP_RECORD, readable by any Avro library)
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, cast

import fastavro
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from fastavro.write import Writer

from .consumed import headers_of, position
from .context import Bus
from .kafka import admin_config, producer_config
from .replay import read_messages
from .topics import TopicAdmin, plan_topics, retry_while_retriable

BACKUP_FORMAT = "mlbus-backup/1"
BACKUP_RECORD = fastavro.parse_schema({
    "type": "record", "name": "BackupRecord", "namespace": "mlbus.backup",
    "doc": "One Kafka record as it was on its partition: bytes untouched, the offset it had there.",
    "fields": [
        {"name": "offset", "type": "long"},
        {"name": "timestamp", "type": "long", "doc": "ms since the epoch, as the broker kept it"},
        {"name": "key", "type": ["null", "bytes"]},
        {"name": "value", "type": ["null", "bytes"], "doc": "null: a tombstone (compacted topics)"},
        {"name": "headers", "type": {"type": "array", "items": {
            "type": "record", "name": "Header",
            "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": ["null", "bytes"]}]}}},
    ]})
GROUP_PREFIX = "mlbus."          # after the namespace: every mlbus consumer group (kafka.group_id)


class RestoreRefused(RuntimeError):
    """The target is not fresh, or the backup is damaged: nothing was written."""


def restored_offset(original_offsets: list[int], committed: int) -> int:
    """Where a group that had committed `committed` (the next offset it would read) resumes on the restored
    partition, whose records are numbered 0.. in the order of `original_offsets` (ascending): at the first
    record it had not read yet."""
    return bisect.bisect_left(original_offsets, committed)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class PartitionFile:
    topic: str           # logical name
    partition: int
    records: int
    sha256: str

    @property
    def path(self) -> str:
        return partition_path(self.topic, self.partition)


def partition_path(topic: str, partition: int) -> str:
    return f"topics/{topic}/{partition}.avro"


@dataclass
class _Writing:
    """One partition's file while the backup reads its records."""
    stream: BinaryIO
    writer: Writer
    records: int = 0


def back_up_topics(bus: Bus, dest: Path, progress: Callable[[str], None] = lambda line: None) -> dict:
    """Every committed record of every catalogue topic, up to its end now, into dest/topics; and the committed
    offsets of every mlbus consumer group (taken first, so no group is ahead of the records kept). The
    manifest's "topics" and "groups" parts."""
    groups = committed_offsets(bus)
    catalogue = bus.catalogue
    writing: dict[tuple[str, int], _Writing] = {}
    try:
        for message in read_messages(bus, [t.name for t in catalogue], timeout_s=600):
            physical, partition, offset = position(message)
            where = (catalogue.logical(physical), partition)
            if where not in writing:
                path = dest / partition_path(*where)
                path.parent.mkdir(parents=True, exist_ok=True)
                stream = path.open("wb")
                writing[where] = _Writing(stream, Writer(stream, BACKUP_RECORD, codec="deflate"))
            into = writing[where]
            # A consumed message's headers are (key, bytes) pairs; the stubs also allow a producer's dict.
            headers = headers_of(message)
            into.writer.write({"offset": offset, "timestamp": message.timestamp()[1], "key": message.key(),
                               "value": message.value(),
                               "headers": [{"key": k, "value": v} for k, v in headers]})
            into.records += 1
    finally:
        for into in writing.values():
            into.writer.flush()
            into.stream.close()
    files = [PartitionFile(topic, partition, into.records, sha256_file(dest / partition_path(topic, partition)))
             for (topic, partition), into in sorted(writing.items())]
    for file in files:
        progress(f"{file.topic}[{file.partition}]: {file.records:,} records")
    return {"topics": {t.name: {"partitions": t.partitions,
                                "files": [f.__dict__ for f in files if f.topic == t.name]} for t in catalogue},
            "groups": groups}


def committed_offsets(bus: Bus) -> dict[str, dict[str, dict[str, int]]]:
    """group (without the namespace) → logical topic → partition → committed offset, for mlbus's groups."""
    admin = AdminClient(admin_config(bus.settings))
    prefix = bus.settings.connection.namespace + GROUP_PREFIX
    listed = admin.list_consumer_groups(request_timeout=30).result()
    names = sorted(g.group_id for g in listed.valid if g.group_id.startswith(prefix))
    found: dict[str, dict[str, dict[str, int]]] = {}
    for name in names:
        [future] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(name)]).values()
        for tp in future.result().topic_partitions or []:
            if tp.offset < 0 or not tp.topic.startswith(bus.settings.connection.namespace):
                continue
            topic = bus.catalogue.logical(tp.topic)
            if topic in bus.catalogue.topics:
                found.setdefault(name.removeprefix(bus.settings.connection.namespace), {}).setdefault(topic, {})[
                    str(tp.partition)] = tp.offset
    return found


def read_partition(path: Path) -> Iterable[dict]:
    with path.open("rb") as stream:
        yield from cast("Iterable[dict]", fastavro.reader(stream))     # BACKUP_RECORD records: dicts


def check_restorable(bus: Bus, source: Path, manifest: dict) -> list[PartitionFile]:
    """The backup's partition files, each checked against its sha256 and the catalogue; the catalogue's topics
    made if missing, and every one of them empty — else RestoreRefused, before anything is written."""
    files = [PartitionFile(**f) for topic in manifest["topics"].values() for f in topic["files"]]
    for file in files:
        if file.topic not in bus.catalogue.topics or file.partition >= bus.catalogue[file.topic].partitions:
            raise RestoreRefused(f"{file.path}: no such topic partition in topics.yaml")
        if sha256_file(source / file.path) != file.sha256:
            raise RestoreRefused(f"{file.path} does not match the manifest's sha256: the backup is damaged")
    admin = TopicAdmin(bus)
    admin.apply(plan_topics(bus.catalogue, admin.existing()))
    not_empty = non_empty_topics(bus)
    if not_empty:
        raise RestoreRefused(f"restore needs empty topics; these hold records already: {', '.join(not_empty)} "
                             "(restore onto a fresh cluster or namespace, before `mlbus acl apply`)")
    return files


def restore_topics(bus: Bus, source: Path, manifest: dict, files: list[PartitionFile],
                   progress: Callable[[str], None] = lambda line: None) -> int:
    """Write each partition's records in their order (idempotent producer: no gaps, no reordering) onto the
    empty topics check_restorable vouched for, then set each group's offsets. Returns the records written."""
    topic_admin = TopicAdmin(bus)
    keep_original_times(bus, topic_admin)
    producer = Producer({**producer_config(bus.settings, "mlbus-restore"), "linger.ms": 50})
    failures: list[str] = []

    def delivered(error, message) -> None:
        if error is not None:
            failures.append(f"{message.topic()}[{message.partition()}]: {error}")

    written = 0
    original_offsets: dict[tuple[str, int], list[int]] = {}
    for file in files:
        physical, offsets = bus.catalogue.physical(file.topic), []
        for record in read_partition(source / file.path):
            while True:
                try:
                    producer.produce(physical, value=record["value"], key=record["key"], partition=file.partition,
                                     timestamp=record["timestamp"], on_delivery=delivered,
                                     headers=[(h["key"], h["value"]) for h in record["headers"]])
                    break
                except BufferError:              # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
            offsets.append(record["offset"])
            producer.poll(0)
        original_offsets[(file.topic, file.partition)] = offsets
        written += len(offsets)
        remaining = producer.flush(300)
        if failures or remaining:
            raise RuntimeError(f"restore: {file.path} not fully written: {failures or f'{remaining} undelivered'}")
        progress(f"{file.topic}[{file.partition}]: {len(offsets):,} records")
    topic_admin.apply(plan_topics(bus.catalogue, topic_admin.existing()))     # LogAppendTime again where it was
    set_group_offsets(bus, manifest["groups"], original_offsets)
    return written


def keep_original_times(bus: Bus, topic_admin: TopicAdmin) -> None:
    """Topics that take the broker's time (LogAppendTime: the time of a signed act) would stamp every restored
    record with the time of the restore; while restoring, they keep the producer's — the original — time."""
    for topic in bus.catalogue:
        if topic.config.get("message.timestamp.type") == "LogAppendTime":
            config = {**topic.config, "message.timestamp.type": "CreateTime"}
            resource = ConfigResource(ConfigResource.Type.TOPIC, bus.catalogue.physical(topic.name), set_config=config)
            for future in topic_admin.admin.alter_configs([resource]).values():
                future.result()


def non_empty_topics(bus: Bus) -> list[str]:
    consumer = Consumer({**admin_config(bus.settings), "group.id": f"{bus.settings.connection.namespace}mlbus.restore"})
    try:
        found = []
        for topic in bus.catalogue:
            physical = bus.catalogue.physical(topic.name)
            metadata = consumer.list_topics(physical, timeout=30).topics[physical]
            if any(retry_while_retriable(lambda: consumer.get_watermark_offsets(TopicPartition(physical, p),
                                                                                timeout=30))[1] > 0
                   for p in metadata.partitions):      # a topic made a moment ago may not have its leader yet
                found.append(topic.name)
        return found
    finally:
        consumer.close()


def set_group_offsets(bus: Bus, groups: dict, original_offsets: dict[tuple[str, int], list[int]]) -> None:
    admin = AdminClient(admin_config(bus.settings))
    for group, topics in sorted(groups.items()):
        partitions = [TopicPartition(bus.catalogue.physical(topic), int(partition),
                                     restored_offset(original_offsets.get((topic, int(partition)), []), committed))
                      for topic, by_partition in topics.items() for partition, committed in by_partition.items()]
        [future] = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(bus.settings.connection.namespace + group, partitions)]).values()
        future.result()
