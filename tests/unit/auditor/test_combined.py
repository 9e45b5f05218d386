"""Shard 0's auditor of a sharded log signs the checkpoint of every shard's head: only heads it signed, the newest of
each shard, once per head interval and only when one moved; the event is an AuditCheckpoint the codec takes and its
head goes to the anchor with the transaction."""
from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor.decide import Log, combined_event, newest_shard_heads
from services.auditor.handlers import Auditor, Combine
from services.adapters import Anchor
from services.domain import LogKey, shard_log_id
from services.domain.shard_heads import combined_log_id, combined_of_checkpoint, combined_problem, shard_leaves
from tests.unit.auditor.test_pages import BUS, accept

LOG = "t.audit.log"
KEY = LogKey(Ed25519PrivateKey.generate())
OTHER = LogKey(Ed25519PrivateKey.generate())
KEYS = {KEY.key_id: KEY.public}


def checkpoint(shard: int, size: int, key: LogKey = KEY, log: str = LOG) -> dict:
    """A shard's head as the auditor's checkpoint carries it, bound to chain hash "h" (every record's in held)."""
    head = key.sign(shard_log_id(log, shard), size, f"{size:064x}", 1_000 + size)
    return {"sequence": size, "hash": "h", "checkpoint_at": 1, "log_id": head.log_id, "root_hash": head.root_hash,
            "signed_at": head.timestamp, "key_id": head.key_id, "signature": head.signature,
            "chain_signature": key.bind(head, "h")}


def held(shard: int, sequence: int) -> str:
    """The shards' committed chain hashes as these tests' logs hold them (the red team's tests hold real ones)."""
    return "h"


def newest(checkpoints: list[dict]) -> dict:
    found, _ = newest_shard_heads({}, checkpoints, LOG, 3, KEYS, held)
    return found


def test_the_newest_head_of_each_shard_this_auditor_signed_is_kept():
    found = newest([checkpoint(0, 5), checkpoint(1, 7), checkpoint(0, 9), checkpoint(0, 6),
                    checkpoint(2, 3, key=OTHER), checkpoint(1, 99, log="another.log"),
                    checkpoint(7, 4), {"sequence": 1, "hash": "x"}])
    assert {shard: head.tree_size for shard, head in found.items()} == {0: 9, 1: 7}   # shard 2's: another key


def test_a_forged_signature_is_passed_over():
    forged = {**checkpoint(1, 50), "root_hash": "ab" * 32}
    assert newest([forged]) == {}


def test_the_combined_event_is_a_checkpoint_the_codec_writes_and_verify_accepts():
    heads = newest([checkpoint(0, 5), checkpoint(2, 8)])
    leaves = shard_leaves(heads, 3)
    event, head = combined_event(leaves, LOG, 2_000, lambda size, root, at: KEY.sign(combined_log_id(LOG), size,
                                                                                      root, at))
    _, decoded = BUS.schemas.decode(BUS.schemas.encode(event.record, event.value))
    combined = combined_of_checkpoint(decoded)
    assert combined.signed == head and head.tree_size == 3 and event.key == combined_log_id(LOG)
    assert combined_problem(combined, LOG, KEYS, heads.values()) is None
    assert [leaf.tree_size for leaf in combined.leaves] == [5, 0, 8]


