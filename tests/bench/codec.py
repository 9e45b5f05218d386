"""Codec: mlbus's encode/decode of the request and prediction records against raw fastavro
schemaless_writer/reader on the same parsed schema, in a tight loop, one core."""
from __future__ import annotations

import io
import time
from typing import Callable
from datetime import datetime, timezone

import fastavro

from services.bus import Bus

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


def benchmarks(bus: Bus, quick: bool, counted: int) -> list[Figure]:
    n = 20_000 if quick else 100_000
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
    return figures
