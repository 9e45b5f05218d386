"""The featurizer's handler: a batch of source records and view definitions into the stores and features.online.

A batch's values go to the offline store (one part, named by the batch's places: a batch handled again after a
crash writes the same part) and to the online store; features.online gets each value the online store did not
already hold newer, in the batch's transaction with its offsets. A definition that is not signed by a data
scientist, does not parse, or names a source the featurizer does not consume is refused (BadInput: its
dead-letter topic, with the reason); an event a view cannot use is dropped for that view, counted and said."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from services.bus import BadInput, Event, Received, derive_id
from services.bus.errors import InfrastructureError
from services.bus.identity import Verify, act_refusal
from services.bus.logs import get_logger
from services.adapters import (OfflineStore, OnlineStore, online_key, value_record,
                                             view_from_record)
from services.domain import FeatureValue

from .core import FeaturizerState, Made, backfill, in_time_order

VIEW_RECORD = "mlbus.FeatureViewDefined"
VIEW_SIGNERS = ("data-scientist",)
REDELIVERED = "delivered again"            # the end of features_windows' reason for a redelivered record
History = Callable[[str, "dict[tuple[str, int], int] | None"], Iterable[tuple]]   # topic, read to (None: end)


class DefinitionRefused(BadInput):
    stage = "validate"


def definition(message: Received, verify: Verify, sources: set[str], state: FeaturizerState | None = None):
    """The view a FeatureViewDefined declares, once its signature and content are checked; BadInput otherwise."""
    refused = act_refusal(message, verify, VIEW_SIGNERS)
    if refused:
        raise DefinitionRefused(f"view definition not taken: {refused}")
    view = view_from_record(message.value)          # ViewsRefused (a BadInput) with every reason
    if view.source_dataset is not None:
        raise DefinitionRefused(f"view {view.name}: a dataset source is not built yet; use a topic")
    if view.source_topic not in sources:
        raise DefinitionRefused(f"view {view.name}: source topic {view.source_topic!r} is not one the featurizer "
                                f"consumes ({', '.join(sorted(sources))}; topics.yaml)")
    if state is not None and (full := state.room_for(view)):
        raise DefinitionRefused(full)
    return view


class Featurizer:
    def __init__(self, state: FeaturizerState, online: OnlineStore, offline: OfflineStore, verify: Verify,
                 sources: set[str], history: History,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), on_made=lambda made: None):
        self.state = state
        self.online = online
        self.offline = offline
        self.verify = verify
        self.sources = sources          # the topics the featurizer consumes that a view may read
        self.history = history
        self.clock = clock
        self.on_made = on_made          # metrics
        self.log = get_logger(component="featurizer")

    def __call__(self, batch: list[Received]) -> list[list[Event] | BadInput]:
        per_record: list[list[FeatureValue] | BadInput] = [[] for _ in batch]
        places = [(m.topic, m.partition, m.offset, m.timestamp_ms, m.record, m.value, i) for i, m in enumerate(batch)]
        for *_, i in in_time_order(places):            # as backfill and rebuild read them: one order everywhere
            try:
                per_record[i] = self._values(batch[i])
            except BadInput as refused:
                per_record[i] = refused
        made = [value for values in per_record if not isinstance(values, BadInput) for value in values]
        try:
            fresh = {id(value) for value in self.store(made, part_name(batch))}
        except Exception as error:          # noqa: BLE001 - whatever it is, the windows have moved on without it
            # The runtime would hand the records again one by one, to windows that have taken them already: their
            # values would be lost. A restart rebuilds the windows from the committed offsets and handles the
            # batch again whole.
            raise InfrastructureError(f"the featurizer could not store a batch's values ({type(error).__name__}: "
                                      f"{str(error)[:300]}): restarting rebuilds its windows") from error
        now = self.clock()
        return [values if isinstance(values, BadInput) else
                [online_event(value, now) for value in values if id(value) in fresh] for values in per_record]

    def store(self, values: list[FeatureValue], part: str) -> list[FeatureValue]:
        """Values into the offline store (as part `part`) and the online store; those features.online gets: the
        online store's newest."""
        if values:
            self.offline.write(values, part)
        return self.online.put(values)

    def _values(self, message: Received) -> list[FeatureValue]:
        if message.record == VIEW_RECORD:
            view = definition(message, self.verify, self.sources, self.state)
            if not self.state.define(view):
                return []
            # the source to its end now, not only what this consumer has read: records of other partitions still to
            # come live would be late against the backfill's watermark; those it read here come again and are
            # dropped as delivered already
            made = backfill(self.state, view.version, self.history(view.source_topic, None))
            self.log.info("view defined", view=view.name, version=view.version[:12], source=view.source_topic,
                          backfilled=len(made.values))
            return self._said(made)
        made = self.state.add(message.topic, message.partition, message.offset, message.timestamp_ms,
                              message.record, message.value)
        return self._said(made)

    def _said(self, made: Made) -> list[FeatureValue]:
        again = [dropped for _, dropped in made.dropped if dropped.reason.endswith(REDELIVERED)]
        if again:           # after a restart, records up to the committed offsets come again: expected, said once
            self.log.info("events delivered again, not counted twice", events=len(again))
        for view, dropped in [(v, d) for v, d in made.dropped if not d.reason.endswith(REDELIVERED)][:5]:
            self.log.warning("event dropped", view=view, feature=dropped.feature, reason=dropped.reason[:200],
                             topic=dropped.event.topic, partition=dropped.event.partition,
                             offset=dropped.event.offset)
        self.on_made(made)
        return made.values


def online_event(value: FeatureValue, now: datetime) -> Event:
    """features.online's record of a value; the same value computed again has the same id."""
    return Event("mlbus.FeatureValue", value_record(value, now), key=online_key(value),
                 id=derive_id("feature", online_key(value), value.event_ms, value.window_start_ms),
                 subject=value.entity)          # whose data it is: audit forget erases it with the entity's key


def part_name(batch: list[Received]) -> str:
    """The offline part a batch writes: its first place and a digest of all of them (the same batch, the same
    part)."""
    places = sorted((m.topic, m.partition, m.offset) for m in batch)
    digest = hashlib.sha256(repr(places).encode()).hexdigest()[:16]
    topic, partition, offset = places[0]
    return f"{topic}-{partition}-{offset}-{digest}"
