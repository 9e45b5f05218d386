"""services/native's compiled paths (mlbus_native) against the pure-Python ones they replace, byte for byte.
The walk `audit verify` runs on audit.log's raw values: the same canonical bytes for every record shape
(strings needing every JSON escape, null and empty bytes, sealed personal data, many headers), the same root
and head, the same verdict — sequence and reason — on each case of the tamper matrix; a value it cannot read
(an older writer schema) is read in Python mid-batch. The auditor's seal: the same record encoding, chain
hash and leaf. Redaction of personal fields: the same bytes as decoding, blanking and re-encoding, and the
same refusals of hostile values (a repeated map key, bad UTF-8, a wild union branch, a time no datetime
holds, bytes left over)."""
import shutil
import struct
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from services.bus.codec import SchemaCatalogue
from services.bus.native import switched_off
from services.bus.settings import PROJECT_ROOT
from services.domain import merkle
from services.domain.audit import (EncodedWalk, canonical_bytes, compiled_seal, leaf, native, python_seal, verify,
                                   verify_walk)
from services.domain.erasure import Redaction, redacted

from tests.support.avro_bytes import long_bytes, text

from .test_chain import KEYS, LOG, anchor_heads, appended, chain, topic_heads

SCHEMAS = SchemaCatalogue.from_dir(PROJECT_ROOT / "schemas")
FINGERPRINT = SCHEMAS.schema("mlbus.AuditRecord").fingerprint

if native is None and shutil.which("cargo") and not switched_off:
    pytest.fail("cargo is here but mlbus_native is not installed: scripts/setup builds services/native",
                pytrace=False)
compiled = pytest.mark.skipif(native is None, reason="mlbus_native not built (no Rust toolchain on this machine)")


def decode(value: bytes) -> dict:
    return SCHEMAS.decode(value, "mlbus.AuditRecord")[1]


def encoded(records: list[dict]) -> list[bytes]:
    return [SCHEMAS.encode("mlbus.AuditRecord", r) for r in records]


def walked(values: list[bytes], heads=(), batch: int = 7, compiled: bool = True):
    batches = [values[i:i + batch] for i in range(0, len(values), batch)]
    return verify_walk(batches, EncodedWalk(decode, FINGERPRINT, compiled), heads, KEYS, LOG)


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
blobs = st.one_of(st.none(), st.binary(max_size=24))
records = st.fixed_dictionaries({
    "sequence": st.integers(-2**63, 2**63 - 1), "audited_at": st.integers(0, 2**42),
    "source_topic": texts, "source_partition": st.integers(-2**31, 2**31 - 1),
    "source_offset": st.integers(-2**63, 2**63 - 1), "source_timestamp": st.integers(-2**63, 2**63 - 1),
    "key": blobs, "headers": st.lists(st.fixed_dictionaries({"key": texts, "value": blobs}), max_size=4),
    "value": blobs, "actor": texts, "record_type": st.one_of(st.none(), texts),
    "sealed": st.one_of(st.none(), st.fixed_dictionaries({"subject": texts, "nonce": st.binary(max_size=12),
                                                           "ciphertext": st.binary(max_size=40)})),
    "prev_hash": texts, "hash": texts})


@compiled
@settings(max_examples=300, deadline=None)
@given(records)
def test_canonical_bytes_are_the_same_in_both(record):
    value = SCHEMAS.encode("mlbus.AuditRecord", record)
    assert native.canonical_of(value, FINGERPRINT) == canonical_bytes(decode(value))


@compiled
def test_every_escape_and_plane():
    record = {**chain(1)[0], "actor": 'a"\\\n\r\t\b\f\x00\x1f\x7f é€ 𝄞 \u2028', "record_type": None, "key": b""}
    value = SCHEMAS.encode("mlbus.AuditRecord", record)
    assert native.canonical_of(value, FINGERPRINT) == canonical_bytes(decode(value))
    assert b'\\u00e9\\u20ac \\ud834\\udd1e' in native.canonical_of(value, FINGERPRINT)


@compiled
def test_an_intact_log_walks_to_the_same_head_and_root():
    events, signed = appended(40, every=10)
    records = [e.value for e in events if e.record == "mlbus.AuditRecord"]
    heads = topic_heads(events) + anchor_heads(signed)
    fast, slow = walked(encoded(records), heads), walked(encoded(records), heads, compiled=False)
    assert fast == slow == verify(records, heads, KEYS, LOG)
    assert fast.broken is None and fast.heads == 8 and fast.head.sequence == 40
    assert fast.root == merkle.root([leaf(r) for r in records]).hex()


def tampered(records: list[dict]) -> dict[str, list[dict]]:
    flipped = [dict(r) for r in records]
    flipped[12]["value"] = bytes([flipped[12]["value"][0] ^ 1]) + flipped[12]["value"][1:]
    return {"flip": flipped, "drop": records[:12] + records[13:], "insert": records[:12] + [records[5]] + records[12:],
            "reorder": records[:12] + [records[13], records[12]] + records[14:], "truncate": records[:15],
            "relink": records[:12] + [{**records[12], "prev_hash": records[10]["hash"]}] + records[13:]}


@compiled
@pytest.mark.parametrize("case", ["flip", "drop", "insert", "reorder", "truncate", "relink"])
def test_the_tamper_matrix_has_the_same_verdicts(case):
    events, signed = appended(30, every=10)
    records = [e.value for e in events if e.record == "mlbus.AuditRecord"]
    heads = topic_heads(events) + anchor_heads(signed)
    changed = tampered(records)[case]
    fast, slow = walked(encoded(changed), heads), walked(encoded(changed), heads, compiled=False)
    assert fast == slow == verify(changed, heads, KEYS, LOG)
    assert fast.broken is not None and fast.broken.sequence == (13 if case != "truncate" else 16)


