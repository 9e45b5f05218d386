"""The ceiling of a Kafka service written in Python on this machine: a bare confluent-kafka consume → produce
pipe (no decode, no work; answers of a given size, the input's key and headers passed on), at-least-once or
transactional as the service under test commits. The scoring and audit benchmarks measure their services
beside it: its throughput on a preloaded topic (pipe_limit), and — run as a process of its own like a
service (`python -m tests.bench.pipe`, pipe_process) — its latency at a fixed rate, with how long each batch spent
producing, sending its offsets and committing (PIPE_TIMINGS: one JSON line per batch, written when it stops)."""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from services.bus import Bus
from services.bus.credentials import ADMIN
from services.bus.kafka import consumer_config, group_id, producer_config
from services.bus.runtime import settle_heap
from services.bus.topics import TopicAdmin
from tests.chaos.harness import Service, Stage


class Pipe:
    """Moves batches from one topic to another, as a service's loop would with no handler."""

    def __init__(self, bus: Bus, source: str, target: str, answer_size: int, batch: int, transactional: bool):
        self.target, self.answer, self.batch, self.transactional = target, bytes(answer_size), batch, transactional
        # per batch: messages, then seconds producing, sending the offsets (at-least-once: flushing), committing
        self.phases: list[tuple[int, float, float, float]] = []
        group = group_id(bus.settings, f"bench-pipe-{uuid.uuid4().hex[:6]}")
        self.producer = Producer(producer_config(bus.settings, "bench-pipe", group if transactional else None))
        self.consumer = Consumer({**consumer_config(bus.settings, group, "pipe"),
                                  "isolation.level": "read_committed" if transactional else "read_uncommitted"})
        if transactional:
            self.producer.init_transactions(30)
        self.consumer.subscribe([source])

    def move(self) -> int:
        """One batch, taken as the services take theirs (the first message, then what is already here), answered
        and committed: how many messages it held."""
        first = [m for m in self.consumer.consume(1, 0.5) if not m.error()]
        if not first:
            return 0
        messages = first + [m for m in self.consumer.consume(self.batch - 1, 0) if not m.error()]
        started = time.perf_counter()
        if self.transactional:
            self.producer.begin_transaction()
        for message in messages:
            while True:
                try:
                    self.producer.produce(self.target, value=self.answer, key=message.key(), headers=message.headers())
                    break
                except BufferError:
                    self.producer.poll(0.01)
        produced = time.perf_counter()
        if self.transactional:
            offsets = {(m.topic(), m.partition()): m.offset() + 1 for m in messages}
            self.producer.send_offsets_to_transaction([TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                                      self.consumer.consumer_group_metadata(), 30)
            sent = time.perf_counter()
            self.producer.commit_transaction(30)
        else:
            self.producer.flush(30)
            sent = time.perf_counter()
            self.consumer.commit(asynchronous=True)
        self.phases.append((len(messages), produced - started, sent - produced, time.perf_counter() - sent))
        return len(messages)

    def close(self) -> None:
        self.producer.flush(60)
        self.consumer.close()


def pipe_topics(stage: Stage, partitions: int = 3) -> tuple[str, str]:
    """A fresh (input, output) pair of physical topics in the stage's namespace."""
    names = tuple(f"{stage.bus.settings.connection.namespace}bench.pipe.{uuid.uuid4().hex[:6]}.{side}" for side in ("in", "out"))
    admin = TopicAdmin(stage.bus).admin             # held until the futures are done (its handle ends with it)
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(30)
    return names


def drop_topics(stage: Stage, names: tuple[str, ...]) -> None:
    admin = TopicAdmin(stage.bus).admin             # held until the futures are done (its handle ends with it)
    for future in admin.delete_topics(list(names)).values():
        future.result(30)


def preload(stage: Stage, physical: str, payloads: list[tuple]) -> None:
    """`payloads` ((topic, key, value, headers, …) as produced) onto this topic, before anything reads it; then the
    bench process's heap settled as a service settles its own at start (runtime.settle_heap): the payloads and
    whatever was measured before stay alive here, and without it the cyclic collector's passes over them took
    about half of a bare consume's CPU (perf, 2026-12-07) — a ceiling measured lower than a service meets."""
    loader = Producer(producer_config(stage.bus.settings, "bench-pipe-load"))
    for _, key, value, headers, *_ in payloads:
        while True:
            try:
                loader.produce(physical, value=value, key=key, headers=headers)
                break
            except BufferError:
                loader.poll(0.01)
    loader.flush(60)
    settle_heap()


def pipe_limit(stage: Stage, payloads: list[tuple], answer_size: int, batch: int, partitions: int = 3,
               transactional: bool = False) -> float:
    """Messages/s through the pipe: `payloads` ((topic, key, value, headers, …) as produced) moved from an
    input topic to an output topic as `answer_size`-byte answers, `batch` at a time; transactional: each
    batch's answers and offsets in one transaction, as the auditor and the exactly-once scorer commit."""
    names = pipe_topics(stage, partitions)
    preload(stage, names[0], payloads)
    pipe = Pipe(stage.bus, names[0], names[1], answer_size, batch, transactional)
    moved, started = 0, None
    deadline = time.monotonic() + 300
    while moved < len(payloads) and time.monotonic() < deadline:
        count = pipe.move()
        if count:
            started = started or time.perf_counter()
            moved += count
    pipe.close()
    elapsed = time.perf_counter() - started
    drop_topics(stage, names)
    return moved / elapsed


def consume_limit(stage: Stage, payloads: list[tuple], batch: int, partitions: int = 3) -> float:
    """Messages/s of consuming `payloads` (as pipe_limit loads them) with nothing else — no produce, no commit, no
    work: read_committed, `batch` at a time, as the services take their batches. What no consumer of this shape can
    pass on this machine, whatever it does with the messages."""
    names = pipe_topics(stage, partitions)
    preload(stage, names[0], payloads)
    group = group_id(stage.bus.settings, f"bench-consume-{uuid.uuid4().hex[:6]}")
    consumer = Consumer({**consumer_config(stage.bus.settings, group, "consume"), "isolation.level": "read_committed"})
    consumer.subscribe([names[0]])
    read, started = 0, None
    deadline = time.monotonic() + 300
    while read < len(payloads) and time.monotonic() < deadline:
        messages = [m for m in consumer.consume(batch, 0.5) if not m.error()]
        if messages:
            started = started or time.perf_counter()
            read += len(messages)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    drop_topics(stage, names)
    return read / elapsed if elapsed > 0 else 0.0


def pipe_process(stage: Stage, source: str, target: str, answer_size: int, batch: int, transactional: bool,
                 timings: Path | None = None) -> Service:
    """The pipe as a process of its own, started like a service (stop it with .stop()); timings: where it
    writes its batches' phases when it stops (read them with pipe_phases)."""
    return stage.start(f"pipe-{uuid.uuid4().hex[:4]}", "tests.bench.pipe", PIPE_SOURCE=source, PIPE_TARGET=target,
                       PIPE_ANSWER_SIZE=str(answer_size), PIPE_BATCH=str(batch),
                       PIPE_TRANSACTIONAL="1" if transactional else "0", PIPE_TIMINGS=str(timings or ""))


def pipe_phases(timings: Path) -> str:
    """What a pipe process's batches spent, as percentiles: "produce p50/p99, offsets/flush …, commit … ms"."""
    rows = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    if not rows:
        return "phases not recorded"
    columns = list(zip(*rows))

    def percentiles(values) -> str:
        ordered = sorted(values)
        return "/".join(f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}" for q in (0.5, 0.99))
    return (f"{len(rows):,} batches of {sorted(columns[0])[len(rows) // 2]} (median); p50/p99 ms: produce "
            f"{percentiles(columns[1])}, offsets/flush {percentiles(columns[2])}, commit {percentiles(columns[3])}")


def main() -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    pipe = Pipe(Bus.from_env(principal=ADMIN), os.environ["PIPE_SOURCE"], os.environ["PIPE_TARGET"],
                int(os.environ["PIPE_ANSWER_SIZE"]), int(os.environ["PIPE_BATCH"]),
                os.environ["PIPE_TRANSACTIONAL"] == "1")
    settle_heap()                               # as the services do once started
    while not stopping:
        pipe.move()
    pipe.close()
    if os.environ.get("PIPE_TIMINGS"):
        Path(os.environ["PIPE_TIMINGS"]).write_text("".join(json.dumps(phase) + "\n" for phase in pipe.phases))


if __name__ == "__main__":
    main()