def test_shard_zero_signs_it_once_per_interval_and_only_when_a_shard_moved(tmp_path):
    class Tail:
        def __init__(self):
            self.pending: list[dict] = []

        def new(self):
            found, self.pending = self.pending, []
            return found

        def close(self):
            pass

    now = [1_000_000]
    tail = Tail()
    combine = Combine(tail, LOG, 3, KEYS, lambda size, root, at: KEY.sign(combined_log_id(LOG), size, root, at), held)
    bus = dataclasses.replace(BUS, settings=dataclasses.replace(
        BUS.settings, audit=dataclasses.replace(BUS.settings.audit, head_interval_s=30)))
    audit = Auditor(bus, Log, lambda size, root, at: KEY.sign(LOG, size, root, at), Anchor(tmp_path), accept,
                    clock=lambda: now[0], combine=combine)
    assert audit.tick() == []                                   # nothing signed by any shard yet
    tail.pending = [checkpoint(0, 5), checkpoint(1, 4)]
    first = audit.tick()
    assert [e.key for e in first] == [combined_log_id(LOG)] and len(audit.unanchored) == 1
    tail.pending = [checkpoint(2, 6)]
    now[0] += 10_000
    assert audit.tick() == []                                   # within the interval: not yet
    now[0] += 30_000
    second = audit.tick()
    assert [leaf["tree_size"] for leaf in second[0].value["shard_heads"]] == [5, 4, 6]
    now[0] += 60_000
    assert audit.tick() == []                                   # nothing moved
    audit.on_committed()
    assert {line for _, line in Anchor(tmp_path).lines(combined_log_id(LOG))} and audit.unanchored == []


def test_a_shard_resumes_past_the_combined_checkpoints_without_refusing_them(monkeypatch):
    """The combined heads on audit.checkpoints are no shard's to resume from, and no forgery either: read_log leaves
    them out rather than log each as a refused checkpoint (it did, at every shard's start); another log's stay in."""
    from services.auditor import adapters
    combined = {"log_id": combined_log_id(LOG), "sequence": 3}
    foreign, sibling = {"log_id": "another.log", "sequence": 1}, checkpoint(1, 4)
    seen = []
    monkeypatch.setattr(adapters, "checkpoints", lambda bus: [combined, foreign, sibling, checkpoint(0, 2)])
    monkeypatch.setattr(adapters, "resume_points", lambda given, keys, log_id: seen.extend(given) or ([], []))
    monkeypatch.setattr(adapters, "audit_records", lambda bus, shard: [])
    adapters.read_log(None, KEYS, LOG, shard=0, log=LOG)
    assert combined not in seen and sibling not in seen and foreign in seen and len(seen) == 2


def verified_combined(*changes) -> dict:
    """`audit verify`'s report on the combined checkpoints of a 3-shard log whose shard heads are signed, after
    `changes` (callables on (checkpoint values on the topic, anchor lines))."""
    from services.adapters.log_checks import combined_report
    heads = {k: KEY.sign(shard_log_id(LOG, k), 4 + k, f"{k:064x}", 1_000) for k in range(3)}
    sign = lambda size, root, at: KEY.sign(combined_log_id(LOG), size, root, at)    # noqa: E731
    event, head = combined_event(shard_leaves(heads, 3), LOG, 2_000, sign)
    _, value = BUS.schemas.decode(BUS.schemas.encode(event.record, event.value))
    kept, anchored = [value], [head.line()]
    for change in changes:
        change(kept, anchored)
    return combined_report(kept, anchored, LOG, KEYS, list(heads.values()), 3)


def test_verify_accepts_the_combined_checkpoint_the_auditor_writes():
    report = verified_combined()
    assert report["problem"] is None and report["checkpoints"] == 1 and report["anchored"] == 1


def test_verify_names_a_combined_checkpoint_that_does_not_hold():
    def forged_leaf(kept, _):
        kept[0]["shard_heads"][1]["tree_size"] = 99             # a head shard 1 never signed
    def rewritten(kept, _):
        kept[0] = {**kept[0], "root_hash": "ab" * 32}           # root no longer what was signed
    def dropped(kept, _):
        kept.clear()                                            # the anchor keeps what the topic lost
    def junk(kept, _):
        kept.append({"log_id": combined_log_id(LOG), "sequence": 3})
    for change, words in ((forged_leaf, "hash to another"), (rewritten, "signature"),
                          (dropped, "audit.checkpoints does not"), (junk, "malformed")):
        problem = verified_combined(change)["problem"]
        assert problem and words in problem, (change.__name__, problem)
