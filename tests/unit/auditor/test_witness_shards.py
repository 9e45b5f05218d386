"""The witness of a sharded log, pure and with fakes for the bus: each shard's heads co-signed against that shard's
last co-signed head (its own state, its own log id in the co-signature), a head of no shard of this log refused,
a single log's state read as shard 0's, and the combined head of all shard heads co-signed only when each shard
head in it is one co-signed or a prefix of one."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from services.domain import (combined_checkpoint, combined_log_id, shard_leaves, shard_log_id, shard_of_log_id,
                             sign_combined)
from services.domain.merkle import consistency_proof, leaf_hash, root
from services.domain.witness import decide_combined
from services.witness.adapters import WitnessState
from services.witness.handlers import Witness
from tests.unit.auditor.test_trust_roots import checkpoint, held, key_in_memory, keys_of

LOG = "audit.log"
SHARDS = 3


def records(shard: int, tag: str = "record") -> list[bytes]:
    return [leaf_hash(f"{tag} {shard}.{i}".encode()) for i in range(64)]


@pytest.fixture(scope="module")
def auditor():
    return key_in_memory()


def head(key, shard: int, size: int, tag: str = "record"):
    return key.sign(shard_log_id(LOG, shard), size, root(records(shard, tag)[:size]).hex(), 1)


def combined(key, heads: dict, at: int = 2, shards: int = SHARDS) -> SimpleNamespace:
    return SimpleNamespace(value=combined_checkpoint(sign_combined(key, LOG, shard_leaves(heads, shards), at), at))


class Log:
    """The records each shard holds, as the witness's evidence reads them (per shard: the head's log id)."""

    def __init__(self):
        self.leaves = {k: records(k) for k in range(SHARDS)}
        self.asked: list[tuple[int, int | None, int]] = []
        self.unreadable: set[int] = set()              # shards whose records cannot be read now

    def __call__(self, kept, last, new, whole):
        shard = shard_of_log_id(LOG, new.log_id)
        self.asked.append((shard, last.tree_size if last else None, new.tree_size))
        assert all(c["log_id"] == new.log_id for c in kept)          # a shard's proofs from its own checkpoints
        if shard in self.unreadable:
            return None, None
        if last is None:
            return None, root(self.leaves[shard][:new.tree_size]).hex()
        small, large = sorted((last.tree_size, new.tree_size))
        return consistency_proof(small, self.leaves[shard][:large]), None


@pytest.fixture
def witnessed(auditor, tmp_path):
    state = WitnessState(tmp_path / "witness")
    published, log = [], Log()
    witness = Witness(state, state.key(), LOG, lambda: keys_of(auditor), log, published.append, clock=lambda: 7,
                      shards=SHARDS, chain_at=held)
    return SimpleNamespace(witness=witness, state=state, published=published, log=log)


def test_each_shards_newest_head_is_cosigned_under_its_own_log_id(auditor, witnessed):
    batch = [checkpoint(head(auditor, k, size)) for k in range(SHARDS) for size in (5, 9 + k)]
    decisions = witnessed.witness(batch)
    assert [d.action for d in decisions] == ["wait", "cosign"] * SHARDS     # the newest of each, checked on its log
    assert [(e.key, e.value["tree_size"]) for e in witnessed.published] == [
        ("audit.log", 9), ("audit.log/shard-1", 10), ("audit.log/shard-2", 11)]
    assert [witnessed.state.last(k).tree_size for k in range(SHARDS)] == [9, 10, 11]
    assert (witnessed.state.directory / "last.json").exists()              # shard 0 where a single log's was
    assert (witnessed.state.directory / "last.shard-2.json").exists()


def test_a_shards_head_must_extend_that_shards_cosigned_head_not_anothers(auditor, witnessed):
    witnessed.witness([checkpoint(head(auditor, k, 20)) for k in range(SHARDS)])
    witnessed.witness([checkpoint(head(auditor, 1, 30))])
    assert witnessed.log.asked[-1] == (1, 20, 30)                        # proved against shard 1's own last
    witnessed.log.leaves[2] = records(2)[:10] + records(2, "mallory")[10:]
    decisions = witnessed.witness([checkpoint(head(auditor, 0, 40)), checkpoint(head(auditor, 2, 40, "mallory"))])
    assert [d.action for d in decisions] == ["cosign", "refuse"] and decisions[1].reason.startswith("SPLIT VIEW")
    assert [witnessed.state.last(k).tree_size for k in range(SHARDS)] == [40, 30, 20]
    assert witnessed.witness.refused == 1


def test_a_head_of_no_shard_of_this_log_is_refused(auditor, witnessed):
    for name in ("other.log", "audit.log/shard-01", "audit.log/shard-0", "audit.log/shards-1", "audit.log/shard-3"):
        forged = replace(head(auditor, 0, 5), log_id=name)
        forged = auditor.sign(name, 5, forged.root_hash, 1)
        decisions = witnessed.witness([checkpoint(forged)])
        assert [d.action for d in decisions] == ["refuse"] and "another log" in decisions[0].reason, name
    assert witnessed.published == [] and witnessed.witness.refused == 5


def test_a_single_logs_state_is_read_as_shard_0s(auditor, tmp_path):
    state = WitnessState(tmp_path / "witness")
    key = state.key()
    (tmp_path / "witness" / "last.json").write_text(head(auditor, 0, 30).line() + "\n")   # as before shards
    published, log = [], Log()
    witness = Witness(state, key, LOG, lambda: keys_of(auditor), log, published.append, shards=1, chain_at=held)
    assert witness.last.tree_size == 30 and witness.last_of(1) is None
    assert [d.action for d in witness([checkpoint(head(auditor, 0, 20))])] == ["skip"]   # read again
    assert [d.action for d in witness([checkpoint(head(auditor, 0, 40))])] == ["cosign"]
    assert log.asked == [(0, 30, 40)]


def test_a_batch_delivered_twice_changes_nothing_it_cosigned(auditor, witnessed):
    batch = [checkpoint(head(auditor, k, 12)) for k in range(SHARDS)]
    witnessed.witness(batch)
    again = witnessed.witness(batch)
    assert {d.action for d in again} <= {"cosign", "skip"} and witnessed.witness.refused == 0
    assert [witnessed.state.last(k).tree_size for k in range(SHARDS)] == [12, 12, 12]


# -- the combined head of all shard heads ----------------------------------------------------------------------

def test_a_combined_head_is_cosigned_once_each_shard_head_in_it_is(auditor, witnessed):
    heads = {k: head(auditor, k, 10 + k) for k in range(2)}             # shard 2 has signed no head
    decisions = witnessed.witness([checkpoint(h) for h in heads.values()] + [combined(auditor, heads)])
    assert [d.action for d in decisions] == ["cosign", "cosign", "cosign"]
    last = witnessed.published[-1]
    assert (last.key, last.value["tree_size"]) == (combined_log_id(LOG), SHARDS)
    assert witnessed.state.combined().leaves[1].tree_size == 11
    restarted = Witness(witnessed.state, witnessed.state.key(), LOG, lambda: keys_of(auditor), witnessed.log,
                        witnessed.published.append, chain_at=held)
    assert restarted.combined == witnessed.witness.combined


def test_a_combined_head_waits_for_a_shard_head_not_cosigned_yet(auditor, witnessed):
    witnessed.log.unreadable.add(1)
    heads = {0: head(auditor, 0, 10), 1: head(auditor, 1, 8)}
    decisions = witnessed.witness([checkpoint(h) for h in heads.values()] + [combined(auditor, heads)])
    assert [d.action for d in decisions] == ["cosign", "wait", "wait"] and "shard 1" in decisions[-1].reason
    witnessed.log.unreadable.clear()
    newer = {**heads, 1: head(auditor, 1, 9)}
    decisions = witnessed.witness([checkpoint(newer[1]), combined(auditor, newer)])
    assert [d.action for d in decisions] == ["cosign", "cosign"]


def test_a_combined_head_with_an_older_shard_head_is_cosigned_when_it_is_a_prefix(auditor, witnessed):
    old = {k: head(auditor, k, 10) for k in range(SHARDS)}
    witnessed.witness([checkpoint(h) for h in old.values()])
    witnessed.witness([checkpoint(head(auditor, 1, 25))])               # shard 1 moved on before it came
    assert witnessed.witness([combined(auditor, old)])[-1].action == "cosign"
    assert witnessed.log.asked[-1] == (1, 10, 25)


def test_a_combined_head_naming_a_forked_shard_head_is_refused(auditor, witnessed):
    witnessed.witness([checkpoint(head(auditor, k, 20)) for k in range(SHARDS)])
    forked = head(auditor, 2, 12, "mallory")                              # signed, on the topic, never co-signed
    witnessed.witness([checkpoint(forked)])
    heads = {0: head(auditor, 0, 20), 1: head(auditor, 1, 20), 2: forked}
    decision = witnessed.witness([combined(auditor, heads)])[-1]
    assert decision.action == "refuse" and decision.reason.startswith("SPLIT VIEW")
    assert witnessed.state.combined() is None


def test_a_forged_combined_head_is_refused(auditor, witnessed):
    heads = {k: head(auditor, k, 10) for k in range(SHARDS)}
    witnessed.witness([checkpoint(h) for h in heads.values()])
    assert witnessed.witness([combined(key_in_memory(), heads)])[-1].action == "refuse"
    unkept = {**heads, 1: head(auditor, 1, 9)}                           # a shard head that is on no checkpoint
    assert "no head of that shard" in witnessed.witness([combined(auditor, unkept)])[-1].reason
    broken = combined(auditor, heads)
    broken.value["shard_heads"] = "nonsense"
    assert witnessed.witness([broken]) == [] and witnessed.witness.refused == 3
    two = combined(auditor, {0: heads[0], 1: heads[1]}, shards=2)         # shard 2 left out: it vouches for less
    assert "audit.log has 3" in witnessed.witness([two])[-1].reason


def test_the_combined_decision(auditor):
    keys = keys_of(auditor)
    seen = [head(auditor, k, size) for k in range(2) for size in (10, 20)]
    cosigned = {0: head(auditor, 0, 20), 1: head(auditor, 1, 20)}
    newest = sign_combined(auditor, LOG, shard_leaves(cosigned, 2), 5)
    older = sign_combined(auditor, LOG, shard_leaves({0: head(auditor, 0, 10), 1: cosigned[1]}, 2), 4)

    def decide(candidate, last=None, proofs=None, known=cosigned):
        return decide_combined(candidate, LOG, keys, seen, known, last, proofs)

    assert decide(newest).action == "cosign"
    assert decide(newest, last=newest).action == "cosign"                 # a lost publication
    assert decide(older, last=newest).action == "skip"
    assert decide(older).action == "wait"                                 # no proof from 10 to 20 yet
    assert decide(older, proofs={0: consistency_proof(10, records(0)[:20])}).action == "cosign"
    forked = {0: consistency_proof(10, records(0, "mallory")[:20])}
    assert decide(older, proofs=forked).reason.startswith("SPLIT VIEW")
    assert decide(newest, known={0: cosigned[0]}).action == "wait"        # shard 1 never co-signed
    empty = sign_combined(auditor, LOG, shard_leaves({0: cosigned[0]}, 2), 6)
    assert decide(empty, known={0: cosigned[0]}).action == "cosign"       # the empty tree is a prefix of any
    other = {0: cosigned[0], 1: head(auditor, 1, 20, "mallory")}
    assert decide(newest, known=other).reason.startswith("SPLIT VIEW")    # same size, another root
