"""A reader resolves a writer schema it has never seen from the compacted `schemas` topic."""
import dataclasses
import json

from fastavro.schema import parse_schema

from services.bus import Event, Publisher
from services.bus.codec import SchemaCatalogue
from services.bus.schema_topic import SchemasTopicResolver
from tests.support.polling import read_topic
from tests.support.traffic import request


def newer_catalogue(bus) -> SchemaCatalogue:
    """Today's schemas, except InferenceRequest gained a defaulted field (a newer producer's version)."""
    parsed = [s.parsed for s in bus.schemas.by_name.values() if s.name != "mlbus.InferenceRequest"]
    raw = json.loads(json.dumps(bus.schemas.schema("mlbus.InferenceRequest").parsed))
    raw["fields"].append({"name": "channel", "type": "string", "default": "web"})
    return SchemaCatalogue(parsed + [parse_schema(raw)])


def test_unknown_writer_schema_is_resolved_from_the_schemas_topic(bus):
    newer_bus = dataclasses.replace(bus, schemas=newer_catalogue(bus))
    event = request(1)
    publisher = Publisher(newer_bus, "newer-app")
    publisher.publish(Event(event.record, {**event.value, "channel": "mobile"}, event.key, event.id))
    publisher.flush()
    [message] = read_topic(bus, "inference.requests", expected=1)
    writer_fp = message.value()[2:10]
    assert writer_fp not in bus.schemas.by_fingerprint           # this reader has never seen it

    bus.schemas.resolver = SchemasTopicResolver(bus)
    record, value = bus.schemas.decode(message.value())
    assert record == "mlbus.InferenceRequest"
    assert value["request_id"] == event.value["request_id"] and "channel" not in value   # read as today's version
    assert bus.schemas.by_fingerprint[writer_fp].name == "mlbus.InferenceRequest"
