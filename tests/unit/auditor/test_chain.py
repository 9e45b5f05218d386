"""The audit chain, pure: records sealed in order; verify finds a flipped byte, a dropped record, two
swapped records and a tail truncated below a checkpoint, naming the first bad sequence number."""
import json
from datetime import datetime, timedelta

from services.domain.audit import EPOCH, GENESIS, ChainHead, canonical_bytes, verify
from services.auditor.decide import Crossing, append, audit_record


def crossing(i: int) -> Crossing:
    return Crossing("inference.requests", i % 3, i, 1_700_000_000_000 + i, f"k{i}".encode(),
                    [("ce_source", b"cli:ana"), ("ce_type", b"mlbus.InferenceRequest"), ("empty", None)],
                    bytes([0xC3, 0x01, i % 256]))


def chain(n: int, every: int = 0) -> list[dict]:
    _, events = append(ChainHead(), [crossing(i) for i in range(n)], 1_800_000_000_000, every)
    return [e.value for e in events if e.record == "mlbus.AuditRecord"]


def test_records_are_numbered_from_one_and_linked_from_genesis():
    records = chain(5)
    assert [r["sequence"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_hash"] == GENESIS and all(b["prev_hash"] == a["hash"] for a, b in zip(records, records[1:]))
    assert records[0]["actor"] == "cli:ana" and records[0]["record_type"] == "mlbus.InferenceRequest"
    head, broken = verify(records)
    assert broken is None and head == ChainHead(5, records[-1]["hash"])


def test_a_chain_continues_from_a_head_and_checkpoints_every_n():
    first_head, first = append(ChainHead(), [crossing(i) for i in range(4)], 1, 2)
    _, second = append(first_head, [crossing(i) for i in range(4, 6)], 2, 2)
    records = [e.value for e in first + second if e.record == "mlbus.AuditRecord"]
    checkpoints = [e.value for e in first + second if e.record == "mlbus.AuditCheckpoint"]
    assert [c["sequence"] for c in checkpoints] == [2, 4, 6]
    assert verify(records, checkpoints)[1] is None


def test_a_flipped_byte_is_found_at_its_sequence():
    records = chain(10)
    value = bytearray(records[6]["value"])
    value[-1] ^= 0x01
    records[6] = {**records[6], "value": bytes(value)}
    assert verify(records)[1].sequence == 7


def test_a_dropped_record_and_two_swapped_records_are_found():
    records = chain(10)
    assert verify(records[:3] + records[4:])[1].sequence == 4
    swapped = records[:5] + [records[6], records[5]] + records[7:]
    assert verify(swapped)[1].sequence == 6


def test_a_tail_truncated_below_a_checkpoint_is_found():
    records = chain(10)
    checkpoint = {"sequence": 9, "hash": records[8]["hash"]}
    broken = verify(records[:7], [checkpoint])[1]
    assert broken.sequence == 8 and "truncated" in broken.reason
    assert verify(records, [{"sequence": 9, "hash": "f" * 64}])[1].sequence == 9


def test_canonical_bytes_do_not_depend_on_how_a_time_is_given():
    record = audit_record(crossing(1), 1, 1_800_000_000_123)
    as_datetime = {**record, "audited_at": EPOCH + timedelta(milliseconds=1_800_000_000_123), "prev_hash": "0"}
    assert canonical_bytes({**record, "prev_hash": "0"}) == canonical_bytes(as_datetime)


def spec_bytes(record: dict) -> bytes:
    """The canonical form as the module docstring states it, generically: every field but `hash`, sorted keys,
    no spaces, bytes as lowercase hex, times as epoch milliseconds."""
    def plain(value):
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, datetime):
            return (value - EPOCH) // timedelta(milliseconds=1)
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return json.dumps({k: plain(v) for k, v in record.items() if k != "hash"}, sort_keys=True,
                      separators=(",", ":")).encode()


def test_canonical_bytes_are_the_documented_json_of_every_field_but_the_hash():
    records = chain(3)
    odd = {**records[0], "key": None, "value": None, "record_type": None, "actor": "cli:ünïcode \"q\"",
           "headers": [{"key": "h", "value": None}, {"key": "h", "value": b"\x00\xff"}]}
    for record in records + [odd]:
        assert canonical_bytes(record) == spec_bytes(record)


def test_a_persons_act_is_audited_with_its_verified_signer_and_a_failed_one_says_why():
    from services.auditor.decide import attest
    from services.bus.signing import Verdict
    assert attest({"signer": "ana"}, Verdict(signer="ana", signer_key="1a2b")) == "ana (signed, key 1a2b)"
    assert attest({"signer": "ana"}, Verdict(refusal="unknown signing key 9")) == "unverified ana: unknown signing key 9"
    assert attest({"signer": None}, Verdict(refusal="unsigned")) is None          # a service's act: its ce_source
