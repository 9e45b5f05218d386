"""The codec's compiled reader and writer (services/bus/native.py: services/native's Decoder and Encoder) against
fastavro, for every record type in schemas/: the same dict — types, values, key order, aware datetimes — and
the same bytes for hostile but schema-valid records drawn from each schema; bytes fastavro refuses (cut short,
bad UTF-8, a union branch out of range, a time no datetime holds) left to fastavro, which refuses them as
before; and values the writer leaves to fastavro (an int for a double, a naive time, a missing field, a wrong
type) written — or refused — by fastavro exactly as before."""
import io
import shutil
from datetime import datetime, timedelta, timezone

import fastavro
import pandas as pd
import pytest

from services.bus.codec import HEADER_LEN
from services.bus.context import Bus
from services.bus.errors import BadInput, DecodeError
from services.bus.native import decoder, encoder, native, switched_off
from services.bus.settings import Settings
from tests.support.avro_bytes import long_bytes, text
from tests.support.hostile import examples, strategy_for

BUS = Bus.from_settings(Settings.from_env({}))
RECORDS = sorted(BUS.schemas.by_name)

if native is None and shutil.which("cargo") and not switched_off:
    pytest.fail("cargo is here but mlbus_native is not installed: scripts/setup builds services/native",
                pytrace=False)
pytestmark = pytest.mark.skipif(native is None, reason="mlbus_native not built (no Rust toolchain here)")


def by_fastavro(record: str, payload: bytes) -> dict:
    return fastavro.schemaless_reader(io.BytesIO(payload[HEADER_LEN:]), BUS.schemas.schema(record).parsed, None)


def same(a, b) -> bool:
    """Equal, of the same types, with dicts in the same key order (NaN equal to NaN)."""
    if isinstance(a, dict):
        return (type(b) is dict and list(a) == list(b)) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b and (not hasattr(a, "tzinfo") or a.tzinfo == b.tzinfo)


def test_most_record_types_are_read_in_compiled_code():
    compiled = [r for r in RECORDS if decoder(BUS.schemas.schema(r).parsed) is not None]
    assert {"mlbus.InferenceRequest", "mlbus.Prediction", "mlbus.AuditRecord"} <= set(compiled)
    assert len(compiled) >= len(RECORDS) * 2 // 3, sorted(set(RECORDS) - set(compiled))


@pytest.mark.parametrize("record", RECORDS)
def test_every_record_type_reads_as_fastavro_reads_it(record):
    read = decoder(BUS.schemas.schema(record).parsed)
    if read is None:
        pytest.skip(f"{record} is outside the compiled plans: fastavro reads it")
    for value in examples(strategy_for(BUS.schemas.schema(record).parsed), 25, 7):
        payload = BUS.schemas.encode(record, value)
        assert same(read(payload[HEADER_LEN:]), by_fastavro(record, payload))
        assert same(BUS.schemas.decode(payload)[1], by_fastavro(record, payload))


def request_with(request_id: bytes = long_bytes(1) + b"r", sent_at: int = 1_796_169_600_000) -> bytes:
    head = BUS.schemas.schema("mlbus.InferenceRequest").prefix
    return head + request_id + text(b"e") + text(b"m") + long_bytes(0) + long_bytes(0) + long_bytes(sent_at)


@pytest.mark.parametrize("payload", [request_with()[:-2], request_with(request_id=long_bytes(1) + b"\xff"),
                                     request_with(sent_at=2**62), request_with() + b"\x00"],
                         ids=["cut short", "bad utf-8", "past year 9999", "bytes left over"])
def test_bytes_fastavro_refuses_are_refused_as_before(payload):
    read = decoder(BUS.schemas.schema("mlbus.InferenceRequest").parsed)
    assert read(payload[HEADER_LEN:]) is None
    with pytest.raises(DecodeError):
        BUS.schemas.decode(payload)


def test_a_request_as_written_reads_the_same():
    payload = request_with()
    assert same(BUS.schemas.decode(payload)[1], by_fastavro("mlbus.InferenceRequest", payload))


def by_fastavro_written(record: str, value) -> bytes:
    schema = BUS.schemas.schema(record)
    buffer = io.BytesIO(schema.prefix)
    buffer.seek(len(schema.prefix))
    fastavro.schemaless_writer(buffer, schema.parsed, value)
    return buffer.getvalue()