@compiled
def test_a_value_of_another_writer_schema_is_read_in_python_mid_batch():
    records = chain(9)
    values = encoded(records)
    values[4] = b"\xc3\x01" + bytes(8) + values[4][10:]       # a fingerprint the compiled walk does not read
    learned = {}

    def decode_any(value: bytes) -> dict:
        learned[value[:10]] = True
        return decode(b"\xc3\x01" + FINGERPRINT + value[10:])

    walk = EncodedWalk(decode_any, FINGERPRINT)
    verified = verify_walk([values], walk)
    assert verified.broken is None and verified.head.sequence == 9 and list(learned) == [b"\xc3\x01" + bytes(8)]


@compiled
@settings(max_examples=200, deadline=None)
@given(records)
def test_the_seal_encodes_hashes_and_leaves_alike(record):
    record = {**record, "source_partition": abs(record["source_partition"]) % 2**31}
    prev = "ab" * 32
    fast = compiled_seal(SCHEMAS.schema("mlbus.AuditRecord").prefix)(record, prev)
    slow = python_seal(record, prev)
    assert fast[:2] == slow[:2] and fast[2] == SCHEMAS.encode("mlbus.AuditRecord", slow[0])


PERSONAL = {"mlbus.InferenceRequest": ("features", "categories"), "mlbus.Outcome": ("label", "value")}
times = st.datetimes(timezones=st.just(timezone.utc)).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
requests = st.fixed_dictionaries({
    "request_id": texts, "entity_id": texts, "model": texts, "sent_at": times,
    "features": st.dictionaries(texts, st.floats(allow_nan=False), max_size=5),
    "categories": st.dictionaries(texts, texts, max_size=3)})
outcomes = st.fixed_dictionaries({
    "outcome_id": texts, "request_id": texts, "entity_id": texts, "model": texts, "observed_at": times,
    "label": st.one_of(st.none(), texts), "value": st.one_of(st.none(), st.floats())})


def both(record: str, value: bytes) -> tuple:
    redaction = Redaction(SCHEMAS, record, PERSONAL[record])
    assert redaction.compiled is not None
    return redaction.compiled(value), redacted(SCHEMAS, value, PERSONAL[record])


@compiled
@settings(max_examples=200, deadline=None)
@given(st.one_of(requests.map(lambda d: ("mlbus.InferenceRequest", d)), outcomes.map(lambda d: ("mlbus.Outcome", d))))
def test_redaction_gives_the_bytes_python_gives(case):
    record, datum = case
    fast, slow = both(record, SCHEMAS.encode(record, datum))
    assert fast == slow is not None


def hostile_requests() -> dict[str, bytes]:
    """InferenceRequest bodies written by hand: fastavro's own layout, the other layouts Avro allows, and
    values a hostile producer might send."""
    def double(x: float) -> bytes:
        return struct.pack("<d", x)

    def body(features: bytes, request_id: bytes = text(b"r"), sent_at: int = 1_796_169_600_000) -> bytes:
        categories = long_bytes(1) + text(b"c") + text(b"x") + long_bytes(0)
        return request_id + text(b"e") + text(b"m") + features + categories + long_bytes(sent_at)

    pair = text(b"a") + double(1.0) + text(b"b") + double(2.0)
    head = SCHEMAS.schema("mlbus.InferenceRequest").prefix
    written = head + body(long_bytes(2) + pair + long_bytes(0))
    return {
        "as written": written,
        "two blocks": head + body(long_bytes(1) + text(b"a") + double(1.0) + long_bytes(1) + text(b"b") + double(2.0) + long_bytes(0)),
        "a negative block count": head + body(long_bytes(-2) + long_bytes(len(pair)) + pair + long_bytes(0)),
        "a repeated key": head + body(long_bytes(2) + text(b"a") + double(1.0) + text(b"a") + double(2.0) + long_bytes(0)),
        "bad utf-8": head + body(long_bytes(2) + pair + long_bytes(0), request_id=long_bytes(1) + b"\xff"),
        "a time past year 9999": head + body(long_bytes(2) + pair + long_bytes(0), sent_at=2**62),
        "bytes left over": written + b"\x00", "cut short": written[:-3],
        "another writer": b"\xc3\x01" + bytes(8) + written[10:]}


@compiled
@pytest.mark.parametrize("case", sorted(hostile_requests()))
def test_hostile_values_are_refused_or_redacted_alike(case):
    value = hostile_requests()[case]
    fast, slow = both("mlbus.InferenceRequest", value)
    through = Redaction(SCHEMAS, "mlbus.InferenceRequest", PERSONAL["mlbus.InferenceRequest"])(value)
    assert through == slow                           # compiled where it agrees, Python for the rest
    assert fast is None or fast == slow
    if case in ("as written", "two blocks", "a negative block count"):
        assert fast == slow is not None
    if case in ("a repeated key", "bad utf-8", "a time past year 9999", "bytes left over", "cut short"):
        assert fast is None


@compiled
def test_a_wild_union_branch_is_refused_alike():
    outcome = SCHEMAS.encode("mlbus.Outcome", {"outcome_id": "o", "request_id": "r", "entity_id": "e", "model": "m",
                                               "label": "yes", "value": None,
                                               "observed_at": datetime(2026, 12, 2, tzinfo=timezone.utc)})
    at = outcome.index(b"\x02\x06yes")                  # label: branch 1 (string), "yes"
    wild = outcome[:at] + b"\x0a" + outcome[at + 1:]       # branch 5 of a two-branch union
    fast, slow = both("mlbus.Outcome", wild)
    assert fast is None and slow is None
