"""A Kafka call tried again while librdkafka says it may still succeed: the one loop behind the look-ups'
retries (topics.retry_while_retriable) and a transaction's steps' (transactions.commit_transactional)."""
from __future__ import annotations

import math
import time
from typing import Callable, TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")
# What a broker that has just (re)started answers for a while: worth another try, not a crash.
NOT_READY_YET = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                 KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT, KafkaError.NOT_LEADER_FOR_PARTITION,
                 KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TRANSPORT}


def retry_while_transient(call: Callable[[float], T], give_up: float, backoff_s: float,
                          call_timeout_s: float = math.inf, not_ready_too: bool = False) -> T:
    """call(timeout), again after backoff_s while it fails retriably (with not_ready_too, also with a
    NOT_READY_YET error that librdkafka does not flag retriable); no try starts at or past give_up (time.monotonic)
    and none is given more than call_timeout_s or the time left (at least backoff_s). What is not transient, or
    still failing at give_up, is raised."""
    while True:
        try:
            return call(max(min(call_timeout_s, give_up - time.monotonic()), backoff_s))
        except KafkaException as failure:
            error = failure.args[0]
            transient = error.retriable() or (not_ready_too and error.code() in NOT_READY_YET)
            if not transient or time.monotonic() + backoff_s >= give_up:
                raise
            time.sleep(backoff_s)
