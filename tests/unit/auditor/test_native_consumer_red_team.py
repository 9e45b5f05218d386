"""Red team on the compiled consumer (services/native/src/consumer.rs behind services/bus/native_consumer.py): a
stand-in for confluent-kafka's Consumer must answer every call as the client does and never take the process down
(a segfault or an abort is a crash loop). Calls that could crash run in a child process, so that a crash fails the
test instead of the test run; none needs a broker (librdkafka makes a consumer without reaching one).

The compiled class refuses them itself too: a consumer without a group, an impossible batch."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.bus.native_consumer import NativeConsumer, librdkafka_path
from services.domain.compiled import native

compiled = pytest.mark.skipif(native is None or not hasattr(native, "Consumer"),
                              reason="services/native (with its consumer) is not built here")

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = {"bootstrap.servers": "127.0.0.1:9", "log_level": 0}


def child(body: str) -> subprocess.CompletedProcess:
    """`body` run in a fresh interpreter that imported confluent-kafka (so its librdkafka is mapped)."""
    script = "import confluent_kafka\nfrom services.bus.native_consumer import NativeConsumer, librdkafka_path\n"
    return subprocess.run([sys.executable, "-c", script + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def survived(run: subprocess.CompletedProcess) -> str:
    """The child's output, once it is known to have ended on its own (not by a signal: a segfault, an abort)."""
    assert run.returncode == 0, f"the process died (rc {run.returncode}): {run.stderr[-2000:]}"
    return run.stdout


@compiled
@pytest.mark.parametrize("group", [None, ""])
def test_a_consumer_without_a_group_is_refused_as_the_client_refuses_it_not_a_segfault(group):
    """Without a group.id (or with an empty one) librdkafka has no consumer queue: rd_kafka_queue_get_consumer
    returns NULL, which consume() and close() read through. The client raises ValueError for a missing group.id."""
    config = {**NOWHERE, **({} if group is None else {"group.id": group})}
    out = survived(child(f"""
        try:
            consumer = NativeConsumer({config!r}, librdkafka_path())
        except ValueError as refused:
            print("refused:", refused)
        else:
            consumer.consume(1, 0)
            consumer.close()
            print("read through it")
    """))
    assert "refused: Failed to create consumer: group.id must be set" in out


@compiled
def test_a_batch_larger_than_the_client_takes_is_a_value_error_not_an_abort():
    """The compiled consume makes room for `count` messages before it reads: 10**12 is an 8 TB allocation, which
    Rust answers with an abort. The client refuses more than 1,000,000 (ValueError); 0 gives nothing."""
    out = survived(child(f"""
        consumer = NativeConsumer({{**{NOWHERE!r}, "group.id": "red-team"}}, librdkafka_path())
        for count in (10**12, 1_000_001, -1):
            try:
                consumer.consume(count, 0)
            except ValueError as refused:
                print("refused", count, refused)
        print("zero", consumer.consume(0, 0))
        consumer.close()
    """))
    for count in (10**12, 1_000_001, -1):
        assert f"refused {count} num_messages must be between 0 and 1000000" in out
    assert "zero []" in out


class Batches:
    """The compiled consumer's calls, answered from a script: what consume() returns each time."""

    def __init__(self, *batches: list):
        self.batches = list(batches)
        self.timeouts: list[float] = []

    def consume(self, count: int, timeout: float) -> list:
        self.timeouts.append(timeout)
        return self.batches.pop(0)

    def take_statistics(self) -> None:
        return None


def scripted(*batches: list) -> tuple[NativeConsumer, Batches]:
    consumer = NativeConsumer.__new__(NativeConsumer)
    consumer._statistics, consumer._native = None, Batches(*batches)
    return consumer, consumer._native


