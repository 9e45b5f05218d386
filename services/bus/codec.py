"""Avro on the wire, in two framings, with a schema catalogue.

- single-object encoding (the default): C3 01 + the CRC-64-AVRO fingerprint of the writer schema + body;
- Confluent's framing (for Kafka Connect, ksqlDB, Flink…): 00 + the writer schema's 4-byte id in a schema
  registry (big-endian) + body. Records of the types in `confluent` are written so (topics.yaml `wire:
  confluent`, or MLBUS_WIRE=confluent), with the id the registry gives their topic's subject.

Writers encode with their local schema from schemas/. Readers take either framing on every topic: they look the
writer schema up by fingerprint (schemas/ first, then whatever a resolver finds, e.g. the compacted `schemas`
topic) or by registry id (what the registry says), and read with their own version of the record (Avro schema
resolution), so producers and consumers evolve independently.
"""
from __future__ import annotations

import io
import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, cast

import fastavro
from fastavro.schema import SchemaParseException, UnknownType, fingerprint, parse_schema, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from .errors import BadInput, DecodeError, InfrastructureError
from .native import decoder, encoder

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_LEN = len(CONFLUENT_MAGIC) + 4
MAX_UNKNOWN_IDS = 10_000        # registry ids found unknown, remembered (then forgotten all at once)
MAX_LEARNED = 10_000            # writer schemas learned from the schema topic or a registry, kept at once
LOOKUP_BUDGET = (100, 60.0)     # at most 100 registry look-ups of ids not seen before in any 60 s: a flood of
                                # fresh ids (one record each) costs the registry no more, the rest are refused
SUBDIRS = (".", "common")      # schemas/datasets/ holds data contracts, not wire records


@dataclass(frozen=True)
class WriterSchema:
    name: str
    fingerprint: bytes          # 8 bytes, little-endian, as on the wire
    parsed: dict
    canonical: str              # parsing canonical form, what the fingerprint is taken over

    @property
    def prefix(self) -> bytes:
        return MARKER + self.fingerprint

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def writer_schema(parsed: dict) -> WriterSchema:
    canonical = to_parsing_canonical_form(parsed)
    return WriterSchema(name=parsed["name"], fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
                        parsed=parsed, canonical=canonical)


class RegistryIds(Protocol):
    """A schema registry as the codec needs it (services/bus/schema_registry.py speaks to a real one)."""

    def id_for(self, record: str, schema_text: str) -> int:
        """The id of this writer schema under its topic's subject (registering it, where it is new)."""

    def schema_text(self, schema_id: int) -> str | None:
        """The schema the registry holds under this id; None when it holds none. An unreachable registry
        raises (an infrastructure failure: the service stops loudly, nothing is dead-lettered for it)."""


def confluent_prefix(schema_id: int) -> bytes:
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")


def registry_form(parsed: dict) -> str:
    """A parsed (expanded) schema as a registry and other tools take it: each named type defined at its first
    use and named after, logical types kept, fastavro's own keys left out."""
    return json.dumps(defined_once(parsed), separators=(",", ":"))


