"""The compiled consumer (services/native/src/consumer.rs) behind the part of confluent-kafka's Consumer that the
runtime uses for a transactional service whose partitions are assigned, not subscribed (the auditor's shards).

It is the same librdkafka — the very library confluent-kafka loaded, found in this process's memory map — with the
same settings; what differs is what a batch costs in Python: its messages are compiled objects whose fields become
Python objects only when asked (the auditor's pager reads them without Python), where the client makes a Message,
its topic, key and value, and a list of header tuples for every message. `native_consumer()` gives the client's
Consumer where the compiled one cannot be had (no Rust build, MLBUS_NATIVE=off, a librdkafka not found)."""
from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, cast

from confluent_kafka import Consumer, KafkaException, TopicPartition

from .native import native

SEEK_TIMEOUT_S = 30.0
MAX_MESSAGES = 1_000_000        # the client's bound on consume(num_messages): past it, a ValueError
WAIT_S = 3600.0                 # consume(timeout=-1) waits this long at a time, until a message comes


def librdkafka_path(maps: str | None = None) -> str | None:
    """The path of the librdkafka this process loaded for confluent-kafka (from /proc/self/maps), or None."""
    try:
        text = Path("/proc/self/maps").read_text() if maps is None else maps
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        # a library replaced on disk since it was loaded (an upgrade in place) shows as "path (deleted)": no
        # dlopen finds it by that name, and the file now at its path is another library, not the one loaded
        if len(fields) == 6 and Path(fields[5]).name.startswith("librdkafka") and ".so" in fields[5]:
            return None if fields[5].endswith(" (deleted)") else fields[5]
    return None


def _text(value: Any) -> str:
    """A setting as librdkafka reads it: booleans as true/false, the rest as text."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class NativeConsumer:
    """confluent_kafka.Consumer's calls the runtime makes on a transactional, assigned consumer (it has no commit:
    its offsets go with the producer's transactions). `stats_cb` is called with each statistics report after the
    consume that received it."""

    def __init__(self, config: dict, library: str):
        assert native is not None
        settings = dict(config)
        self._statistics: Callable[[str], None] | None = settings.pop("stats_cb", None)
        settings.pop("on_commit", None)     # never called: its offsets go with the producer's transactions
        self._config = settings
        self._native = native.Consumer(library, [(name, _text(value)) for name, value in settings.items()])

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list:
        """As the client's: at most num_messages (0 to MAX_MESSAGES, else a ValueError — the compiled consumer
        makes room for that many first), waiting up to `timeout` seconds for the first, for ever when negative."""
        if not 0 <= num_messages <= MAX_MESSAGES:
            raise ValueError(f"num_messages must be between 0 and {MAX_MESSAGES}")
        if num_messages == 0:
            return []
        while True:
            messages = self._native.consume(num_messages, timeout if timeout >= 0 else WAIT_S)
            if self._statistics is not None and (report := self._native.take_statistics()) is not None:
                self._statistics(report)
            if messages or timeout >= 0:
                return messages

    def poll(self, timeout: float = -1):
        messages = self.consume(1, timeout)
        return messages[0] if messages else None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._native.assign(_tuples(partitions))

    def assignment(self) -> list[TopicPartition]:
        return _partitions(self._native.assignment())

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return _partitions(self._native.position(_tuples(partitions)))

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        if not cached:
            raise ValueError("the native consumer reads cached watermarks only (cached=True)")
        return self._native.get_watermark_offsets(partition.topic, partition.partition)

    def seek(self, partition: TopicPartition) -> None:
        self._native.seek(_tuples([partition]), SEEK_TIMEOUT_S)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._native.pause(_tuples(partitions))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._native.resume(_tuples(partitions))

    def consumer_group_metadata(self) -> bytes:
        return self._native.consumer_group_metadata()

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        """The cluster's metadata, through a client consumer of the same settings made for it (asked at start)."""
        client = Consumer(self._config)
        try:
            return client.list_topics(topic, timeout=timeout)
        finally:
            client.close()

    def close(self) -> None:
        """Closed whatever librdkafka says of the close, as the client's is (it never raises the error of its
        rd_kafka_consumer_close): raised from the runtime's `finally`, it took the place of what stopped the loop,
        skipped the producer's flush, and turned a shard's clean move into a failed shard."""
        with suppress(KafkaException):
            self._native.close()


def _tuples(partitions: list[TopicPartition]) -> list[tuple[str, int, int]]:
    return [(p.topic, p.partition, p.offset) for p in partitions]


def _partitions(tuples: list[tuple[str, int, int]]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for topic, partition, offset in tuples]


def native_consumer(config: dict) -> Consumer:
    """The compiled consumer for these settings where it can be had, else confluent-kafka's (also when
    MLBUS_NATIVE_CONSUMER=off: the client's, to compare)."""
    wanted = os.environ.get("MLBUS_NATIVE_CONSUMER", "").lower() not in ("off", "0", "false", "no")
    library = librdkafka_path() if wanted and native is not None and hasattr(native, "Consumer") else None
    if library is None:
        return Consumer(config)
    try:
        # typed as the client's: it answers every call the runtime makes on a transactional task's consumer
        return cast(Consumer, NativeConsumer(config, library))
    except RuntimeError:
        # the library found cannot serve it (dlopen fails, a function it calls is missing): at every start, a
        # crash loop where the client's consumer works. Settings librdkafka refuses the client refuses too.
        return Consumer(config)
