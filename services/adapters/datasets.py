"""Publishing data for pipelines: snapshot a file into the data store and announce it on data.batches.

    from services.bus import Bus
    from services.adapters import publish_batch
    batch = publish_batch(Bus.from_env(), "breast_cancer", Path("today.csv"), actor="etl-nightly")
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable

from services.bus.context import Bus
from .datastore import Snapshot, count_rows, store_snapshot
from services.bus.edge import check_name
from services.bus.envelope import Event, derive_id, utc_now
from services.bus.publish import Publisher


def publish_batch(bus: Bus, dataset: str, path: Path, actor: str, publisher: Publisher | None = None,
                  labels: dict[str, str] | None = None, sign: Callable[[str, dict], dict] | None = None,
                  clock: Callable[[], datetime] = utc_now) -> dict:
    """Store an immutable, content-addressed snapshot and publish its DataBatch; returns the event's value.
    The batch id derives from dataset and content: the same file published twice is the same batch.
    sign: a person's signature over the record (the CLI's), for batches a person publishes.
    clock: when it is published (the bus's wall clock unless the caller has its own)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    check_name("dataset", dataset)          # it names a directory of the store: never a path
    snapshot = store_snapshot(bus.settings.storage.data_store, dataset, path)
    value = batch_record(dataset, snapshot, count_rows(path, snapshot.format), actor, labels or {}, clock())
    if sign is not None:
        value = sign("mlbus.DataBatch", value)
    own = publisher or Publisher(bus, source=actor)
    own.publish(Event(record="mlbus.DataBatch", value=value, key=dataset, id=value["batch_id"],
                      subject=value["batch_id"]))
    if publisher is None:
        own.flush()
    return value


def batch_record(dataset: str, snapshot: Snapshot, rows: int, actor: str, labels: dict[str, str],
                 now: datetime) -> dict:
    """The DataBatch announcing a stored snapshot, pure: its id derives from dataset and content."""
    return {"batch_id": derive_id("batch", dataset, snapshot.sha256), "dataset": dataset, "uri": snapshot.uri,
            "sha256": snapshot.sha256, "rows": rows, "size_bytes": snapshot.size_bytes, "format": snapshot.format,
            "publisher": actor, "published_at": now, "labels": labels}
