"""The audit log, pure: records sealed in order onto the chain and the Merkle tree, signed heads every n
records. The tamper matrix: verify finds a flipped byte, a dropped, inserted or reordered record and a tail
truncated below a head, naming the first bad sequence; a full rewrite (chain and heads recomputed, even
with the auditor's own key) only through the heads kept in the anchor; a forged head as such."""
import json
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor.decide import Crossing, Log, append, audit_record
from services.domain import merkle
from services.domain.audit import EPOCH, GENESIS, ChainHead, Head, canonical_bytes, leaf, seal, verify
from services.domain.audited import head_of_checkpoint
from services.domain.tree_head import LogKey

KEY = LogKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
KEYS = {KEY.key_id: KEY.public}
LOG = "t.audit.log"


def sign(size: int, root: str, at: int):
    return KEY.sign(LOG, size, root, at)


def crossing(i: int) -> Crossing:
    return Crossing("inference.requests", i % 3, i, 1_700_000_000_000 + i, f"k{i}".encode(),
                    [("ce_source", b"cli:ana"), ("ce_type", b"mlbus.InferenceRequest"), ("empty", None)],
                    bytes([0xC3, 0x01, i % 256]))


def chain(n: int, every: int = 0, first: int = 0) -> list[dict]:
    return [e.value for e in appended(n, every, first)[0] if e.record == "mlbus.AuditRecord"]


def appended(n: int, every: int, first: int = 0):
    return append(Log(), [crossing(i) for i in range(first, first + n)], 1_800_000_000_000, every, sign)


def topic_heads(events) -> list[Head]:
    return [head_of_checkpoint(e.value, "audit.checkpoints") for e in events if e.record == "mlbus.AuditCheckpoint"]


def anchor_heads(signed) -> list[Head]:
    return [Head(f"anchor:{n}", h.tree_size, signed=h) for n, h in enumerate(signed, 1)]


def broken(records, heads=()):
    return verify(records, heads, KEYS, LOG).broken


