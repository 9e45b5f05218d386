"""What `audit prove` reads: the record's block and the last incomplete one, read at once with the checkpoints (a block
guessed from the anchor's newest head) — and a block read in advance is used only when it holds every record the
head it proves against covers there. No broker: the readers are fakes."""
from __future__ import annotations

import services.adapters.witness_log as witness_log

KEPT = [{"log_id": "log", "sequence": 600, "blocks_from": 0, "blocks": ["00" * 32, "11" * 32]}]


def block(index: int, count: int) -> list[dict]:
    return [{"sequence": n} for n in range(index * 256 + 1, index * 256 + count + 1)]


def fake_log(monkeypatch) -> list[tuple[int, int]]:
    """A log of 600 records whose leaf is its sequence; the reads of it, as (first, last)."""
    reads: list[tuple[int, int]] = []
    monkeypatch.setattr(witness_log, "leaf", lambda record: record["sequence"].to_bytes(32, "big"))
    monkeypatch.setattr(witness_log, "log_id", lambda bus: "log")
    monkeypatch.setattr(witness_log, "records_between", lambda bus, first, last, shard=0: reads.append(
        (first, last)) or [{"sequence": n} for n in range(first, min(last, 600) + 1)])
    return reads


def test_blocks_read_in_advance_are_not_read_again(monkeypatch):
    reads = fake_log(monkeypatch)
    tree = witness_log.proof_tree(None, KEPT, 600, {0}, 0, {0: block(0, 256), 2: block(2, 100)})
    assert reads == [] and sorted(tree.leaves) == list(range(256)) + list(range(512, 600))   # none past 600


def test_a_block_read_before_the_log_held_what_the_head_covers_is_read_again(monkeypatch):
    reads = fake_log(monkeypatch)
    tree = witness_log.proof_tree(None, KEPT, 600, {0}, 0, {0: block(0, 256), 2: block(2, 50)})
    assert reads == [(513, 600)] and sorted(tree.leaves)[-1] == 599


def test_without_blocks_read_in_advance_each_needed_block_is_read(monkeypatch):
    reads = fake_log(monkeypatch)
    witness_log.proof_tree(None, KEPT, 600, {1}, 0)
    assert sorted(reads) == [(257, 512), (513, 600)]
