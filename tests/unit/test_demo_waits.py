"""The demo's waits (scripts/demo.py wait_for): it gives up when the platform stopped working for the wait's
time, keeps waiting while the services still commit inputs (up to four times the wait), and says what it was
waiting for when it gives up. A fake clock: no time passes for real."""
import importlib.util

import pytest

from services.bus.settings import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("demo_script", PROJECT_ROOT / "scripts" / "demo.py")
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(demo.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(demo.time, "sleep", fake.sleep)
    return fake


def test_an_idle_platform_ends_the_wait_after_its_time_naming_what_was_awaited(clock, monkeypatch):
    monkeypatch.setattr(demo, "bus_progress", lambda: 42)
    with pytest.raises(SystemExit, match="no the canary to finish \\(the platform did nothing for 6"):
        demo.wait_for("the canary to finish", lambda: False, timeout_s=60)
    assert 60 <= clock.now <= 62


def test_a_working_platform_is_waited_for_longer_until_the_answer_comes(clock, monkeypatch):
    monkeypatch.setattr(demo, "bus_progress", lambda: int(clock.now))       # services commit all the time
    assert demo.wait_for("v3", lambda: clock.now > 150 and "v3", timeout_s=60) == "v3"


def test_even_a_working_platform_is_waited_for_at_most_four_times_the_wait(clock, monkeypatch):
    monkeypatch.setattr(demo, "bus_progress", lambda: int(clock.now))
    with pytest.raises(SystemExit, match="still working after 24"):
        demo.wait_for("v3", lambda: False, timeout_s=60)
