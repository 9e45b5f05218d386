"""A deadline for calls that may block past their own timeout.

librdkafka's send_offsets_to_transaction can hang well past the timeout it is given when the group
coordinator went away and came back (confluentinc/librdkafka#5456, open in 2.16): the chaos suite's broker
crash left a scorer blocked there for minutes. An infrastructure failure must crash loudly so the service
is restarted, so the runtime arms this watchdog around each transaction's commit: past the deadline it logs
and exits the process (the broker aborts the open transaction; the input is handled again after the restart).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

EXIT_STUCK = 70          # EX_SOFTWARE: the supervisor restarts the service


class Watchdog:
    def __init__(self, on_expiry: Callable[[str, float], None], check_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, background: bool = True):
        self.on_expiry = on_expiry
        self.check_every_s = check_every_s
        self.clock = clock
        self._armed: tuple[str, float, float] | None = None          # (what, seconds, deadline)
        self._thread: threading.Thread | None = None
        self.background = background                # False: the caller calls check() itself (tests)

    @contextmanager
    def deadline(self, what: str, seconds: float) -> Iterator[None]:
        if self.background and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
            self._thread.start()
        self._armed = (what, seconds, self.clock() + seconds)
        try:
            yield
        finally:
            self._armed = None

    def check(self) -> bool:
        """Call on_expiry if an armed deadline has passed; whether it had."""
        armed = self._armed
        if armed is None or self.clock() <= armed[2]:
            return False
        self.on_expiry(armed[0], armed[1])
        return True

    def _watch(self) -> None:
        while not self.check():
            time.sleep(self.check_every_s)


def exit_stuck(log) -> Callable[[str, float], None]:
    """The runtime's expiry: log the cause, then leave at once (the stuck call holds no lock we need)."""
    def expire(what: str, seconds: float) -> None:
        log.critical("stuck: exiting so the service is restarted", call=what, deadline_s=seconds,
                     cause="librdkafka blocked past its timeout (confluentinc/librdkafka#5456)")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(EXIT_STUCK)
    return expire
