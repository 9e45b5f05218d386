"""The validator's edges: contract files, data snapshots, and its own earlier output."""
from __future__ import annotations

import json
from pathlib import Path

from services.bus import Bus
from services.bus.edge import is_name
from services.bus.replay import read_topics

from .contract import Contract, ContractError, parse_contract


class ContractFiles:
    """schemas/datasets/<dataset>.avsc, read again when the file changes (no restart for a new contract)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._cache: dict[str, tuple[float, Contract]] = {}

    def __call__(self, dataset: str) -> Contract | None:
        """The dataset's contract, None when there is none; ContractError when the name or the file is wrong."""
        if not is_name(dataset):
            raise ContractError(f"{dataset[:80]!r} is not a dataset name")
        path = self.directory / f"{dataset}.avsc"
        if not path.is_file():
            return None
        mtime = path.stat().st_mtime
        cached = self._cache.get(dataset)
        if cached is None or cached[0] != mtime:
            try:
                cached = (mtime, parse_contract(json.loads(path.read_text())))
            except ContractError:
                raise
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                raise ContractError(f"contract {path.name} is not a valid contract: {type(error).__name__}: "
                                    f"{str(error)[:200]}") from None
            self._cache[dataset] = cached
        return cached[1]


def signature_refused(validated: dict) -> bool:
    return any(f.get("check") == "signature" for f in validated.get("failures") or [])


def validated_batch_ids(bus: Bus) -> set[str]:
    """Batches this validator already judged, from its own output topic: a redelivered batch is skipped. A batch
    refused for its signature is not among them: its id proves nothing (the real batch may come after)."""
    topic = bus.catalogue.for_schema("mlbus.DataValidated").name
    return {record.value["batch_id"] for record in read_topics(bus, [topic]) if not signature_refused(record.value)}
