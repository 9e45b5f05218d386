"""The validator's handler: skip what was judged already, load contract and data, decide."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import pandas as pd

from services.bus import Event, Received
from services.adapters import DataFileError
from services.bus.records import DataBatch
from services.bus.signing import Verdict, signature_refusal

from .contract import Contract, ContractError
from .decide import unsigned_batch, validate_batch


class Validator:
    def __init__(self, contracts: Callable[[str], Contract | None],
                 load: Callable[..., pd.DataFrame], validated: set[str],
                 verify: Callable[[Received, tuple[str, ...]], Verdict],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.contracts = contracts
        self.verify = verify
        self.load = load
        self.validated = validated
        self.clock = clock

    def __call__(self, message: Received) -> list[Event]:
        batch: DataBatch = message.typed
        if batch.batch_id in self.validated:
            return []
        if batch.signer or batch.publisher.startswith("cli:"):       # a person's publication: signed
            refused = signature_refusal(self.verify(message, ("data-publisher",)), batch.publisher)
            if refused:                     # not marked judged: the batch id proves nothing until signed
                return [unsigned_batch(batch, refused, self.clock())]
        try:
            contract = self.contracts(batch.dataset)
        except ContractError as error:
            contract, data = None, error
        else:
            data = self._load(batch, contract) if contract else None
        event = validate_batch(batch, contract, data, self.clock())
        self.validated.add(batch.batch_id)
        return [event]

    def _load(self, batch: DataBatch, contract: Contract) -> pd.DataFrame | DataFileError:
        try:
            return self.load(batch.uri, batch.sha256, batch.format, max_rows=contract.max_rows)
        except DataFileError as error:
            return error
