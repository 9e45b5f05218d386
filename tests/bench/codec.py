"""Codec: mlbus's encode/decode of the request and prediction records against raw fastavro
schemaless_writer/reader on the same parsed schema, in a tight loop, one core; and Confluent's framing (00 + a
registry id) beside single-object encoding, both through mlbus's codec. The registry is asked once per record
type and never in the loop, so an id map in memory stands in for it here (tests/integration/test_schema_registry.py
and the outside readers' tests use a real one)."""
from __future__ import annotations

import io
import time
from typing import Callable
from datetime import datetime, timezone

import fastavro

from services.bus import Bus
from services.bus.codec import SchemaCatalogue

from .figures import Figure, compare, measure_pair

REQUEST = {"request_id": "r-000001", "entity_id": "customer-42", "model": "bench_rf",
           "features": {f"f{i:02d}": 0.1 * i for i in range(20)}, "categories": {},
           "sent_at": datetime(2026, 11, 23, tzinfo=timezone.utc)}
PREDICTION = {"prediction_id": "p-000001", "request_id": "r-000001", "entity_id": "customer-42", "model": "bench_rf",
              "version": 3, "variant": "champion", "served": True, "label": "1", "score": 0.93,
              "probabilities": {"0": 0.07, "1": 0.93}, "latency_ms": 4.2, "deployment_id": "d-1", "error": None,
              "predicted_at": datetime(2026, 11, 23, tzinfo=timezone.utc)}


def rate(loop, n: int) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        loop(n)
        return n / (time.perf_counter() - started)
    return run


class IdMap:
    """The registry's two answers from memory: ids in order of registration."""

    def __init__(self):
        self.texts: list[str] = []

    def id_for(self, record: str, schema_text: str) -> int:
        if schema_text not in self.texts:
            self.texts.append(schema_text)
        return self.texts.index(schema_text) + 1

    def schema_text(self, schema_id: int) -> str | None:
        return self.texts[schema_id - 1] if 0 < schema_id <= len(self.texts) else None


def benchmarks(bus: Bus, quick: bool, counted: int) -> list[Figure]:
    n = 20_000 if quick else 100_000
    parsed_all = [schema.parsed for schema in bus.schemas.by_name.values()]
    confluent = SchemaCatalogue(parsed_all, registry=IdMap(), confluent=("mlbus.InferenceRequest", "mlbus.Prediction"))
    figures = []
    for record, datum in (("mlbus.InferenceRequest", REQUEST), ("mlbus.Prediction", PREDICTION)):
        parsed = bus.schemas.schema(record).parsed
        encoded = bus.schemas.encode(record, datum)
        body = encoded[10:]

        def ours_encode(k: int) -> None:
            for _ in range(k):
                bus.schemas.encode(record, datum)

        def raw_encode(k: int) -> None:
            for _ in range(k):
                buffer = io.BytesIO()
                fastavro.schemaless_writer(buffer, parsed, datum)
                buffer.getvalue()

        def ours_decode(k: int) -> None:
            for _ in range(k):
                bus.schemas.decode(encoded)

        def raw_decode(k: int) -> None:
            for _ in range(k):
                fastavro.schemaless_reader(io.BytesIO(body), parsed, None)

        short = record.split(".")[1]
        for verb, ours, raw in (("encode", ours_encode, raw_encode), ("decode", ours_decode, raw_decode)):
            mine, theirs = measure_pair(rate(ours, n), rate(raw, n), max(counted, 3))
            figures.append(compare(f"codec {verb} {short}", mine, "records/s",
                                   f"raw fastavro schemaless_{'writer' if verb == 'encode' else 'reader'}",
                                   theirs, goal_ratio=0.9, goal="≥ 0.9× raw fastavro"))
        framed = confluent.encode(record, datum)
        assert framed[5:] == body and confluent.decode(framed)[0] == record

        def confluent_encode(k: int) -> None:
            for _ in range(k):
                confluent.encode(record, datum)

        def confluent_decode(k: int) -> None:
            for _ in range(k):
                confluent.decode(framed)

        for verb, theirs_loop, ours_loop in (("encode", confluent_encode, ours_encode),
                                             ("decode", confluent_decode, ours_decode)):
            mine, theirs = measure_pair(rate(theirs_loop, n), rate(ours_loop, n), max(counted, 3))
            figures.append(compare(f"codec {verb} {short}, Confluent framing", mine, "records/s",
                                   "single-object encoding (mlbus's default)", theirs, goal_ratio=0.9,
                                   goal="≥ 0.9× single-object"))
    return figures
