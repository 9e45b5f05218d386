"""mlbus score MODEL[@VERSION|@ALIAS] --batch BATCH_ID|PATH: batch inference, offline, on the record.

The snapshot is scored with the approved version's own artifact (its sha256 checked before loading), with
the same input shaping and prediction code as the scorer (services/domain/serving.py), so an offline
prediction equals the online one for the same row. The predictions become an immutable, content-addressed
Parquet snapshot, and a signed BatchScored event (model, version, artifact, input and output hashes, who
asked, CPU seconds) goes to `scoring.batches`, which the auditor keeps: `mlbus audit explain SCORING_ID`."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from services.bus.context import Bus
from services.bus.envelope import new_id
from services.bus.errors import BadInput
from services.bus.projections.inventory import APPROVED, Inventory, ModelVersion
from services.bus.replay import read_topics

from .acts import person, send
from .output import info
from .registry_cmd import inventory

CHUNK_ROWS = 100_000            # rows predicted at a time (progress is reported after each)


def register(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser("score", help="score a data snapshot offline with an approved version (batch "
                                              "inference); the predictions and the act go on record")
    score.add_argument("target", metavar="MODEL[@VERSION|@ALIAS]", help="default alias: champion")
    score.add_argument("--batch", required=True, metavar="BATCH_ID|PATH",
                       help="a published batch's id (its snapshot, hash-checked) or a CSV/Parquet file")
    score.set_defaults(run=score_command)


def score_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.domain import ArtifactRefused
    from services.adapters import ArtifactStore, DataFileError
    from services.domain import load_servable
    identity = person(args)
    entry = approved_version(inventory(bus), args.target)
    trained = entry.trained
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        batch_id, uri, sha256, frame = snapshot(bus, args.batch)
        model = load_servable(trained, ArtifactStore.from_settings(bus.settings).load)
    except (ArtifactRefused, DataFileError) as error:
        raise BadInput(str(error)) from None
    output = scored(model, frame, trained, keys_of(bus, trained, frame))
    stored = store_predictions(bus, output, trained)
    scoring_id = new_id()
    send(bus, identity, "mlbus.BatchScored", {
        "scoring_id": scoring_id, "model": trained["model"], "version": trained["version"],
        "artifact_sha256": trained["artifact_sha256"], "input_batch_id": batch_id, "input_uri": uri,
        "input_sha256": sha256, "input_rows": len(frame), "output_uri": stored.uri, "output_sha256": stored.sha256,
        "output_rows": len(output), "requested_by": identity.name, "scored_at": datetime.now(timezone.utc),
        "duration_ms": int((time.perf_counter() - started) * 1000), "cpu_seconds": time.process_time() - cpu_started},
        key=trained["model"], event_id=scoring_id, subject=f"{trained['model']}@{trained['version']}")
    info(f"scored {len(frame):,} rows with {trained['model']} v{trained['version']} "
         f"(artifact {trained['artifact_sha256'][:12]}…) in {time.perf_counter() - started:.1f} s: "
         f"{stored.uri} sha256 {stored.sha256[:12]}…; on record as {scoring_id}")
    print(json.dumps({"scoring_id": scoring_id, "output_uri": stored.uri, "output_sha256": stored.sha256,
                      "rows": len(output)}))
    return 0


def approved_version(folded: Inventory, target: str) -> ModelVersion:
    """MODEL (its champion), MODEL@N or MODEL@ALIAS, which must be approved: offline predictions come only from
    versions that passed their policy and people."""
    model, _, which = target.partition("@")
    which = which or "champion"
    entry = folded.named(model, which)
    if entry is None:
        known = ", ".join(f"@{a}" for a in folded.aliases.get(model, {})) or "none"
        raise BadInput(f"no version of {model!r} is {which!r} (aliases: {known}; or give @VERSION)")
    if entry.status != APPROVED:
        raise BadInput(f"{model} v{entry.version} is {entry.status}: only an approved version scores a batch")
    return entry


def snapshot(bus: Bus, given: str):
    """(batch id or None, uri, sha256, frame) of a published batch (read from the store, hash-checked) or of
    a local file."""
    from services.adapters import SnapshotStore, file_format, sha256_file
    path = Path(given)
    if path.is_file():
        import pandas as pd
        fmt = file_format(path)
        return None, path.resolve().as_uri(), sha256_file(path), \
            pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    topic = bus.catalogue.for_schema("mlbus.DataBatch").name
    found = [r.value for r in read_topics(bus, [topic]) if r.value["batch_id"] == given]
    if not found:
        raise BadInput(f"{given} is neither a file nor a published batch id (mlbus data batches lists them)")
    batch = found[0]
    return given, batch["uri"], batch["sha256"], SnapshotStore.from_settings(bus.settings).load(
        batch["uri"], batch["sha256"], batch["format"])


def keys_of(bus: Bus, trained: dict, frame) -> list[str]:
    """The dataset contract's key columns present in the snapshot (they identify each prediction)."""
    contracts = bus.settings.storage.contracts_dir
    contract = contracts / f"{trained['batches'][0]['dataset']}.avsc" if trained["batches"] else None
    if contract is None or not contract.is_file():
        return []
    keys = json.loads(contract.read_text()).get("mlbus.contract", {}).get("keys", [])
    return [k for k in keys if k in frame.columns]


def scored(model: object, frame, trained: dict, keys: list[str]):
    """The predictions, chunk by chunk (progress on stderr): key columns, label and score, one probability
    column per class (classification) or the prediction (regression)."""
    import numpy as np
    import pandas as pd
    from services.domain import predict, snapshot_frame
    missing = [f for f in trained["features"] if f not in frame.columns]
    if missing:
        raise BadInput(f"the snapshot lacks features {missing[:5]}")
    inputs = snapshot_frame(frame, trained["features"], trained.get("categorical_features") or ())
    parts = []
    for start in range(0, len(inputs), CHUNK_ROWS):
        chunk = inputs.iloc[start:start + CHUNK_ROWS]
        labels, probabilities, classes = predict(model, chunk, trained["task"])
        part = frame.iloc[start:start + CHUNK_ROWS][keys].reset_index(drop=True)
        if probabilities is None:
            part["prediction"] = labels
        else:
            part["label"] = labels.astype(str)
            part["score"] = probabilities.max(axis=1)
            for i, name in enumerate(classes):
                part[f"p_{name}"] = probabilities[:, i]
        parts.append(part)
        if len(inputs) > CHUNK_ROWS:
            print(f"[score] {min(start + CHUNK_ROWS, len(inputs)):,} / {len(inputs):,} rows", file=sys.stderr)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(np.empty((0, 0)))


def store_predictions(bus: Bus, output, trained: dict):
    """The predictions as a content-addressed Parquet snapshot under the data store (`scored-<model>/`)."""
    from services.adapters import store_snapshot
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "predictions.parquet"
        output.to_parquet(path, index=False)
        return store_snapshot(bus.settings.storage.data_store, f"scored-{trained['model']}", path)