def test_consume_without_a_timeout_waits_until_a_message_comes_as_the_clients_does():
    """timeout=-1 (the client's default) waits for ever; the wrapper waited an hour and then returned nothing
    (poll() gave None), which no caller of the client expects from an unbounded wait."""
    consumer, script = scripted([], [], ["message"])
    assert consumer.consume(1) == ["message"] and script.timeouts == [3600.0] * 3
    consumer, script = scripted([], ["message"])
    assert consumer.poll() == "message" and len(script.timeouts) == 2
    consumer, script = scripted([])
    assert consumer.consume(5, 0.5) == [] and script.timeouts == [0.5]     # a bounded wait returns empty


LIBS = "/venv/lib/python3.11/site-packages/confluent_kafka.libs"
DELETED_MAPS = f"""7f00-7f01 r--p 00000000 08:01 123 /venv/lib/python3.11/site-packages/confluent_kafka/cimpl.so
7f02-7f03 r-xp 00001000 08:01 456 {LIBS}/librdkafka-0cb94173.so.1 (deleted)
7f06-7f07 r--p 00000000 08:01 789 /usr/lib/x86_64-linux-gnu/libc.so.6"""


def test_a_library_replaced_on_disk_since_it_was_loaded_is_not_opened_by_its_old_path():
    """After an upgrade in place the map says "path (deleted)": dlopen of that text fails (a RuntimeError from
    the constructor: the shard's rebalance callback, so the copy exits), and the path without it is another
    library than the one loaded. The client's consumer serves instead (native_consumer: no library, no native)."""
    assert librdkafka_path(DELETED_MAPS) is None


# The compiled class itself refuses what would crash it (called directly, not through NativeConsumer).

@compiled
def test_the_compiled_class_refuses_a_consumer_without_a_group():
    out = survived(child("""
        from services.domain.compiled import native
        try:
            consumer = native.Consumer(librdkafka_path(), [("bootstrap.servers", "127.0.0.1:9"), ("log_level", "0")])
            consumer.consume(1, 0.0)
            consumer.close()
        except Exception as refused:
            print("refused:", type(refused).__name__)
    """))
    assert "refused:" in out


@compiled
def test_the_compiled_class_refuses_an_impossible_batch():
    out = survived(child("""
        from services.domain.compiled import native
        consumer = native.Consumer(librdkafka_path(), [("bootstrap.servers", "127.0.0.1:9"), ("group.id", "g"),
                                                      ("log_level", "0")])
        try:
            consumer.consume(10**12, 0.0)
        except (ValueError, MemoryError, OverflowError) as refused:
            print("refused:", type(refused).__name__)
        consumer.close()
    """))
    assert "refused:" in out


class ClosesWithAnError(Batches):
    def close(self) -> None:
        from confluent_kafka import KafkaError, KafkaException
        raise KafkaException(KafkaError(KafkaError._FATAL, "close: Local: Fatal error"))


def test_close_is_quiet_about_librdkafkas_close_error_as_the_clients_close_is():
    """The client's close() ignores rd_kafka_consumer_close's result (its handle is destroyed either way); the
    compiled one raised it — from the runtime's `finally`, where it replaced the error that stopped the loop and
    skipped the producer's flush, and from a shard moving away cleanly, which then failed the copy."""
    consumer = NativeConsumer.__new__(NativeConsumer)
    consumer._native = ClosesWithAnError()
    assert consumer.close() is None


@compiled
def test_a_library_the_compiled_consumer_cannot_open_leaves_the_clients_consumer(monkeypatch):
    """A librdkafka the map names but dlopen cannot open (or one without a function the compiled consumer calls)
    made the constructor raise RuntimeError at every start of every shard: a crash loop, where the client's
    consumer serves (native_consumer's own promise: the client's where the compiled one cannot be had)."""
    from confluent_kafka import Consumer

    import services.bus.native_consumer as module
    monkeypatch.setattr(module, "librdkafka_path", lambda: "/nonexistent/librdkafka.so.1")
    consumer = module.native_consumer({**NOWHERE, "group.id": "red-team"})
    try:
        assert isinstance(consumer, Consumer)
    finally:
        consumer.close()
