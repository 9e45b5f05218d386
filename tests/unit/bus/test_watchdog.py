"""The runtime's watchdog, pure (a fake clock, check() called by hand): a call still running past its
deadline triggers the expiry with its name; one that returned in time never does."""
from services.bus.watchdog import Watchdog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_call_past_its_deadline_expires_with_its_name():
    clock, expired = Clock(), []
    watchdog = Watchdog(lambda what, seconds: expired.append((what, seconds)), clock=clock, background=False)
    with watchdog.deadline("commit", 90):
        clock.now += 89
        assert not watchdog.check()
        clock.now += 2
        assert watchdog.check()
    assert expired == [("commit", 90)]


def test_a_call_that_returned_in_time_never_expires():
    clock, expired = Clock(), []
    watchdog = Watchdog(lambda what, seconds: expired.append(what), clock=clock, background=False)
    with watchdog.deadline("commit", 90):
        clock.now += 10
    clock.now += 1000
    assert not watchdog.check() and expired == []
