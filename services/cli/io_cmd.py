"""mlbus publish | consume: feed the bus by hand and watch what is on it."""
from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from typing import IO, Iterator

from confluent_kafka import Consumer, TopicPartition

from services.bus.codec import check_datum
from services.bus.consumed import headers_of
from services.bus.context import Bus
from services.bus.envelope import Event, new_id
from services.bus.errors import BadInput, DecodeError
from services.bus.jsonio import from_json, to_json
from services.bus.kafka import base_config, group_id
from services.bus.publish import Publisher
from services.bus.signing import SIGNED_RECORDS

from .acts import actor_name, signed
from .output import info, print_json_line


def register(commands: argparse._SubParsersAction) -> None:
    publish = commands.add_parser("publish", help="encode JSON records with a topic's schema and publish them")
    publish.add_argument("topic", help="catalogue topic name, e.g. inference.requests")
    publish.add_argument("--file", type=argparse.FileType("r"), default=sys.stdin,
                         help="JSON lines, one record each (default: standard input)")
    publish.set_defaults(run=publish_records)
    consume = commands.add_parser("consume", help="print a topic's records with headers as JSON lines")
    consume.add_argument("topic", help="catalogue topic name (a .dlq topic prints raw bytes as base64)")
    consume.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    consume.add_argument("--max", type=int, default=None, help="stop after N records")
    consume.add_argument("--timeout", type=float, default=None, help="stop after S seconds without a record")
    consume.set_defaults(run=consume_records)


def publish_records(bus: Bus, args: argparse.Namespace) -> int:
    topic = bus.catalogue[args.topic]
    if topic.schema is None:
        raise BadInput(f"{topic.name} is a dead-letter topic; only services write to it")
    schema = bus.schemas.schema(topic.schema)
    publisher = Publisher(bus, source=f"cli:{actor_name(args)}")
    count = 0
    for line_number, record in _json_lines(args.file):
        try:
            datum = from_json(schema.parsed, record)
            check_datum(schema, datum)
        except BadInput as error:
            raise BadInput(f"line {line_number}: {error}") from None
        if args.identity is not None and topic.schema in SIGNED_RECORDS:
            datum = signed(bus, args.identity, topic.schema, datum)
        key = str(datum.get(topic.key, ""))
        publisher.publish(Event(record=topic.schema, value=datum, key=key, id=new_id(), subject=key))
        count += 1
    publisher.flush()
    info(f"published {count} record(s) to {topic.name}")
    return 0


def _json_lines(stream: IO[str]) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BadInput(f"line {number} is not JSON: {error}") from None
        if not isinstance(record, dict):
            raise BadInput(f"line {number}: a record must be a JSON object")
        yield number, record


def consume_records(bus: Bus, args: argparse.Namespace) -> int:
    topic = bus.catalogue[args.topic]
    physical = bus.catalogue.physical(topic.name)
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, f"cli-{new_id()}"),
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        partitions = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        start = -2 if args.from_beginning else -1        # OFFSET_BEGINNING / OFFSET_END
        consumer.assign([TopicPartition(physical, p, start) for p in partitions])
        printed, last_seen = 0, time.monotonic()
        while args.max is None or printed < args.max:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if args.timeout is not None and time.monotonic() - last_seen > args.timeout:
                    break
                continue
            print_json_line(_as_json(bus, topic.name, message))
            printed += 1
            last_seen = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def _as_json(bus: Bus, topic: str, message) -> dict:
    headers = {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in headers_of(message)}
    out = {"topic": topic, "partition": message.partition(), "offset": message.offset(),
           "timestamp": message.timestamp()[1],
           "key": message.key().decode("utf-8", "replace") if message.key() else None, "headers": headers}
    try:
        record, value = bus.schemas.decode(message.value())
        out.update(record=record, value=to_json(value))
    except DecodeError as error:
        out.update(record=None, value_base64=base64.b64encode(message.value() or b"").decode(),
                   decode_error=str(error))
    return out
