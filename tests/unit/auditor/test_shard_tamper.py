"""The tamper matrix on every shard, pure: three shards, each its own chain, tree and signed heads (log id
<log>/shard-k); whichever shard a tamperer touches — a flipped byte, a dropped, inserted or swapped record, a tail
truncated below a head, a rewrite re-signed with the auditor's own key, a record or a head carried over from
another shard — that shard's walk breaks at the first bad sequence and every other shard still verifies."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor.decide import Crossing, Log, append
from services.domain.audit import GENESIS, Head, seal, verify
from services.domain.audited import head_of_checkpoint
from services.domain.shards import shard_log_id, shard_of
from services.domain.tree_head import LogKey, TreeHead

KEY = LogKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
KEYS = {KEY.key_id: KEY.public}
LOG = "t.audit.log"
SHARDS = 3
RECORDS = 12            # per shard
EVERY = 4               # a signed head every 4 records


class Shard:
    """One shard's records, the heads kept on audit.checkpoints and the heads kept in the anchor."""

    def __init__(self, shard: int, first: int = 0):
        self.name = shard_log_id(LOG, shard)
        partitions = [p for p in range(12) if shard_of("inference.requests", p, SHARDS) == shard]
        crossings = [Crossing("inference.requests", partitions[i % len(partitions)], i, 1_700_000_000_000 + i,
                              f"k{i}".encode(), [("ce_type", b"mlbus.InferenceRequest")], bytes([0xC3, 0x01, i % 256]))
                     for i in range(first, first + RECORDS)]
        events, signed = append(Log(), crossings, 1_800_000_000_000, EVERY,
                                lambda size, root, at: KEY.sign(self.name, size, root, at))
        self.records = [e.value for e in events if e.record == "mlbus.AuditRecord"]
        self.on_topic = [head_of_checkpoint(e.value, "audit.checkpoints") for e in events
                         if e.record == "mlbus.AuditCheckpoint"]
        self.signed: list[TreeHead] = signed

    def anchored(self) -> list[Head]:
        return [Head(f"anchor:{n}", h.tree_size, signed=h) for n, h in enumerate(self.signed, 1)]

    def heads(self) -> list[Head]:
        return self.on_topic + self.anchored()


def flipped(shard: Shard, _: list[Shard]) -> int:
    value = bytearray(shard.records[6]["value"])
    value[-1] ^= 0x01
    shard.records[6] = {**shard.records[6], "value": bytes(value)}
    return 7


def dropped(shard: Shard, _: list[Shard]) -> int:
    del shard.records[4]
    return 5


def inserted(shard: Shard, _: list[Shard]) -> int:
    shard.records.insert(8, shard.records[2])
    return 9


def swapped(shard: Shard, _: list[Shard]) -> int:
    shard.records[2], shard.records[3] = shard.records[3], shard.records[2]
    return 3


def truncated(shard: Shard, _: list[Shard]) -> int:
    del shard.records[6:]           # below the head at 8 kept in the anchor
    return 7


def rewritten(shard: Shard, _: list[Shard]) -> int:
    """Records 6.. replaced by another history, re-sealed so the chain holds and its topic heads re-signed with
    the auditor's own key: only the heads in the anchor show it, at the first head past the rewrite."""
    forged = Shard(0, first=500)
    relinked = shard.records[:5]
    for record in forged.records[5:]:
        relinked.append(seal({**record, "sequence": len(relinked) + 1}, relinked[-1]["hash"] if relinked else GENESIS))
    shard.records = relinked
    shard.on_topic = []
    return 8


def record_from_another_shard(shard: Shard, others: list[Shard]) -> int:
    """Another shard's record 3, sealed in that shard's chain, put in this shard's place 3."""
    shard.records[2] = others[0].records[2]
    return 3


def head_from_another_shard(shard: Shard, others: list[Shard]) -> int:
    """This shard's records whole, but the anchor's first head is another shard's (signed by the same key for its
    own log id): refused as a head of another log, at the head's size."""
    shard.signed = [others[0].signed[0], *shard.signed[1:]]
    return EVERY


TAMPERINGS: list[Callable[[Shard, list[Shard]], int]] = [
    flipped, dropped, inserted, swapped, truncated, rewritten, record_from_another_shard, head_from_another_shard]


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("victim", range(SHARDS))
def test_a_tampered_shard_breaks_at_its_first_bad_sequence_and_only_that_shard(tamper, victim):
    shards = [Shard(k) for k in range(SHARDS)]
    assert all(verify(s.records, s.heads(), KEYS, s.name).broken is None for s in shards)
    first_bad = tamper(shards[victim], [s for k, s in enumerate(shards) if k != victim])
    for k, shard in enumerate(shards):
        broken = verify(shard.records, shard.heads(), KEYS, shard.name).broken
        if k != victim:
            assert broken is None, (k, broken)
        else:
            assert broken is not None and broken.sequence == first_bad, (tamper.__name__, broken)


def test_each_shards_heads_are_refused_as_any_other_shards():
    """The same key signs every shard's heads, each for its own log id: no shard's head vouches for another."""
    shards = [Shard(k) for k in range(SHARDS)]
    for k, shard in enumerate(shards):
        for other in (s for j, s in enumerate(shards) if j != k):
            broken = verify(shard.records, other.anchored(), KEYS, shard.name).broken
            assert broken is not None and "another log" in broken.reason, (k, broken)
