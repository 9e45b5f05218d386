"""A transaction's commit, and what a failed one calls for: the rules every transactional consume-transform-produce
loop follows (services/bus/runtime.py, the export bridge). Its steps are retried while librdkafka says they may
still succeed, within one budget that ends before the watchdog's; an abort is judged by the run of aborts it ends:
a rebalance's are bounded in time, others in count."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from confluent_kafka import KafkaError, Producer, TopicPartition

from .retrying import retry_while_transient

# Commit refusals that mean "the group is rebalancing", not "something broke".
REBALANCING = (KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID)
# Past this, a transaction's commit is stuck: its steps and their retries share a budget 10 s shorter, no call given
# more than it has left (commit_transactional); only a call that ignores its timeout (watchdog.py) runs into this.
TRANSACTION_DEADLINE_S = 45.0


def commit_transactional(producer: Producer, offsets: list[TopicPartition] | None = None, metadata: object = None,
                         budget_s: float = TRANSACTION_DEADLINE_S - 10) -> None:
    """The offsets (when given) sent into the open transaction, then the transaction committed, each step called
    with a timeout, again while librdkafka says the same call may still succeed (a coordinator moving or loading:
    a transient error, no reason to crash the copy). Both steps share one budget and no call is given more time
    than it has left: a call that times out (30 s, retriable) called again for 30 s more would run into the
    watchdog (TRANSACTION_DEADLINE_S), which ends the process as if librdkafka were stuck. What is not retriable,
    or still failing when the budget ends, is raised for after_failed_commit to judge."""
    give_up = time.monotonic() + budget_s
    if offsets is not None:
        _retry_step(lambda timeout: producer.send_offsets_to_transaction(offsets, metadata, timeout), give_up)
    _retry_step(producer.commit_transaction, give_up)


def _retry_step(call: Callable[[float], None], give_up: float) -> None:
    retry_while_transient(call, give_up, RETRY_BACKOFF_S, call_timeout_s=CALL_TIMEOUT_S)


RETRY_BACKOFF_S = 0.1      # between calls of a transaction's step that failed retriably (some fail at once)
CALL_TIMEOUT_S = 30.0      # the most one call of a transaction's step is given
MAX_REWINDS = 3            # aborted transactions in a row before a rewindable service restarts after all
# ... unless the group is rebalancing: each batch handled while it does is aborted again (a slow member, e.g. a
# paused twin that woke, holds the rebalance open up to its rebalance timeout), so those aborts are bounded in
# time, not in count (the consumer's max.poll.interval.ms default, the longest a rebalance waits for a member)
REBALANCE_PATIENCE_S = 300.0


@dataclass
class AbortRun:
    """Transactions aborted since the last commit: how many, how many of them not a rebalance's (MAX_REWINDS counts
    only these), and since when (REBALANCE_PATIENCE_S counts from the first of the run)."""
    count: int = 0
    others: int = 0
    since: float = 0.0

    def judge(self, error: KafkaError, rewindable: bool) -> str:
        """What this failed commit calls for (after_failed_commit), given the run so far."""
        now = time.monotonic()
        if self.count == 0:
            self.since = now
        return after_failed_commit(error, rewindable, self.others, now - self.since)

    def aborted(self, error: KafkaError) -> None:
        self.count += 1
        self.others += error.code() not in REBALANCING

    def committed(self) -> None:
        self.count = self.others = 0


def after_failed_commit(error: KafkaError, rewindable: bool, other_aborts_in_a_row: int = 0,
                        aborting_s: float = 0.0) -> str:
    """What a failed send_offsets_to_transaction / commit_transaction calls for. A fatal error (this copy was
    fenced by a newer one with its transactional id) or any other that does not ask for an abort (a retriable
    one still failing at the deadline): "crash". An abortable one (most often a rebalance that moved the
    group's generation while the batch was handled, e.g. a paused twin rejoining): abort, then "rewind" and
    handle the batch again where handling it again is harmless, else "abort-and-crash", so that a restart
    rebuilds the state from what was committed. Aborts in a row that are not a rebalance's, MAX_REWINDS of
    them (other_aborts_in_a_row: a rebalance's use none of these up), or aborts for longer than
    REBALANCE_PATIENCE_S (aborting_s: since the first of the run, of either kind):
    "abort-and-crash", loudly, not a silent loop."""
    if error.fatal() or not error.txn_requires_abort():
        return "crash"
    if not rewindable:
        return "abort-and-crash"
    if error.code() in REBALANCING:
        return "rewind" if aborting_s < REBALANCE_PATIENCE_S else "abort-and-crash"
    return "rewind" if other_aborts_in_a_row < MAX_REWINDS else "abort-and-crash"
