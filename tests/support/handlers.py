"""In-memory fakes for handler tests: a Received built without a broker, a verifier that accepts or refuses."""
from __future__ import annotations

from services.bus import Event, Received
from services.bus.envelope import envelope_for
from services.bus.signing import Verdict


def received(record: str, value: dict, topic: str = "t", offset: int = 0, source: str = "test") -> Received:
    event = Event(record, value, key=value.get("model"), id=f"{record}-{offset}")
    return Received(topic=topic, partition=0, offset=offset, timestamp_ms=0, key=event.key, record=record,
                    value=value, envelope=envelope_for(event, source))


def accept(message: Received, roles: tuple[str, ...]) -> Verdict:
    return Verdict(signer="dana", signer_key="k")
