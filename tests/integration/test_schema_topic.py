"""A reader resolves a writer schema it has never seen from the compacted `schemas` topic."""
import dataclasses
import json

from fastavro.schema import parse_schema

from services.bus import Event, Publisher
from services.bus.codec import SchemaCatalogue
from services.bus.schema_topic import SchemasTopicResolver
from tests.support.polling import read_topic
from tests.support.processes import running
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


def test_a_schemas_entry_that_lies_about_its_fingerprint_dead_letters_its_messages_and_crashes_nobody(
        bus, bus_env):
    """Compaction keeps a poisoned entry forever: the reader refuses the entry, dead-letters the messages that
    name its fingerprint, and goes on serving."""
    newer = newer_catalogue(bus)
    fingerprint = newer.schema("mlbus.InferenceRequest").fingerprint_hex
    publisher = Publisher(bus, "mallory")
    lie = {"fingerprint": fingerprint, "name": "mlbus.InferenceRequest", "registered_by": "mallory",
           "schema_json": bus.schemas.schema("mlbus.Alert").canonical, "registered_at": request(0).value["sent_at"]}
    publisher.produce("schemas", fingerprint.encode(), bus.schemas.encode("mlbus.SchemaDefinition", lie), [])
    event = request(1)
    hostile = newer.encode("mlbus.InferenceRequest", {**event.value, "channel": "mobile"})
    publisher.produce("inference.requests", b"entity-1", hostile, [])
    publisher.publish(request(2))
    publisher.flush()
    with running("tests.support.relay_service", bus_env) as relay:
        [dead] = read_topic(bus, "inference.requests.dlq", expected=1, timeout=90)
        [answer] = read_topic(bus, "inference.predictions", expected=1, timeout=90)
        assert relay.poll() is None, "the reader keeps serving"
    assert dead.value() == hostile
    assert b"unknown writer schema fingerprint" in dict(dead.headers())["dlq.error.message"]
    assert bus.schemas.decode(answer.value())[1]["request_id"] == request(2).value["request_id"]
