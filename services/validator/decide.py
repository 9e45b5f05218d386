"""The validator's decision: a batch, its contract and its loaded data in, one DataValidated out (pure)."""
from __future__ import annotations

from datetime import datetime

import pandas as pd

from services.bus import Event, derive_id
from services.bus.records import DataBatch
from services.domain import profile_frame

from .checks import finding, run_checks
from .contract import Contract


def validate_batch(batch: DataBatch, contract: Contract | None, data: pd.DataFrame | Exception | None,
                   now: datetime) -> Event:
    """data is the loaded snapshot, or the error that stopped it loading (None when there is no contract)."""
    failures: list[dict] = []
    warnings: list[dict] = []
    profile: list[dict] = []
    if contract is None:
        failures.append(finding("contract", f"contract of {batch.dataset!r} is invalid: {data}"
                                if isinstance(data, Exception) else
                                f"no contract for dataset {batch.dataset!r}: add "
                                f"schemas/datasets/{batch.dataset}.avsc"))
    elif isinstance(data, Exception):
        failures.append(finding(getattr(data, "check", "file"), str(data)))
    else:
        failures, warnings, typed = run_checks(data, contract)
        present = [c for c in contract.columns if c in typed.columns]
        profile = profile_frame(typed[present]) if len(typed) else []
    return validated_event(batch, contract, failures, warnings, profile,
                           rows=len(data) if isinstance(data, pd.DataFrame) else batch.rows, now=now)


def unsigned_batch(batch: DataBatch, refusal: str, now: datetime) -> Event:
    """A batch that names a person but does not carry their valid signature fails, unread."""
    event = validated_event(batch, None, [finding("signature", refusal)], [], [], rows=batch.rows, now=now)
    refusal_id = derive_id(batch.batch_id, "validation", "signature", refusal)     # not the real validation's id
    return Event(event.record, {**event.value, "validation_id": refusal_id}, key=event.key, id=refusal_id,
                 subject=event.subject)


def validated_event(batch: DataBatch, contract: Contract | None, failures: list[dict], warnings: list[dict],
                    profile: list[dict], rows: int, now: datetime) -> Event:
    validation_id = derive_id(batch.batch_id, "validation")
    return Event(record="mlbus.DataValidated", key=batch.dataset, id=validation_id, subject=batch.batch_id,
                 value={"validation_id": validation_id, "batch_id": batch.batch_id, "dataset": batch.dataset,
                        "uri": batch.uri, "sha256": batch.sha256, "rows": int(rows), "passed": not failures,
                        "contract": contract.label if contract else None, "failures": failures,
                        "warnings": warnings, "profile": profile, "validated_at": now})
