"""Red team, session 7: today's fixes attacked from outside (6f5a42d transactional retries and rebalance patience,
569713c features.online values ahead of the clock, e6ba89e a window's numbers as fsum partials). Each test is a
finding: a strict xfail names what is still open, a plain test holds a fix made with it."""
from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from unittest import mock

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.bus.errors import InfrastructureError
from services.bus.runtime import ServiceRuntime
from services.bus.transactions import MAX_REWINDS, REBALANCING, TRANSACTION_DEADLINE_S, AbortRun
from services.bus.watchdog import Watchdog
from services.console.view import ConsoleView
from services.domain.features_serving import stored_value_problem
from services.domain.features_windows import Numbers, SourceEvent, Windows
from services.drift_watcher.feature_views import FeatureWatch
from tests.unit.bus.test_transaction_abort import OFFSETS, runtime
from tests.unit.features.test_windows import HOUR, TOPIC, view_of

TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)
REFUSED_RECORD = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "a record the broker refused", txn_requires_abort=True)


# 1. Transactions: the retries and the watchdog -------------------------------------------------------------------

class SlowProducer:
    """A producer whose calls fail retriably, each taking the whole timeout it is given (what librdkafka's own
    _TIMED_OUT is: a call that waited its timeout out), on a fake clock the watchdog reads too."""

    def __init__(self, clock: list[float], watchdog: Watchdog, failing: dict[str, int]):
        self.clock, self.watchdog, self.failing = clock, watchdog, failing      # call → how many of them fail
        self.calls: list[tuple[str, float]] = []
        self.failure_s: float | None = None         # how long a failing call takes (None: its whole timeout)

    def _call(self, name: str, timeout: float) -> None:
        self.calls.append((name, timeout))
        if self.failing.get(name, 0) != 0:
            self.failing[name] -= 1
            self.clock[0] += timeout if self.failure_s is None else self.failure_s
            self.watchdog.check()
            raise KafkaException(TIMED_OUT)
        self.clock[0] += 0.01
        self.watchdog.check()

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self._call("send_offsets", timeout)

    def commit_transaction(self, timeout=None):
        self._call("commit", 30 if timeout is None else timeout)

    def abort_transaction(self, timeout):
        self.calls.append(("abort", timeout))

    def begin_transaction(self):
        self.calls.append(("begin", 0))


def slow_runtime(failing: dict[str, int]):
    clock, expired = [1000.0], []
    service = runtime([], rewindable=True)
    service.watchdog = Watchdog(lambda what, seconds: expired.append(what), clock=lambda: clock[0], background=False)
    service.publisher.producer = SlowProducer(clock, service.watchdog, failing)
    return service, clock, expired


def fake_time(clock: list[float]):
    def sleep(seconds: float) -> None:
        clock[0] += seconds
    return mock.patch.multiple("services.bus.transactions.time", monotonic=lambda: clock[0], sleep=sleep)


def test_a_commit_timing_out_twice_gives_up_to_after_failed_commit_before_the_watchdog_kills_the_process():
    """FINDING (fixed): retry_transactional gave each step TRANSACTION_DEADLINE_S - 10 of its own and each call its
    full 30 s, all inside one watchdog of TRANSACTION_DEADLINE_S: a commit that timed out (30 s, retriable) was called
    again for 30 s more, and the watchdog ended the process at 45 s (os._exit, logged as librdkafka#5456 - a call
    blocked past its timeout, which none was) instead of the retry giving up to after_failed_commit. Now no call is
    given more time than the budget has left: a clean crash, logged as what it is, the consumer closed."""
    service, clock, expired = slow_runtime({"commit": 2})
    with fake_time(clock), pytest.raises(KafkaException):
        service.commit(OFFSETS)
    assert expired == []
    assert [name for name, _ in service.publisher.producer.calls] == ["send_offsets", "commit", "commit"]


def test_retriable_failures_of_both_steps_share_one_budget_and_give_up_before_the_watchdog():
    """FINDING (fixed): send_offsets failing retriably for most of its budget, then commit failing retriably, ran
    two budgets back to back (about 70 s) under the 45 s watchdog. Now the retries give up in time: a clean crash
    (after_failed_commit: retriable, still failing at the deadline) that the runtime logs, not the watchdog's exit."""
    service, clock, expired = slow_runtime({"send_offsets": 3, "commit": 1_000})
    started = clock[0]
    with fake_time(clock), pytest.raises(KafkaException):
        service.commit(OFFSETS)
    assert expired == [] and clock[0] - started < TRANSACTION_DEADLINE_S


