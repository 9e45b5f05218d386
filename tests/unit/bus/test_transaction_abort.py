"""A transaction that the broker makes abortable (most often a rebalance while a batch was handled: a paused twin
rejoining the group) is aborted, never a crash loop: a rewindable service reads the batch again from the first
offset of each partition it still owns; a stateful one aborts and restarts to rebuild its state; a fenced copy
(fatal) and any error that does not ask for an abort crash as before."""
from unittest import mock

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.bus.errors import InfrastructureError
from services.bus.logs import get_logger
from services.bus.metrics import ServiceMetrics
from services.bus.publish import ABORTED, Publisher
from services.bus.committer import Committer
from services.bus.runtime import RuntimeConfig
from services.bus.transactions import MAX_REWINDS, REBALANCE_PATIENCE_S, REBALANCING, after_failed_commit
from services.bus.watchdog import Watchdog

ABORTABLE = KafkaError(KafkaError.ILLEGAL_GENERATION, "generation moved", txn_requires_abort=True)
FENCED = KafkaError(KafkaError._FENCED, "fenced by a newer copy", fatal=True)
RETRIABLE = KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)
PLAIN = KafkaError(KafkaError._TRANSPORT, "broker away")


@pytest.mark.parametrize("error,rewindable,action", [
    (ABORTABLE, True, "rewind"), (ABORTABLE, False, "abort-and-crash"),
    (FENCED, True, "crash"), (FENCED, False, "crash"),
    (KafkaError(KafkaError._FENCED, "fatal and abortable", fatal=True, txn_requires_abort=True), True, "crash"),
    (PLAIN, True, "crash"), (RETRIABLE, True, "crash"),   # retriable: still failing at the deadline
])
def test_what_a_failed_commit_calls_for(error, rewindable, action):
    assert after_failed_commit(error, rewindable) == action


REFUSED_RECORD = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "a record the broker refused", txn_requires_abort=True)


def test_a_batch_aborted_again_and_again_not_by_a_rebalance_restarts_the_service():
    assert [after_failed_commit(REFUSED_RECORD, True, n) for n in range(MAX_REWINDS + 1)] == \
        ["rewind"] * MAX_REWINDS + ["abort-and-crash"]


@pytest.mark.parametrize("code", REBALANCING)
def test_a_slow_rebalance_aborts_batch_after_batch_without_a_restart_until_its_patience_runs_out(code):
    """A copy that keeps handling batches while its group rebalances (a woken twin holds the rebalance open)
    sees each of them aborted: however many in a row, they are rewound — until REBALANCE_PATIENCE_S passed."""
    error = KafkaError(code, "generation moved", txn_requires_abort=True)
    assert {after_failed_commit(error, True, n, aborting_s=n * 0.5) for n in range(0, 200)} == {"rewind"}
    assert after_failed_commit(error, True, 3, aborting_s=REBALANCE_PATIENCE_S + 1) == "abort-and-crash"
    assert after_failed_commit(error, False, 0) == "abort-and-crash"      # stateful: always a restart


class FakeProducer:
    def __init__(self, failures: list):
        self.failures = failures            # what each call to send_offsets / commit raises, in order (None: ok)
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise KafkaException(failure)

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self._call("send_offsets")

    def commit_transaction(self, timeout):
        self._call("commit")

    def abort_transaction(self, timeout):
        self.calls.append("abort")

    def poll(self, timeout):
        return 0


class FakeConsumer:
    def __init__(self, owned: list[tuple[str, int]]):
        self.owned = owned
        self.seeks: list[tuple[str, int, int]] = []
        self.unseekable: set[tuple[str, int]] = set()

    def consumer_group_metadata(self):
        return object()

    def assignment(self):
        return [TopicPartition(t, p) for t, p in self.owned]

    def seek(self, partition: TopicPartition):
        if (partition.topic, partition.partition) in self.unseekable:
            raise KafkaException(KafkaError(KafkaError._STATE, "fetch state not active"))
        self.seeks.append((partition.topic, partition.partition, partition.offset))


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int):
        self._at = (topic, partition, offset)

    def topic(self):
        return self._at[0]

    def partition(self):
        return self._at[1]

    def offset(self):
        return self._at[2]


