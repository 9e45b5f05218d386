"""Publishing data for pipelines: snapshot a file into the data store and announce it on data.batches.

    from services.bus import Bus
    from services.domain.datasets import publish_batch
    batch = publish_batch(Bus.from_env(), "breast_cancer", Path("today.csv"), actor="etl-nightly")
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from services.bus.context import Bus
from .datastore import count_rows, store_snapshot
from services.bus.edge import check_name
from services.bus.envelope import Event, derive_id
from services.bus.publish import Publisher


def publish_batch(bus: Bus, dataset: str, path: Path, actor: str, publisher: Publisher | None = None,
                  labels: dict[str, str] | None = None, sign: Callable[[str, dict], dict] | None = None) -> dict:
    """Store an immutable, content-addressed snapshot and publish its DataBatch; returns the event's value.
    The batch id derives from dataset and content: the same file published twice is the same batch.
    sign: a person's signature over the record (the CLI's), for batches a person publishes."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    check_name("dataset", dataset)          # it names a directory of the store: never a path
    snapshot = store_snapshot(bus.settings.data_store, dataset, path)
    batch_id = derive_id("batch", dataset, snapshot.sha256)
    value = {"batch_id": batch_id, "dataset": dataset, "uri": snapshot.uri, "sha256": snapshot.sha256,
             "rows": count_rows(path, snapshot.format), "size_bytes": snapshot.size_bytes,
             "format": snapshot.format, "publisher": actor, "published_at": datetime.now(timezone.utc),
             "labels": labels or {}}
    if sign is not None:
        value = sign("mlbus.DataBatch", value)
    own = publisher or Publisher(bus, source=actor)
    own.publish(Event(record="mlbus.DataBatch", value=value, key=dataset, id=batch_id, subject=batch_id))
    if publisher is None:
        own.flush()
    return value
