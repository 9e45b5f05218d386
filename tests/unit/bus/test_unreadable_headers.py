"""A message whose headers the client cannot read (a header key not UTF-8: confluent-kafka raises and leaves a
broken list that must not be read again) is remembered by consumed.unreadable, and headers_of never reads its
headers again. The memory is bounded; what it forgets is the oldest, one at a time, so a message remembered an
instant ago — by one shard's thread of the auditor, before it audits the message — stays remembered while the
other threads remember others (it was cleared whole at the bound)."""
from __future__ import annotations

import threading

from services.bus import consumed
from services.bus.consumed import UNREADABLE_HEADERS, headers_of, unreadable


class Broken:
    """A consumed message whose headers the client cannot read; reading them twice is the crash to avoid."""

    def __init__(self) -> None:
        self.reads = 0

    def headers(self):
        self.reads += 1
        raise SystemError("a header key is not UTF-8")


def test_a_message_stays_remembered_while_fewer_than_the_bound_come_after_it():
    consumed._unreadable.clear()
    first = Broken()
    assert headers_of(first) == UNREADABLE_HEADERS and first.reads == 1
    others = [Broken() for _ in range(consumed._KEPT - 1)]
    for other in others:
        unreadable(other)
    assert headers_of(first) == UNREADABLE_HEADERS and first.reads == 1      # not read again
    unreadable(Broken())                                 # one more than the bound: the oldest goes, only it
    assert len(consumed._unreadable) == consumed._KEPT
    assert all(consumed._unreadable.get(id(o)) is o for o in others)


def test_threads_remembering_at_once_keep_the_bound_without_an_error():
    consumed._unreadable.clear()
    errors: list[BaseException] = []
    sizes: list[int] = []

    def remember() -> None:
        try:
            for _ in range(3 * consumed._KEPT):
                unreadable(Broken())
                sizes.append(len(consumed._unreadable))
        except BaseException as error:          # noqa: BLE001 - a thread's error is the test's
            errors.append(error)

    threads = [threading.Thread(target=remember) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert max(sizes) <= consumed._KEPT and len(consumed._unreadable) == consumed._KEPT
