"""A valid example datum for any Avro schema, so every schema can be round-tripped in tests."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

SAMPLE_TIME = datetime(2026, 11, 23, 12, 30, 15, 123000, tzinfo=timezone.utc)
PRIMITIVES = {"string": "text", "long": 42, "int": 7, "double": 1.5, "float": 0.5, "boolean": True,
              "bytes": b"\x00\x01\xff", "null": None}


def sample(schema: Any) -> Any:
    if isinstance(schema, list):
        non_null = [s for s in schema if s != "null"]
        return sample(non_null[0]) if non_null else None
    if isinstance(schema, str):
        return PRIMITIVES[schema]
    if schema.get("logicalType") == "timestamp-millis":
        return SAMPLE_TIME
    kind = schema["type"]
    if kind == "record":
        return {f["name"]: "{}" if f["name"].endswith("_json") else sample(f["type"]) for f in schema["fields"]}
    if kind == "array":
        return [sample(schema["items"])]
    if kind == "map":
        return {"key": sample(schema["values"])}
    if kind == "enum":
        return schema["symbols"][0]
    return sample(kind)
