"""services/native's compiled Avro paths (a Rust extension, mlbus_native), when scripts/setup could build it:
`native` is None on a machine without a Rust toolchain, where fastavro and the pure-Python code — the same
results, and tested so (tests/unit/test_compiled_codec.py, tests/unit/auditor/test_compiled.py) — run instead.

A plan describes an Avro type to the compiled code as nested tuples; it covers the types the compiled code
reads exactly as fastavro does, and `Unplanned` marks the rest (a union other than [null, T], which fastavro
writes by the value's type rather than the branch read; a logical type but timestamps; a reference by name)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import os

try:
    import mlbus_native as native
except ImportError:                     # pragma: no cover - no Rust toolchain: the pure-Python paths
    native = None
switched_off = os.environ.get("MLBUS_NATIVE", "").lower() in ("off", "0", "false", "no")
if switched_off:
    native = None                       # the pure-Python paths on purpose (scripts/test runs the unit tests so too)

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def millis_of(value) -> int | None:
    """A timestamp-millis as fastavro writes it: an aware datetime's milliseconds since the epoch (sub-millisecond
    truncated toward zero), an int as it is; None for anything else (a naive datetime is local time there)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    return value if type(value) is int else None


def micros_of(value) -> int | None:
    """A timestamp-micros as fastavro writes it (as millis_of)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return value if type(value) is int else None


# The times datetime holds (years 1 to 9999): fastavro refuses a timestamp beyond them. Each as fastavro reads it,
# and as it writes it.
TIMESTAMPS = {
    "timestamp-millis": (-62_135_596_800_000, 253_402_300_799_999, lambda n: EPOCH + timedelta(microseconds=n * 1000),
                         millis_of),
    "timestamp-micros": (-62_135_596_800_000_000, 253_402_300_799_999_999, lambda n: EPOCH + timedelta(microseconds=n),
                         micros_of)}


class Unplanned(Exception):
    """A type outside what the compiled code reads exactly as fastavro does."""


def plan(avro_type) -> object:
    """The plan of an Avro type (parsed, expanded), or Unplanned."""
    if isinstance(avro_type, str):
        if avro_type in PRIMITIVES:
            return avro_type
        raise Unplanned(avro_type)
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        if len(avro_type) != 2 or len(others) != 1 or isinstance(others[0], list):
            raise Unplanned(str(avro_type))
        return ("nullable", avro_type.index("null"), plan(others[0]))
    kind, logical = avro_type.get("type"), avro_type.get("logicalType")
    if logical is not None:
        if kind == "long" and logical in TIMESTAMPS:
            return ("timestamp", *TIMESTAMPS[logical])
        raise Unplanned(logical)
    if kind == "map":
        return ("map", plan(avro_type["values"]))
    if kind == "array":
        return ("array", plan(avro_type["items"]))
    if kind == "record":
        return record_plan(avro_type)
    if kind == "enum":
        return ("enum", len(avro_type["symbols"]), list(avro_type["symbols"]))
    if kind == "fixed":
        return ("fixed", avro_type["size"])
    return plan(kind)


def record_plan(schema: dict, field_plan: Callable[[dict], object] | None = None) -> tuple:
    """("record", field plans, field names, defaults: () or (value,) each, what fastavro writes for a missing
    field); `field_plan` may plan some fields otherwise (a redaction's blanks)."""
    fields = schema["fields"]
    return ("record", [(field_plan or (lambda f: plan(f["type"])))(f) for f in fields], [f["name"] for f in fields],
            [(f["default"],) if "default" in f else () for f in fields])


def decoder(schema: dict) -> Callable[[bytes], dict | None] | None:
    """The compiled reader of a record's body written with this schema (None without the extension, or for a
    schema outside the plans): a dict as fastavro's, or None for bytes it leaves to fastavro."""
    if native is None:
        return None
    try:
        return native.Decoder(record_plan(schema))
    except Unplanned:
        return None


def encoder(schema: dict, prefix: bytes) -> Callable[[dict], bytes | None] | None:
    """The compiled writer of a record with this schema: `prefix` and the body fastavro writes for a dict (None
    without the extension, or for a schema outside the plans); it answers None for a value it leaves to fastavro."""
    if native is None:
        return None
    try:
        return native.Encoder(prefix, record_plan(schema))
    except Unplanned:
        return None
