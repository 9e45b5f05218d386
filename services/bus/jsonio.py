"""JSON ⇄ Avro datum conversion for people and scripts: ISO times, base64 bytes."""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from .errors import BadInput


def from_json(schema: Any, value: Any, path: str = "") -> Any:
    """Convert a JSON value to what fastavro writes: ISO strings → datetimes, base64 → bytes.
    Missing timestamp fields of a record default to now (an event's own time)."""
    if isinstance(schema, list):
        for branch in schema:
            if value is None and branch == "null":
                return None
        branches = [b for b in schema if b != "null"]
        return from_json(branches[0], value, path) if len(branches) == 1 and value is not None else value
    if isinstance(schema, dict):
        kind = schema.get("type")
        if schema.get("logicalType") == "timestamp-millis":
            return _timestamp(value, path)
        if kind == "record" and isinstance(value, dict):
            return _record(schema, value, path)
        if kind == "array" and isinstance(value, list):
            return [from_json(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
        if kind == "map" and isinstance(value, dict):
            return {k: from_json(schema["values"], v, f"{path}.{k}") for k, v in value.items()}
        return from_json(kind, value, path) if isinstance(kind, (str, list)) and kind not in (
            "record", "array", "map", "enum", "fixed") else value
    if schema == "bytes" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise BadInput(f"field {path!r}: bytes must be base64") from None
    return value


def _record(schema: dict, value: dict, path: str) -> dict:
    known = {f["name"] for f in schema["fields"]}
    unknown = sorted(set(value) - known)
    if unknown:
        raise BadInput(f"{schema['name']} has no field {', '.join(repr(path + u) for u in unknown)}")
    converted = {}
    for field in schema["fields"]:
        name = field["name"]
        if name in value:
            converted[name] = from_json(field["type"], value[name], f"{path}{name}")
        elif isinstance(field["type"], dict) and field["type"].get("logicalType") == "timestamp-millis":
            converted[name] = datetime.now(timezone.utc)
        elif "default" in field:
            converted[name] = field["default"]
    return converted


def _timestamp(value: Any, path: str) -> Any:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"field {path!r}: {value!r} is not an ISO 8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return value


def to_json(value: Any) -> Any:
    """A decoded datum as plain JSON: datetimes as ISO strings, bytes as base64."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value