def test_records_are_numbered_from_one_and_linked_from_genesis():
    records = chain(5)
    assert [r["sequence"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_hash"] == GENESIS and all(b["prev_hash"] == a["hash"] for a, b in zip(records, records[1:]))
    assert records[0]["actor"] == "unverified:cli:ana" and records[0]["record_type"] == "mlbus.InferenceRequest"
    verified = verify(records)
    assert verified.broken is None and verified.head == ChainHead(5, records[-1]["hash"])
    assert verified.root == merkle.root([leaf(r) for r in records]).hex()


def test_a_log_continues_from_its_state_with_a_signed_head_every_n_records():
    log = Log()
    first, first_heads = append(log, [crossing(i) for i in range(4)], 1, 2, sign)
    second, second_heads = append(log, [crossing(i) for i in range(4, 6)], 2, 2, sign)
    records = [e.value for e in first + second if e.record == "mlbus.AuditRecord"]
    checkpoints = [e.value for e in first + second if e.record == "mlbus.AuditCheckpoint"]
    assert [c["sequence"] for c in checkpoints] == [h.tree_size for h in first_heads + second_heads] == [2, 4, 6]
    for c in checkpoints:           # each head's root is the tree of the records up to it, and its frontier resumes it
        assert c["root_hash"] == merkle.root([leaf(r) for r in records[:c["sequence"]]]).hex()
        assert merkle.Frontier(c["sequence"], [bytes.fromhex(h) for h in c["frontier"]]).root().hex() == c["root_hash"]
    assert broken(records, topic_heads(first + second) + anchor_heads(first_heads + second_heads)) is None


def test_a_flipped_byte_is_found_at_its_sequence():
    records = chain(10)
    value = bytearray(records[6]["value"])
    value[-1] ^= 0x01
    records[6] = {**records[6], "value": bytes(value)}
    assert broken(records).sequence == 7


def test_a_dropped_an_inserted_and_two_swapped_records_are_found():
    records = chain(10)
    assert broken(records[:3] + records[4:]).sequence == 4
    swapped = records[:5] + [records[6], records[5]] + records[7:]
    assert broken(swapped).sequence == 6
    assert broken(records[:3] + [records[8]] + records[3:]).sequence == 4


def test_a_tail_truncated_below_a_head_is_found():
    events, signed = appended(10, 3)
    records = [e.value for e in events if e.record == "mlbus.AuditRecord"]
    found = broken(records[:7], anchor_heads(signed))
    assert found.sequence == 8 and "truncated" in found.reason and found.head == "anchor:3"
    assert broken(records, [Head("file", 9, "f" * 64)]).sequence == 9


def test_a_full_rewrite_passes_its_own_checkpoints_but_not_the_anchor():
    """The operator recreates the topics with another history: chain and checkpoints recomputed and even
    signed with the auditor's key. Only the heads kept outside Kafka show it, naming the first one."""
    events, signed = appended(10, 4)
    forged_events, _ = appended(10, 4, first=100)
    forged = [e.value for e in forged_events if e.record == "mlbus.AuditRecord"]
    assert broken(forged, topic_heads(forged_events)) is None
    found = broken(forged, topic_heads(forged_events) + anchor_heads(signed))
    assert found.head == "anchor:1" and found.sequence == 4 and "between sequences 1 and 4 was rewritten" in found.reason
    rewritten_tail = chain(10)[:6] + chain(4, first=200)            # the same start, another ending
    relinked = []
    for record in rewritten_tail:           # re-sealed: a chain that holds
        prev = relinked[-1]["hash"] if relinked else GENESIS
        relinked.append(seal({**record, "sequence": len(relinked) + 1}, prev))
    found = broken(relinked, anchor_heads(signed))
    assert found.head == "anchor:2" and found.sequence == 8 and "between sequences 5 and 8" in found.reason


def test_a_head_whose_signature_does_not_verify_is_reported_as_such():
    events, signed = appended(6, 3)
    records = [e.value for e in events if e.record == "mlbus.AuditRecord"]
    forged = anchor_heads([signed[0].__class__(**{**signed[0].__dict__, "root_hash": "00" * 32})])
    assert "signature does not verify" in broken(records, forged).reason
    other = LogKey(Ed25519PrivateKey.generate()).sign(LOG, 3, signed[0].root_hash, 1)
    assert "unknown key" in broken(records, anchor_heads([other])).reason
    assert "another log" in verify(records, anchor_heads(signed), KEYS, "other.audit.log").broken.reason


def test_canonical_bytes_do_not_depend_on_how_a_time_is_given():
    record = audit_record(crossing(1), 1, 1_800_000_000_123)
    as_datetime = {**record, "audited_at": EPOCH + timedelta(milliseconds=1_800_000_000_123), "prev_hash": "0"}
    assert canonical_bytes({**record, "prev_hash": "0"}) == canonical_bytes(as_datetime)


def spec_bytes(record: dict) -> bytes:
    """The canonical form as the module docstring states it, generically: every field but `hash` (and `sealed`
    when null), sorted keys, no spaces, bytes as lowercase hex, times as epoch milliseconds."""
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
    return json.dumps({k: plain(v) for k, v in record.items() if k != "hash" and (k, v) != ("sealed", None)}, sort_keys=True,
                      separators=(",", ":")).encode()


def test_canonical_bytes_are_the_documented_json_of_every_field_but_the_hash():
    records = chain(3)
    odd = {**records[0], "key": None, "value": None, "record_type": None, "actor": "cli:ünïcode \"q\"",
           "headers": [{"key": "h", "value": None}, {"key": "h", "value": b"\x00\xff"}]}
    sealed = {**records[1], "value": None, "sealed": {"subject": "e-1", "nonce": b"\x01" * 12, "ciphertext": b"\xfe\x00"}}
    for record in records + [odd, sealed]:
        assert canonical_bytes(record) == spec_bytes(record)


def test_a_persons_act_is_audited_with_its_verified_signer_and_a_failed_one_says_why():
    from services.auditor.decide import attest
    from services.bus.signing import Verdict
    assert attest({"signer": "ana"}, Verdict(signer="ana", signer_key="1a2b")) == "ana (signed, key 1a2b)"
    assert attest({"signer": "ana"}, Verdict(refusal="unknown signing key 9")) == "unverified ana: unknown signing key 9"
    assert attest({"signer": None}, Verdict(refusal="unsigned")) is None          # unsigned: unverified ce_source
