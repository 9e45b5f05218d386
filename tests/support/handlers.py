"""In-memory fakes for handler tests: a Received built without a broker, a verifier that accepts or refuses."""
from __future__ import annotations

from dataclasses import dataclass, field

from services.bus import Event, Received
from services.bus.envelope import envelope_for
from services.bus.signing import Verdict


def received(record: str, value: dict, topic: str = "t", offset: int = 0, source: str = "test") -> Received:
    event = Event(record, value, key=value.get("model"), id=f"{record}-{offset}")
    return Received(topic=topic, partition=0, offset=offset, timestamp_ms=0, key=event.key, record=record,
                    value=value, envelope=envelope_for(event, source))


CLAIMS = ("requested_by", "defined_by", "actor", "publisher", "observed_by", "requested_by")


def accept(message: Received, roles: tuple[str, ...]) -> Verdict:
    """Every act verifies, signed by whom it names (a service's own requests too), else by dana."""
    if message.record == "mlbus.ModelTrained":
        return Verdict(signer="trainer", signer_key="k")            # a version's record: the trainer's key
    claimed = next((message.value[f] for f in CLAIMS if isinstance(message.value.get(f), str)), "dana")
    return Verdict(signer=claimed.removeprefix("cli:"), signer_key="k")


def verified_as(person: str):
    """A verifier for which every person's act is `person`'s, and a service's act (a version's record) the
    trainer's."""
    return lambda message, roles: Verdict(signer="trainer" if "service" in roles else person, signer_key="k")


def refusing_people(reason: str):
    """A verifier that refuses every person's act, and takes the trainer's signed version records."""
    return lambda message, roles: Verdict(signer="trainer", signer_key="k") if "service" in roles else \
        Verdict(refusal=reason)


@dataclass
class FakeMessage:
    """confluent_kafka.Message's accessors, as the runtime, the auditor and the followers read them."""

    _topic: str
    _key: bytes | None
    _value: bytes | None
    _offset: int
    _headers: list = field(default_factory=lambda: [("ce_source", b"shop")])

    def topic(self): return self._topic
    def partition(self): return 0
    def offset(self): return self._offset
    def timestamp(self): return (1, 1_800_000_000_000 + self._offset)
    def key(self): return self._key
    def value(self): return self._value
    def headers(self): return self._headers
    def error(self): return None


def audited(schemas, events) -> list[dict]:
    """The AuditRecords in the auditor's output, in order: each AuditPage event's records, decoded."""
    from services.domain.pages import records_of
    return [schemas.decode(value, "mlbus.AuditRecord")[1] for e in events
            if getattr(e, "record", None) == "mlbus.AuditPage" for value in records_of(schemas, e.encoded)]