def test_a_ticks_transaction_retries_a_retriable_commit_as_a_batchs_does():
    """FINDING (fixed): the same class as 6f5a42d's, on the other path that commits a transaction: events that
    answer no input (a ticker's, e.g. the deployer's; a stop's) were committed by a bare commit_transaction, so a
    coordinator moving during a tick crashed the copy that a batch's commit would have retried through."""
    service, clock, expired = slow_runtime({"commit": 2})
    published = []
    publisher = service.publisher
    publisher.prepared = lambda event, cause=None: event
    publisher.send = published.append
    publisher.producer.failure_s = 1.0              # a coordinator loading: refused at once
    ticking = ServiceRuntime.__new__(ServiceRuntime)        # its parts only: the committer's, no broker
    ticking.__dict__.update(service="scorer", config=service.config, publisher=publisher, committer=service)
    with fake_time(clock):
        ticking._publish_alone(["tick-event"])
    assert published == ["tick-event"] and expired == []
    assert [name for name, _ in publisher.producer.calls] == ["begin", "commit", "commit", "commit"]


# Fixed (AbortRun: MAX_REWINDS counts only the aborts that are not a rebalance's; the bridge judges as the runtime)
def test_aborts_of_a_rebalance_do_not_use_up_the_rewinds_of_other_aborts():
    service = runtime([KafkaError(REBALANCING[0], "generation moved", txn_requires_abort=True)] * 5 +
                      [REFUSED_RECORD], rewindable=True)
    for _ in range(5):
        assert service.commit(OFFSETS) is False
    assert service.commit(OFFSETS) is False            # rewound: the first refused record of its run


# 2. features.online: values ahead of the reader's clock -----------------------------------------------------------

def last_value_of_a_late_view(lateness: str, now_ms: int):
    """A `last` feature's value as the featurizer makes it for an event happening now: dated its time plus the
    view's lateness (a later event may still arrive until then)."""
    view = view_of({"name": "last_amount", "aggregate": "last", "field": "amount"}, lateness=lateness)
    [value] = Windows(view).add(SourceEvent("c1", now_ms, {"amount": 3.0}, TOPIC, 0, 0))
    return view, value


# Fixed: the rule allows an hour plus the view's lateness (the longest a view may have where the view is unknown)
def test_a_last_value_of_a_view_with_two_hours_lateness_is_taken_by_every_reader():
    now_ms = int(time.time() * 1000)
    view, value = last_value_of_a_late_view("2h", now_ms)
    assert value.event_ms == now_ms + 2 * HOUR
    assert stored_value_problem(value, now_ms) is None                 # the scorer's store
    watch = FeatureWatch()
    watch.define(view)
    assert watch.add(value, now_ms) is None                             # the drift-watcher


def test_a_last_value_of_a_view_with_half_an_hour_lateness_is_taken():
    now_ms = int(time.time() * 1000)
    _, value = last_value_of_a_late_view("30m", now_ms)
    assert stored_value_problem(value, now_ms) is None


def test_the_consoles_computed_at_is_not_frozen_by_a_value_computed_far_ahead_of_the_clock():
    """FINDING (fixed): 569713c kept a far-future event_time out of the console's freshness but not the record's
    other time, computed_at, taken as the newest by the same `>`: a value computed 'at' 9999 showed the view as
    computed then, for good. Now a computed_at ahead of the clock is not taken either."""
    view = ConsoleView()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    value = {"view": "v", "version": "a" * 64, "feature": "f", "entity": "e", "event_time": now, "value": 1.0,
             "window_start": None, "sources": [], "computed_at": now}
    view.apply("mlbus.FeatureValue", {**value, "computed_at": datetime(9999, 12, 31, tzinfo=timezone.utc)}, at_ms=0)
    view.apply("mlbus.FeatureValue", {**value, "computed_at": now + timedelta(seconds=1)}, at_ms=0)
    held = view.feature_values[("v", "a" * 64)]
    assert held["values"] == 2 and held["computed_at"] == now + timedelta(seconds=1)


# 3. A window's numbers: partials, count, least, most ---------------------------------------------------------------

def summed(numbers: list[float]) -> Numbers:
    kept = Numbers()
    for number in numbers:
        kept.add(number)
    return kept


def outcome(sum_of):
    try:
        return repr(sum_of())
    except OverflowError:
        return "overflow"


HARD = [
    [-0.0], [-0.0, -0.0], [0.0, -0.0], [-0.0, 0.0], [5e-324, -5e-324], [5e-324] * 1000,
    [1.7976931348623157e308, 1.7976931348623157e308, -1.7976931348623157e308],      # overflow, then cancellation
    [1.7976931348623157e308, -1.7976931348623157e308, 1.7976931348623157e308],
    [8.98846567431158e307, 8.98846567431158e307, -5e-324],                           # exactly past the largest
    [2.0 ** 53, 1.0, 1.0], [1e16, 1.0, -1e16], [0.1] * 10, [1e308, 1e-308, -1e308],
    [2.0 ** e * (-1) ** e for e in range(-1074, 1024, 7)],
]


