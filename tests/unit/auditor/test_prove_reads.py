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


def test_prove_takes_no_head_of_an_aborted_transaction(monkeypatch):
    """A head of an aborted transaction republished on audit.checkpoints is not proved against (the record's own block
    may well be in the fork): prove takes the newest head in the anchor or bound to the chain hash the log's record
    at its size holds — on a log signed before heads were bound, the newest unbound one."""
    from functools import partial
    from services.adapters import log_checks
    from services.domain import Head
    from tests.unit.auditor.test_shards_red_team import KEY, KEYS, LOG, bound
    from services.domain import shard_log_id
    good, legacy, fork = (KEY.sign(shard_log_id(LOG, 1), size, f"{size:064x}", 1) for size in (10, 12, 15))
    kept = [bound(good, "11" * 32), {**bound(legacy, "44" * 32), "chain_signature": None}, bound(fork, "22" * 32)]
    holds = {10: "11" * 32, 12: "44" * 32, 15: "33" * 32}                # the fork's record 15 is not the log's
    looked: list[int] = []
    monkeypatch.setattr(log_checks, "committed_chain_hash", lambda bus, shard, n: looked.append(n) or holds.get(n))
    committed = partial(log_checks._committed, None, 1, KEYS, kept, [], {})
    assert log_checks._first_valid([fork, legacy, good], KEYS, committed) == good
    assert log_checks._first_valid([fork, legacy], KEYS, committed) == legacy
    assert log_checks._first_valid([fork], KEYS, committed) is None
    looked.clear()
    in_anchor = partial(log_checks._committed, None, 1, KEYS, kept, [Head("anchor", 10, signed=good)], {})
    assert log_checks._first_valid([good], KEYS, in_anchor) == good and looked == []


def test_the_checkpoint_kept_to_verify_against_later_is_the_newest_of_the_log(monkeypatch):
    """`audit checkpoint` prints the newest checkpoint to keep (verify --from-checkpoint): not a head of an aborted
    transaction republished, nor an unsigned one; on a log signed before heads were bound, the newest signed."""
    from services.adapters import witness_log as readers
    from tests.unit.auditor.test_shards_red_team import KEY, KEYS, LOG, bound
    from services.domain import shard_log_id
    good, legacy, fork = (KEY.sign(shard_log_id(LOG, 1), size, f"{size:064x}", 1) for size in (10, 12, 15))
    unsigned = {**bound(KEY.sign(shard_log_id(LOG, 1), 20, "ab" * 32, 1)), "signature": "A" * 86 + "=="}
    holds = {10: "11" * 32, 12: "44" * 32, 15: "33" * 32, 20: "00" * 64}
    monkeypatch.setattr(readers, "log_signers", lambda bus: KEYS)
    monkeypatch.setattr(readers, "committed_chain_hash", lambda bus, shard, n: holds.get(n))
    unbound = {**bound(legacy, "44" * 32), "chain_signature": None}
    kept = [bound(good, "11" * 32), unbound, bound(fork, "22" * 32), unsigned]
    assert readers.newest_committed(None, kept, 1) == kept[0]
    assert readers.newest_committed(None, kept[1:], 1) == unbound
    assert readers.newest_committed(None, kept[2:], 1) is None
