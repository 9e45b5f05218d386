"""The one retry loop of the bus (retrying.retry_while_transient), on a fake clock: which errors it retries, when it
gives up, what timeout each try is given."""
from unittest import mock

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.bus.retrying import retry_while_transient

NOT_READY = KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "loading", retriable=False)
RETRIABLE = KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)


def failing(times: int, error: KafkaError, timeouts: list[float]):
    def call(timeout: float) -> str:
        timeouts.append(timeout)
        if len(timeouts) <= times:
            raise KafkaException(error)
        return "answer"
    return call


def fake_time(clock: list[float]):
    def sleep(seconds: float) -> None:
        clock[0] += seconds
    return mock.patch.multiple("services.bus.retrying.time", monotonic=lambda: clock[0], sleep=sleep)


def test_a_not_ready_error_is_retried_only_when_asked():
    clock, timeouts = [0.0], []
    with fake_time(clock):
        assert retry_while_transient(failing(2, NOT_READY, timeouts), 10.0, 0.2, not_ready_too=True) == "answer"
        with pytest.raises(KafkaException):
            retry_while_transient(failing(1, NOT_READY, []), 10.0, 0.2)
    assert len(timeouts) == 3


def test_no_try_starts_past_give_up_and_none_is_given_more_than_the_time_left():
    clock, timeouts = [0.0], []
    with fake_time(clock), pytest.raises(KafkaException):
        retry_while_transient(failing(1_000, RETRIABLE, timeouts), 1.0, 0.3, call_timeout_s=0.5)
    assert clock[0] < 1.0
    assert timeouts == pytest.approx([0.5, 0.5, 0.4, 0.3])      # the last two: the time left, then the floor