def runtime(failures: list, rewindable: bool, owned=(("requests", 0),)) -> Committer:
    publisher = Publisher.__new__(Publisher)                # its parts only: no broker
    publisher.producer, publisher.failures, publisher._announced = FakeProducer(failures), [], {"mlbus.Prediction"}
    return Committer("scorer", RuntimeConfig(transactional=True, rewindable=rewindable), FakeConsumer(list(owned)),
                     publisher, Watchdog(lambda what, seconds: None, background=False), get_logger(),
                     ServiceMetrics("scorer"))


OFFSETS = [TopicPartition("requests", 0, 12)]


def test_a_rewindable_service_aborts_and_reads_the_batch_again_where_it_still_owns_the_partition():
    service = runtime([ABORTABLE], rewindable=True, owned=[("requests", 0)])
    assert service.commit(OFFSETS) is False
    assert service.publisher.producer.calls == ["send_offsets", "abort"]
    assert service.publisher._announced == set()           # announced inside the aborted transaction: again
    assert service.aborts.count == 1
    service.rewind([FakeMessage("requests", 0, 10), FakeMessage("requests", 0, 11), FakeMessage("requests", 1, 4)])
    assert service.consumer.seeks == [("requests", 0, 10)]   # partition 1 went to another copy: not ours to seek
    assert service.metrics.aborted.labels("scorer")._value.get() == 1


def test_a_stateful_service_aborts_then_restarts_to_rebuild_its_state():
    service = runtime([None, ABORTABLE], rewindable=False)
    with pytest.raises(InfrastructureError, match="transaction aborted"):
        service.commit(OFFSETS)
    assert service.publisher.producer.calls == ["send_offsets", "commit", "abort"]


@pytest.mark.parametrize("rewindable", [True, False])
def test_a_fenced_copy_crashes_without_aborting(rewindable):
    service = runtime([FENCED], rewindable=rewindable)
    with pytest.raises(KafkaException):
        service.commit(OFFSETS)
    assert service.publisher.producer.calls == ["send_offsets"]


def test_a_retriable_commit_is_called_again():
    service = runtime([None, RETRIABLE, RETRIABLE, None], rewindable=False)
    assert service.commit(OFFSETS) is True
    assert service.publisher.producer.calls == ["send_offsets", "commit", "commit", "commit"]


def test_reports_of_messages_purged_by_an_abort_are_no_delivery_failures():
    publisher = Publisher.__new__(Publisher)
    publisher.failures, publisher.delivered = [], 0
    for code in ABORTED:
        publisher._on_delivery(KafkaError(code), None)
    publisher._on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    assert [e.code() for e in publisher.failures] == [KafkaError.MSG_SIZE_TOO_LARGE]


def test_a_partition_still_owned_that_cannot_be_read_again_restarts_the_service_rather_than_skip_the_batch():
    service = runtime([], rewindable=True, owned=[("requests", 0)])
    service.consumer.unseekable = {("requests", 0)}
    with pytest.raises(InfrastructureError, match="could not read requests\\[0\\] again from 10"):
        service.rewind([FakeMessage("requests", 0, 10)])


def test_a_successful_commit_ends_the_run_of_aborts():
    service = runtime([ABORTABLE], rewindable=True)
    assert service.commit(OFFSETS) is False and service.commit(OFFSETS) is True
    assert service.aborts.count == 0


def test_a_retriable_send_offsets_is_called_again_not_a_crash():
    service = runtime([RETRIABLE, RETRIABLE, None, None], rewindable=False)
    assert service.commit(OFFSETS) is True
    assert service.publisher.producer.calls == ["send_offsets"] * 3 + ["commit"]


def test_rebalance_aborts_in_a_row_are_timed_from_the_first_of_the_run():
    now = [100.0]
    service = runtime([ABORTABLE, ABORTABLE, ABORTABLE], rewindable=True)
    with mock.patch("services.bus.transactions.time.monotonic", lambda: now[0]):
        assert service.commit(OFFSETS) is False
        now[0] += REBALANCE_PATIENCE_S / 2
        assert service.commit(OFFSETS) is False
        now[0] += REBALANCE_PATIENCE_S / 2 + 1
        with pytest.raises(InfrastructureError, match="transaction aborted"):
            service.commit(OFFSETS)
