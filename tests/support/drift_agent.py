"""The drift-watcher's agent without faust or a broker: its table a dict that keeps the changelog faust would
write (one entry per key changed, in order, values through JSON as faust's serializer takes them), what it
sends kept in a list, and each flush of the changelog marked. A restart after kill -9 is a new agent on a
prefix of that changelog."""
from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry

from services.bus import Bus
from services.bus.logs import get_logger
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.domain import SpecMonitoring
from services.drift_watcher.app import DriftWatcher, Emitted, WindowMetrics

from .drift import version_values


def bus_without_broker() -> Bus:
    bus = Bus.from_env({"MLBUS_NAMESPACE": "t."})
    bus.schemas.resolver = lambda fingerprint: None          # local schemas only
    return bus


class ChangelogTable(dict):
    """A dict that writes every change to `changelog`, as faust's table does: (key, value), None for a deletion."""

    def __init__(self, changelog: list | None = None):
        super().__init__()
        self.changelog: list[tuple[str, Any]] = []
        for key, value in changelog or []:           # a restart: the table as the changelog rebuilds it
            if value is None:
                super().pop(key, None)
            else:
                super().__setitem__(key, value)

    def __setitem__(self, key: str, value: Any) -> None:
        value = json.loads(json.dumps(value))
        super().__setitem__(key, value)
        self.changelog.append((key, value))

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.changelog.append((key, None))

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        value = super().__getitem__(key)
        del self[key]
        return value


class Agent:
    """A DriftWatcher's observe path on a ChangelogTable: `sent` the outputs delivered, `flushed` the changelog's
    length at each flush (what a kill -9 after it cannot take back); for each output, `sent_at` the last flush before
    it and `sent_before` the changelog's length when it was acknowledged (a prefix longer than that follows it)."""

    def __init__(self, bus: Bus, versions: list, table: ChangelogTable, emitted: set | None = None):
        self.table, self.sent, self.sent_at, self.sent_before, self.flushed = table, [], [], [], []
        watcher = DriftWatcher.__new__(DriftWatcher)
        watcher.bus, watcher.log, watcher.state = bus, get_logger(component="test-agent"), table
        watcher._models, watcher._recovered = None, set()
        watcher.inventory, watcher.deployments, watcher.specs, watcher.emitted = (Inventory(), Deployments(),
                                                                                  SpecMonitoring(), Emitted())
        watcher.emitted.ids |= emitted or set()
        watcher.metrics = WindowMetrics(CollectorRegistry())
        for record, value in versions:
            for fold in (watcher.inventory.apply, watcher.specs.apply, watcher.deployments.apply):
                fold(record, value)

        async def deliver(event) -> None:
            self.sent.append(event)
            self.sent_at.append(self.flushed[-1] if self.flushed else 0)
            self.sent_before.append(len(table.changelog))

        async def durable() -> None:
            self.flushed.append(len(table.changelog))
        watcher.deliver, watcher.durable = deliver, durable
        self.watcher = watcher


def folded_versions(bus: Bus, model: str, monitoring: str, fairness_json: str = "{}") -> list:
    """version_values as the watcher's followers receive them (through Avro)."""
    return [bus.schemas.decode(bus.schemas.encode(record, value))
            for record, _, value in version_values(model, 1, monitoring, "dana", fairness_json)]


class Observation:
    """What faust hands the agent: the model as key, the value's bytes, and the message's offset, headers, time."""

    def __init__(self, model: str, value: bytes, offset: int, at_s: float, headers: list | None = None):
        self.key, self.value = model.encode(), value
        self.message = type("Message", (), {"offset": offset, "headers": headers or [], "timestamp": at_s})