def writer(record: str):
    schema = BUS.schemas.schema(record)
    return encoder(schema.parsed, schema.prefix)


def test_most_record_types_are_written_in_compiled_code():
    compiled = [r for r in RECORDS if writer(r) is not None]
    assert {"mlbus.InferenceRequest", "mlbus.Prediction", "mlbus.AuditRecord"} <= set(compiled)
    assert len(compiled) >= len(RECORDS) * 2 // 3, sorted(set(RECORDS) - set(compiled))


@pytest.mark.parametrize("record", RECORDS)
def test_every_record_type_is_written_as_fastavro_writes_it(record):
    write = writer(record)
    if write is None:
        pytest.skip(f"{record} is outside the compiled plans: fastavro writes it")
    written = 0
    for value in examples(strategy_for(BUS.schemas.schema(record).parsed), 25, 11):
        payload = write(value)
        if payload is not None:
            written += 1
            assert payload == by_fastavro_written(record, value)
        assert BUS.schemas.encode(record, value) == by_fastavro_written(record, value)
    assert written >= 20          # the drawn records are plain values: the compiled writer takes nearly all


def prediction(**changes) -> dict:
    value = {"prediction_id": "p", "request_id": "r", "entity_id": "e", "model": "m", "version": 1,
             "variant": "champion", "served": True, "label": "1", "score": 0.75, "probabilities": {"0": 0.25, "1": 0.75},
             "latency_ms": 1.5, "cpu_ms": 0.1, "members": [], "deployment_id": "d", "error": None,
             "predicted_at": datetime(2026, 12, 2, 18, 0, 0, 123_999, tzinfo=timezone.utc)}
    return {**value, **changes}


LEFT_TO_FASTAVRO = {
    "an int for a double": prediction(score=1),
    "a bool for a long": prediction(version=True),
    "a naive time (local time to fastavro)": prediction(predicted_at=datetime(2026, 12, 2, 18, 0)),
    "a missing field": {k: v for k, v in prediction().items() if k != "model"},
    "a number for a string": prediction(label=5),
    "a non-string map key": prediction(probabilities={1: 0.5}),
    "a long past 64 bits": prediction(version=2 ** 64),
    "a string that is not UTF-8": prediction(label="\ud800"),
    "a record that is not a dict": [("model", "m")],
}
WRITTEN_BY_BOTH = {
    "another time zone": prediction(predicted_at=datetime(2026, 12, 2, 20, 0, 0, 999, tzinfo=timezone(timedelta(hours=2)))),
    "a pandas Timestamp": prediction(predicted_at=pd.Timestamp("2026-12-02T18:00:00.123456789Z")),
    "before the epoch": prediction(predicted_at=datetime(1960, 1, 1, 0, 0, 0, 500, tzinfo=timezone.utc)),
    "an int time": prediction(predicted_at=1_796_169_600_123),
    "a tuple for an array": prediction(members=()),
    "extra keys": {**prediction(), "unknown": object()},
    "fields left to their defaults": {k: v for k, v in prediction().items()
                                      if k not in ("error", "cpu_ms", "members", "probabilities", "version")},
}


@pytest.mark.parametrize("value", LEFT_TO_FASTAVRO.values(), ids=LEFT_TO_FASTAVRO.keys())
def test_values_the_compiled_writer_leaves_are_written_or_refused_by_fastavro_as_before(value):
    assert writer("mlbus.Prediction")(value) is None
    try:
        expected = by_fastavro_written("mlbus.Prediction", value)
    except Exception:                   # fastavro refuses it: so does the codec, as a BadInput naming the record
        with pytest.raises((BadInput, UnicodeEncodeError, OverflowError)):
            BUS.schemas.encode("mlbus.Prediction", value)
        return
    assert BUS.schemas.encode("mlbus.Prediction", value) == expected


@pytest.mark.parametrize("value", WRITTEN_BY_BOTH.values(), ids=WRITTEN_BY_BOTH.keys())
def test_plain_values_of_every_shape_are_written_as_fastavro_writes_them(value):
    assert writer("mlbus.Prediction")(value) == by_fastavro_written("mlbus.Prediction", value)
