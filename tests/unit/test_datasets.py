"""Publishing a data batch: the snapshot is stored by content and its DataBatch stamped with the caller's clock
(the domain reads none), without a broker (a fake publisher)."""
from __future__ import annotations

from datetime import datetime, timezone

from services.bus.context import Bus
from services.adapters import publish_batch

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


class Published:
    def __init__(self):
        self.events = []

    def publish(self, event):
        self.events.append(event)

    def flush(self):
        pass


def test_a_batch_is_stamped_with_the_callers_clock_and_named_by_its_content(tmp_path):
    bus = Bus.from_env({"MLBUS_NAMESPACE": "t.", "MLBUS_DATA": str(tmp_path / "store")})
    (tmp_path / "today.csv").write_text("id,x\n1,0.5\n2,0.7\n")
    (tmp_path / "again.csv").write_text("id,x\n1,0.5\n2,0.7\n")
    published = Published()
    first = publish_batch(bus, "sales", tmp_path / "today.csv", "etl", published, clock=lambda: NOW)
    second = publish_batch(bus, "sales", tmp_path / "again.csv", "etl", published, {"run": "2"}, clock=lambda: NOW)
    assert first["published_at"] == NOW and first["rows"] == 2 and first["publisher"] == "etl"
    assert second["batch_id"] == first["batch_id"] and second["labels"] == {"run": "2"}     # same content
    assert [e.id for e in published.events] == [first["batch_id"]] * 2
    assert bus.schemas.encode("mlbus.DataBatch", first)                 # a DataBatch as the schema has it
