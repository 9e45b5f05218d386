"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) with a schema catalogue.

Writers encode with their local schema from schemas/. Readers look the writer schema up by fingerprint
(schemas/ first, then whatever a resolver finds, e.g. the compacted `schemas` topic) and read with their
own version of the record (Avro schema resolution), so producers and consumers evolve independently.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, cast

import fastavro
from fastavro.schema import UnknownType, fingerprint, parse_schema, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from .errors import BadInput, DecodeError
from .native import decoder, encoder

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8
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
    the longs it has in the same place, so an older writer's times still read as times. The fingerprint of the
    result is the announced one (logical types are not part of the canonical form)."""
    seen: set[str] = set()

    def named_once(node):
        if isinstance(node, list):
            return [named_once(item) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") in ("record", "enum", "fixed") and "name" in node:
            if node["name"] in seen:
                return node["name"]
            seen.add(node["name"])
        return {key: named_once(value) for key, value in node.items()}

    announced = named_once(json.loads(schema_json))
    return cast(dict, parse_schema(with_logical_types(announced, local) if local else announced, expand=True))


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
    """Local schemas by name, every known writer schema by fingerprint."""

    def __init__(self, parsed_schemas: Iterable[dict], resolver: Callable[[bytes], str | None] | None = None):
        self.by_name: dict[str, WriterSchema] = {}
        self.by_fingerprint: dict[bytes, WriterSchema] = {}
        for parsed in parsed_schemas:
            schema = writer_schema(parsed)
            self.by_name[schema.name] = schema
            self.by_fingerprint[schema.fingerprint] = schema
        self.resolver = resolver
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
        """Add a writer schema seen elsewhere (another service's newer or older version)."""
        local = self.by_name.get(json.loads(schema_json).get("name", ""))
        schema = writer_schema(parse_announced(schema_json, local.parsed if local else None))
        self.by_fingerprint.setdefault(schema.fingerprint, schema)
        return schema

    def encode(self, name: str, datum: dict, check: bool = False) -> bytes:
        """Single-object encoding of datum with the local schema `name`; check=True names a bad field."""
        schema = self.schema(name)
        if check:
            check_datum(schema, datum)
        if schema.name not in self._writers:
            self._writers[schema.name] = encoder(schema.parsed, schema.prefix)
        compiled = self._writers[schema.name]
        # In compiled code where it can (services/bus/native.py): the bytes fastavro writes; fastavro writes (or
        # refuses) the values it leaves.
        payload = compiled(datum) if compiled is not None else None
        if payload is not None:
            return payload
        buffer = io.BytesIO()
        buffer.write(schema.prefix)
        try:
            fastavro.schemaless_writer(buffer, schema.parsed, datum)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            check_datum(schema, datum)      # raises with the field's name
            raise BadInput(f"{name}: {exc}") from exc
        return buffer.getvalue()

    def decode(self, payload: bytes | None, reader: str | None = None) -> tuple[str, dict]:
        """(record name, datum) read with the local version of the writer's record, or `reader`."""
        writer = self.writer_of(payload)
        assert payload is not None          # writer_of refuses a tombstone (DecodeError)
        reader_schema = self.by_name.get(reader or writer.name)
        if reader_schema is None or reader_schema.fingerprint == writer.fingerprint:
            reader_parsed = None
            # Read as the writer wrote it: in compiled code where it can (services/bus/native.py), the same
            # dict fastavro makes; what it leaves (bytes fastavro would refuse among them) goes to fastavro.
            if writer.fingerprint not in self._compiled:
                self._compiled[writer.fingerprint] = decoder(writer.parsed)
            compiled = self._compiled[writer.fingerprint]
            try:
                datum = compiled(payload[HEADER_LEN:]) if compiled is not None else None
            except Exception as exc:    # a time past a datetime's range, say: bad input as fastavro's are
                raise DecodeError(f"{writer.name} body does not decode: {type(exc).__name__}: {exc}") from exc
            if datum is not None:
                return (reader_schema or writer).name, datum
        else:
            reader_parsed = reader_schema.parsed
        buffer = io.BytesIO(payload)
        buffer.seek(HEADER_LEN)
        try:
            datum = cast(dict, fastavro.schemaless_reader(buffer, writer.parsed, reader_parsed))   # a record
        except Exception as exc:    # fastavro raises many types on corrupt bodies: all mean bad input
            raise DecodeError(f"{writer.name} body does not decode: {type(exc).__name__}: {exc}") from exc
        if buffer.tell() != len(payload):
            raise DecodeError(f"{writer.name}: {len(payload) - buffer.tell()} bytes left after the record")
        return (reader_schema or writer).name, datum

    def writer_of(self, payload: bytes | None) -> WriterSchema:
        if payload is None or len(payload) < HEADER_LEN:
            raise DecodeError(f"message of {0 if payload is None else len(payload)} bytes is too short "
                              "for Avro single-object encoding")
        if payload[:2] != MARKER:
            raise DecodeError(f"no Avro single-object marker C3 01 (starts with {payload[:2].hex()})")
        fp = bytes(payload[2:HEADER_LEN])
        schema = self.by_fingerprint.get(fp)
        if schema is None and self.resolver is not None:
            schema_json = self.resolver(fp)
            schema = self.learn(schema_json) if schema_json else None
        if schema is None:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()}")
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