@pytest.mark.parametrize("numbers", HARD)
def test_the_partials_give_what_fsum_min_max_and_mean_of_the_list_give(numbers):
    kept = summed(numbers)
    exact = sum(map(Fraction, numbers), Fraction(0))
    assert outcome(kept.sum) == outcome(lambda: float(exact))         # the exact sum, rounded once
    assert (repr(kept.least), repr(kept.most), kept.count) == (repr(min(numbers)), repr(max(numbers)), len(numbers))


def crafted_amounts() -> list[float]:
    """Amounts an insider writing business.events can send: every third exponent, all 53 bits set, each followed
    by minus a third of it - fsum's partials (non-overlapping, but each may hold few bits) grow past 600."""
    amounts = []
    for _ in range(20):
        for exponent in range(-1074, 1000, 3):
            number = math.ldexp(2.0 - 2.0 ** -52, exponent) if exponent >= -1022 else 2.0 ** exponent
            amounts += [number, -number / 3]
    return amounts


def test_a_windows_running_sum_stays_small_whatever_numbers_it_is_given():
    """FINDING (fixed): e6ba89e kept Shewchuk's partials, said to be 'a few dozen floats at most'; they are not:
    the amounts above leave 673 partials (676 at most) without any overflow, and each later number of the window
    walks all of them in Python (~54 us an event and window, measured, against ~1 us: a sliding window of 60
    slides multiplies it by 60) - CPU any data publisher can make the featurizer spend. Now the running sum is one
    integer of units of 2**-1074: its size is bounded by the range of doubles, and adding is one addition."""
    kept = summed(crafted_amounts())
    assert len(repr(kept.__dict__)) < 2_000                       # a count, a least, a most and one ~2,100-bit int
    assert kept.sum() == math.fsum(crafted_amounts())


def test_a_windows_sum_does_not_depend_on_the_order_its_events_arrived_in():
    """FINDING (fixed): the module says 'arrival order changes no value', but math.fsum's intermediate overflow
    (kept by e6ba89e) does: amounts 1e308, 1e308, -1e308 made no value (None), the same three arriving as 1e308,
    -1e308, 1e308 made 1e308. Events of several partitions reach a window in an order that batching decides, so a
    rebuild or backfill could emit another value than the live run did (online vs offline store, audit reproduce).
    Now the exact sum is rounded once: past what a double holds only when the exact sum is."""
    view = view_of({"name": "sum_1h", "aggregate": "sum", "field": "amount", "window": "1h"})
    made = []
    for amounts in ([1e308, 1e308, -1e308], [1e308, -1e308, 1e308]):
        windows = Windows(view)
        for offset, amount in enumerate(amounts):
            windows.add(SourceEvent("c1", 10 * HOUR + offset, {"amount": amount}, TOPIC, 0, offset))
        [value] = [v for v in windows.close() if v.window_start_ms == 10 * HOUR]
        made.append(value.value)
    assert made == [1e308, 1e308]
    past = Numbers()
    for amount in (1.7976931348623157e308, 1.7976931348623157e308, -1e308):
        past.add(amount)
    with pytest.raises(OverflowError):                      # the exact sum itself is past what a double holds
        past.sum()


class RefusingProducer:
    """A transactional producer whose every transaction the broker makes abortable (a copy it refuses)."""

    def __init__(self):
        self.calls: list[str] = []

    def begin_transaction(self):
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self.calls.append("send_offsets")
        raise KafkaException(REFUSED_RECORD)

    def commit_transaction(self, timeout=None):
        self.calls.append("commit")

    def abort_transaction(self, timeout=None):
        self.calls.append("abort")


# Fixed (AbortRun: MAX_REWINDS counts only the aborts that are not a rebalance's; the bridge judges as the runtime)
def test_the_export_bridge_stops_rewinding_a_batch_aborted_again_and_again():
    from services.exporter.bridge import ExportBridge

    bridge = ExportBridge.__new__(ExportBridge)
    reports: list[str] = []
    bridge.producer, bridge.report, bridge._aborts = RefusingProducer(), reports.append, AbortRun()
    bridge.consumer = type("Consumer", (), {"consumer_group_metadata": lambda self: object(),
                                            "seek": lambda self, partition: None})()
    with pytest.raises((InfrastructureError, KafkaException)):   # a loud restart, as the runtime's
        for _ in range(MAX_REWINDS + 5):
            bridge.transact([])
    assert bridge.producer.calls.count("abort") <= MAX_REWINDS + 1