def defined_once(node, seen: set[str] | None = None):
    """A schema with each named type defined at its first use and referred to by name after (fastavro and
    Avro's other parsers refuse a name defined twice), keys starting with __ (fastavro's own) left out."""
    seen = set() if seen is None else seen
    if isinstance(node, list):
        return [defined_once(item, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") in ("record", "enum", "fixed") and "name" in node:
        if node["name"] in seen:
            return node["name"]
        seen.add(node["name"])
    return {key: defined_once(value, seen) for key, value in node.items() if not key.startswith("__")}


def load_schema_files(schemas_dir: Path) -> list[dict]:
    """Parse every .avsc, in whatever order their references allow; each comes back self-contained."""
    pending = [json.loads(p.read_text()) for sub in SUBDIRS for p in sorted((schemas_dir / sub).glob("*.avsc"))]
    named: dict[str, Any] = {}
    parsed: list[dict] = []
    while pending:
        deferred = []
        for raw in pending:
            try:
                parse_schema(raw, named)
                parsed.append(raw)
            except UnknownType:
                deferred.append(raw)
        if len(deferred) == len(pending):
            names = ", ".join(r.get("name", "?") for r in deferred)
            raise ValueError(f"schemas refer to types no .avsc defines: {names}")
        pending = deferred
    return [cast(dict, parse_schema(raw, named, expand=True)) for raw in parsed]     # records: dicts


def parse_announced(schema_json: str, local: dict | None = None) -> dict:
    """A writer schema as producers announce it (its parsing canonical form), parsed as ours are (expanded).
    Expanded schemas define a named type at every use, so their canonical form does too, which fastavro will
    not parse back ("redefined named type"): each later definition of a name is read as a reference to it.
    The canonical form carries no logical types: those of `local` (our version of the record) are put back on
    the longs it has in the same place, so an older writer's times still read as times — and only those: a
    registry's schema of our record reads as ours does. The fingerprint of the result is the announced one
    (logical types are not part of the canonical form)."""
    announced = defined_once(json.loads(schema_json))
    if local:
        announced = with_logical_types(without_logical_types(announced), local)
    return cast(dict, parse_schema(announced, expand=True))


def without_logical_types(node):
    """An announced schema without logical types, for our version of the record to put its own back. Logical
    types are not part of the fingerprint, so a registry schema of one of our records with one on a long of ours
    (a row count read as a time) would otherwise be taken for the writer schema of that fingerprint, and read
    every later record so."""
    if isinstance(node, list):
        return [without_logical_types(item) for item in node]
    if isinstance(node, dict):
        return {key: without_logical_types(value) for key, value in node.items() if key != "logicalType"}
    return node


def with_logical_types(node, local):
    """`node` (announced JSON) with the logical types `local` (a parsed schema) has on the same longs."""
    if isinstance(local, dict) and local.get("type") == "long" and "logicalType" in local:
        if node == "long" or (isinstance(node, dict) and node.get("type") == "long"):
            return {"type": "long", "logicalType": local["logicalType"]}
        return node
    if isinstance(node, list):                      # a union: each branch against ours of the same kind
        branches = local if isinstance(local, list) else [local]
        return [with_logical_types(branch, next((b for b in branches if _kind(b) == _kind(branch)), None))
                for branch in node]
    if not isinstance(node, dict) or not isinstance(local, dict):
        return node
    if node.get("type") == "record" and local.get("type") == "record":
        ours = {f["name"]: f["type"] for f in local["fields"]}
        return {**node, "fields": [{**f, "type": with_logical_types(f["type"], ours.get(f["name"]))}
                                   for f in node["fields"]]}
    for part in ("items", "values"):
        if part in node and part in local:
            return {**node, part: with_logical_types(node[part], local[part])}
    return node


def _kind(schema) -> str | None:
    """What a union branch is: its primitive type, or its named type's name."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        return schema.get("name") if schema.get("type") in ("record", "enum", "fixed") else schema.get("type", "")
    return "union"


class SchemaCatalogue:
    """Local schemas by name, every known writer schema by fingerprint and, once seen, by registry id.

    registry: where Confluent-framed records find their writer schema, and where the records named in
    `confluent` get the id they are written with (None: such records cannot be read, and none are written)."""

    def __init__(self, parsed_schemas: Iterable[dict], resolver: Callable[[bytes], str | None] | None = None,
                 registry: RegistryIds | None = None, confluent: Iterable[str] = ()):
        self.by_name: dict[str, WriterSchema] = {}
        self.by_fingerprint: dict[bytes, WriterSchema] = {}
        for parsed in parsed_schemas:
            schema = writer_schema(parsed)
            self.by_name[schema.name] = schema
            self.by_fingerprint[schema.fingerprint] = schema
        self.resolver = resolver
        self.registry = registry
        self.confluent = frozenset(confluent)
        if self.confluent and registry is None:
            raise ValueError(f"records to write in Confluent framing ({', '.join(sorted(self.confluent))}) "
                             "need a schema registry (MLBUS_REGISTRY_URL)")
        self.by_registry_id: dict[int, WriterSchema] = {}
        self._unknown_ids: set[int] = set()
        self._lookups: deque[float] = deque()           # when each recent registry look-up was made
        self._prefixes: dict[str, bytes] = {}       # record name → the header it is written with
        self._compiled: dict[bytes, Callable[[bytes], dict | None] | None] = {}    # fingerprint → its reader
        self._writers: dict[str, Callable[[dict], bytes | None] | None] = {}      # local record → its writer

    @classmethod
    def from_dir(cls, schemas_dir: Path, resolver: Callable[[bytes], str | None] | None = None):
        return cls(load_schema_files(schemas_dir), resolver)

    def schema(self, name: str) -> WriterSchema:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no schema named {name} in schemas/") from None

    def learn(self, schema_json: str) -> WriterSchema:
        """Add a writer schema seen elsewhere (another service's newer or older version); one whose fingerprint is
        known already is the one known. At most MAX_LEARNED are kept (then forgotten all at once, ours kept)."""
        local = self.by_name.get(json.loads(schema_json).get("name", ""))
        schema = writer_schema(parse_announced(schema_json, local.parsed if local else None))
        known = self.by_fingerprint.get(schema.fingerprint)
        if known is not None:
            return known
        if len(self.by_fingerprint) >= len(self.by_name) + MAX_LEARNED:
            ours = {s.fingerprint for s in self.by_name.values()}
            self.by_fingerprint = {fp: s for fp, s in self.by_fingerprint.items() if fp in ours}
            self.by_registry_id = {i: s for i, s in self.by_registry_id.items() if s.fingerprint in ours}
            self._compiled = {fp: c for fp, c in self._compiled.items() if fp in ours}
        self.by_fingerprint[schema.fingerprint] = schema
        return schema

    def encode(self, name: str, datum: dict, check: bool = False) -> bytes:
        """Single-object encoding of datum with the local schema `name`; check=True names a bad field."""
        schema = self.schema(name)
        if check:
            check_datum(schema, datum)
        if schema.name not in self._writers:
            self._writers[schema.name] = encoder(schema.parsed, self.prefix_of(schema))
        compiled = self._writers[schema.name]
        # In compiled code where it can (services/bus/native.py): the bytes fastavro writes; fastavro writes (or
        # refuses) the values it leaves.
        payload = compiled(datum) if compiled is not None else None
        if payload is not None:
            return payload
        buffer = io.BytesIO()
        buffer.write(self.prefix_of(schema))
        try:
            fastavro.schemaless_writer(buffer, schema.parsed, datum)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            check_datum(schema, datum)      # raises with the field's name
            raise BadInput(f"{name}: {exc}") from exc
        return buffer.getvalue()

    def prefix_of(self, schema: WriterSchema) -> bytes:
        """The header `schema`'s records are written with: its single-object prefix, or Confluent's with the id
        the registry gives it (asked once)."""
        if schema.name not in self.confluent:
            return schema.prefix
        if schema.name not in self._prefixes:
            assert self.registry is not None        # __init__ refuses confluent records without one
            schema_id = self.registry.id_for(schema.name, registry_form(schema.parsed))
            self.by_registry_id[schema_id] = schema
            self._prefixes[schema.name] = confluent_prefix(schema_id)
        return self._prefixes[schema.name]

    def decode(self, payload: bytes | None, reader: str | None = None) -> tuple[str, dict]:
        """(record name, datum) read with the local version of the writer's record, or `reader`."""
        writer, header_len = self.located(payload)
        assert payload is not None          # located refuses a tombstone (DecodeError)
        reader_schema = self.by_name.get(reader or writer.name)
        if reader_schema is None or reader_schema.fingerprint == writer.fingerprint:
            reader_parsed = None
            # Read as the writer wrote it: in compiled code where it can (services/bus/native.py), the same
            # dict fastavro makes; what it leaves (bytes fastavro would refuse among them) goes to fastavro.
            if writer.fingerprint not in self._compiled:
                self._compiled[writer.fingerprint] = decoder(writer.parsed)
            compiled = self._compiled[writer.fingerprint]
            try:
                datum = compiled(payload[header_len:]) if compiled is not None else None
            except Exception as exc:    # a time past a datetime's range, say: bad input as fastavro's are
                raise DecodeError(f"{writer.name} body does not decode: {type(exc).__name__}: {exc}") from exc
            if datum is not None:
                return (reader_schema or writer).name, datum
        else:
            reader_parsed = reader_schema.parsed
        buffer = io.BytesIO(payload)
        buffer.seek(header_len)
        try:
            datum = cast(dict, fastavro.schemaless_reader(buffer, writer.parsed, reader_parsed))   # a record
        except Exception as exc:    # fastavro raises many types on corrupt bodies: all mean bad input
            raise DecodeError(f"{writer.name} body does not decode: {type(exc).__name__}: {exc}") from exc
        if buffer.tell() != len(payload):
            raise DecodeError(f"{writer.name}: {len(payload) - buffer.tell()} bytes left after the record")
        return (reader_schema or writer).name, datum

    def writer_of(self, payload: bytes | None) -> WriterSchema:
        return self.located(payload)[0]

    def located(self, payload: bytes | None) -> tuple[WriterSchema, int]:
        """The writer schema of a framed record, and where its body starts; DecodeError for what is neither
        framing, or names a writer schema nobody knows."""
        if payload is not None and payload[:1] == CONFLUENT_MAGIC and len(payload) >= CONFLUENT_HEADER_LEN:
            return self._by_registry_id(int.from_bytes(payload[1:CONFLUENT_HEADER_LEN], "big")), CONFLUENT_HEADER_LEN
        if payload is None or len(payload) < HEADER_LEN:
            raise DecodeError(f"message of {0 if payload is None else len(payload)} bytes is too short "
                              "for Avro single-object encoding or Confluent's framing")
        if payload[:2] != MARKER:
            raise DecodeError(f"no Avro single-object marker C3 01 nor Confluent's magic byte 00 "
                              f"(starts with {payload[:2].hex()})")
        fp = bytes(payload[2:HEADER_LEN])
        schema = self.by_fingerprint.get(fp)
        if schema is None and self.resolver is not None:
            schema_json = self.resolver(fp)
            schema = self.learn(schema_json) if schema_json else None
        if schema is None:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()}")
        return schema, HEADER_LEN

    def _spend_lookup(self, schema_id: int) -> None:
        """Count a registry look-up against LOOKUP_BUDGET; DecodeError (dead-lettered, not asked) when spent."""
        most, window_s = LOOKUP_BUDGET
        now = time.monotonic()
        while self._lookups and now - self._lookups[0] > window_s:
            self._lookups.popleft()
        if len(self._lookups) >= most:
            raise DecodeError(f"schema id {schema_id} not looked up: {most} ids not seen before were asked of the "
                              f"schema registry in the last {window_s:.0f} s (a flood of unknown ids)")
        self._lookups.append(now)

    def _by_registry_id(self, schema_id: int) -> WriterSchema:
        schema = self.by_registry_id.get(schema_id)
        if schema is not None:
            return schema
        if self.registry is None:
            raise DecodeError(f"a Confluent-framed record (schema id {schema_id}) and no schema registry to "
                              "look its schema up in (MLBUS_REGISTRY_URL)")
        if schema_id in self._unknown_ids:
            raise DecodeError(f"schema id {schema_id} is not in the schema registry")
        self._spend_lookup(schema_id)
        try:
            schema_json = self.registry.schema_text(schema_id)
        except InfrastructureError:             # a registry that does not answer: not the record's fault
            raise
        except Exception as refused:            # noqa: BLE001 - the registry refused this id: the record's fault
            raise DecodeError(f"schema id {schema_id}: {str(refused)[:300]}") from None
        if schema_json is None:
            if len(self._unknown_ids) >= MAX_UNKNOWN_IDS:
                self._unknown_ids.clear()
            self._unknown_ids.add(schema_id)
            raise DecodeError(f"schema id {schema_id} is not in the schema registry")
        try:
            schema = self.learn(schema_json)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, SchemaParseException) as exc:
            raise DecodeError(f"schema id {schema_id}: the registry's schema does not parse as Avro: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if len(self.by_registry_id) >= MAX_LEARNED:
            written = {int.from_bytes(prefix[1:], "big") for prefix in self._prefixes.values()}
            self.by_registry_id = {i: s for i, s in self.by_registry_id.items() if i in written}
        self.by_registry_id[schema_id] = schema
        return schema


def check_datum(schema: WriterSchema, datum: Any) -> None:
    """Raise BadInput naming the field(s) that do not fit the schema."""
    try:
        validate(datum, schema.parsed, raise_errors=True)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, schema.name) for e in exc.errors)
        raise BadInput(f"record does not fit {schema.name}: {problems}") from None


def _describe(error: Any, record: str) -> str:
    field = error.field.removeprefix(record + ".").removeprefix(record.rsplit(".", 1)[-1] + ".")
    return f"field {field!r} got {error.datum!r}, expected {_type_name(error.schema)}"


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return schema.get("logicalType") or schema.get("type", "?")
    if isinstance(schema, list):
        return " | ".join(_type_name(s) for s in schema)
    return str(schema)
