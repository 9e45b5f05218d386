"""The lineage service's handler: map each record (a refusal to the DLQ if it cannot be), emit, and let a tick
close the scoring periods that are over."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from openlineage.client.event_v2 import RunEvent

from services.bus import Event, Received

from .decide import Places, Scoring, Unmappable, periods_over, predicted, published, trained, validated

Emit = Callable[[RunEvent], None]


class Lineage:
    def __init__(self, places: Places, scoring: Scoring, emit: Emit, grace_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.places = places
        self.scoring = scoring
        self.emit = emit
        self.grace_s = grace_s
        self.clock = clock

    def __call__(self, message: Received) -> list[Event]:
        for run_event in self.mapped(message):
            self.emit(run_event)
        return []

    def mapped(self, message: Received) -> list[RunEvent]:
        """The record's OpenLineage events; Unmappable (dead-lettered) when the client refuses what it holds."""
        try:
            if message.record == "mlbus.DataBatch":
                return published(self.places, message.typed)
            if message.record == "mlbus.DataValidated":
                return validated(self.places, message.typed)
            if message.record == "mlbus.ModelTrained":
                return trained(self.places, message.typed)
            if message.record == "mlbus.Prediction":
                return predicted(self.places, self.scoring, message.typed, self.clock())
        except (ValueError, TypeError, KeyError, OverflowError) as error:
            raise Unmappable(f"{message.record} cannot be an OpenLineage event: {type(error).__name__}: "
                             f"{str(error)[:300]}") from None
        return []

    def tick(self) -> list[Event]:
        """Close the scoring periods that are over (their COMPLETE events)."""
        for run_event in periods_over(self.places, self.scoring, self.clock(), self.grace_s):
            self.emit(run_event)
        return []
