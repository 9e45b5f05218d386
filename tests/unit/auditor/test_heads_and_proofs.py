"""Signed tree heads, the anchor and proofs, pure: the frontier grows the RFC 9162 root at every size; the
anchor keeps heads in a directory or behind an fsspec URL; a proof checks with the public key alone — by the
project's checker and by an independent one written from the RFC — and fails once anything in it changes."""
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor.decide import Crossing, Log, append
from services.domain.audit import ChainHead
from services.domain import merkle
from services.domain import parse_line
from services.adapters import Anchor, AnchorError
from services.domain.audit import leaf
from services.domain.proofs import check, consistency, inclusion
from services.domain.tree_head import LogKey, read_public_key
from tests.support import rfc9162

KEY = LogKey(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))
KEYS = {KEY.key_id: KEY.public}


def test_the_frontier_gives_the_rfc_root_at_every_size_in_log2_hashes():
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(70)]
    tree = merkle.Frontier()
    assert tree.root() == merkle.root([])
    for size, hashed in enumerate(leaves, 1):
        tree.append(hashed)
        assert tree.root() == merkle.root(leaves[:size]) and len(tree.hashes) == bin(size).count("1")
    resumed = merkle.Frontier(tree.size, tree.hashes)
    resumed.append(leaves[0])
    assert resumed.root() == merkle.root(leaves + leaves[:1])
    with pytest.raises(merkle.ProofError):
        merkle.Frontier(3, tree.hashes[:1])


def test_a_head_signs_the_documented_bytes_and_round_trips_through_an_anchor_line():
    head = KEY.sign("t.audit.log", 5, "ab" * 32, 1_800_000_000_000)
    assert head.signed_bytes() == (b'{"log_id":"t.audit.log","root_hash":"' + b"ab" * 32 +
                                   b'","timestamp":1800000000000,"tree_size":5,"version":"mlbus-tree-head/1"}')
    assert parse_line(head.line()) == head
    assert read_public_key(KEY.public_pem()) == KEY.public
    assert rfc9162.head_signature_holds(json.loads(head.line()), KEY.public_pem())
    with pytest.raises(ValueError):
        parse_line('{"tree_size": 5}')


@pytest.mark.parametrize("where", ["dir", "url"])
def test_the_anchor_appends_heads_and_reads_them_back(tmp_path, where):
    anchor = Anchor(tmp_path / "anchor" if where == "dir" else f"file://{tmp_path}/bucket")
    heads = [KEY.sign("t.audit.log", n, "cd" * 32, n) for n in (2, 4)]
    anchor.append(heads[:1])
    anchor.append(heads[1:] + [KEY.sign("other.audit.log", 9, "ef" * 32, 9)])
    assert [parse_line(line) for _, line in anchor.lines("t.audit.log")] == heads
    assert anchor.lines("nothing.audit.log") == []
    if where == "dir":          # one append-only file per log, one head per line
        assert (tmp_path / "anchor" / "t.audit.log.jsonl").read_text().count("\n") == 2
        blocked = tmp_path / "file"
        blocked.write_text("")
        with pytest.raises(AnchorError):
            Anchor(blocked).append(heads)


def crossing(i: int) -> Crossing:
    return Crossing("outcomes", 0, i, 1_700_000_000_000 + i, b"k", [("ce_source", b"shop")], bytes([i % 256]) * 3)


def log_of(n: int, every: int):
    events, heads = append(Log(), [crossing(i) for i in range(n)], 1, every,
                           lambda size, root, at: KEY.sign("t.audit.log", size, root, at))
    return [e.value for e in events if e.record == "mlbus.AuditRecord"], heads


def test_an_inclusion_proof_checks_offline_and_fails_when_anything_changes():
    records, heads = log_of(37, 12)
    leaves = [leaf(r) for r in records]
    for sequence in (1, 12, 13, 36):
        proof = inclusion(records[sequence - 1], leaves, heads[-1])
        assert check(proof, KEYS)[0] and rfc9162.inclusion_holds(proof, KEY.public_pem())
    proof = inclusion(records[4], leaves, heads[0])
    changed = {**proof, "leaf_data": proof["leaf_data"].replace('"actor":"unverified:shop"', '"actor":"eve"')}
    moved = {**proof, "leaf_index": 5}
    path = {**proof, "audit_path": proof["audit_path"][:-1]}
    unsigned = {**proof, "tree_head": {**proof["tree_head"], "root_hash": "00" * 32}}
    for bad in (changed, moved, path, unsigned):
        assert not check(bad, KEYS)[0] and not rfc9162.inclusion_holds(bad, KEY.public_pem())
    assert "unknown key" in check(proof, {})[1]
    assert check({"format": "x"}, KEYS) == (False, "not an mlbus proof (format 'x')")


def test_a_consistency_proof_shows_a_later_head_extends_an_earlier_one():
    records, heads = log_of(50, 7)
    leaves = [leaf(r) for r in records]
    for first in heads:
        proof = consistency(first, heads[-1], leaves)
        assert check(proof, KEYS)[0] and rfc9162.consistency_holds(proof, KEY.public_pem())
    forked = consistency(heads[2], heads[-1], leaves)            # a validly signed head of another history
    forked["first"] = json.loads(KEY.sign("t.audit.log", heads[2].tree_size, "11" * 32, 5).line())
    assert not check(forked, KEYS)[0] and not rfc9162.consistency_holds(forked, KEY.public_pem())
    shortened = {**consistency(heads[0], heads[-1], leaves)}
    shortened["proof"] = shortened["proof"][1:]
    assert not check(shortened, KEYS)[0] and not rfc9162.consistency_holds(shortened, KEY.public_pem())


def test_checkpoints_carry_each_complete_blocks_root_and_a_resumed_log_continues_the_same():
    crossings = [crossing(i) for i in range(1300)]
    sign = lambda size, root, at: KEY.sign("t.audit.log", size, root, at)  # noqa: E731
    whole = Log()
    events, _ = append(whole, crossings, 1, 300, sign)
    records = [e.value for e in events if e.record == "mlbus.AuditRecord"]
    leaves = [leaf(r) for r in records]
    blocks = {}
    for c in (e.value for e in events if e.record == "mlbus.AuditCheckpoint"):
        blocks.update({c["blocks_from"] + n: bytes.fromhex(h) for n, h in enumerate(c["blocks"])})
    assert sorted(blocks) == [0, 1, 2, 3] and all(blocks[b] == merkle.root(leaves[b * 256:(b + 1) * 256]) for b in blocks)
    at_900 = next(e.value for e in events if e.record == "mlbus.AuditCheckpoint" and e.value["sequence"] == 900)
    resumed = Log.resumed(ChainHead(900, at_900["hash"]), merkle.Frontier(900, [bytes.fromhex(h) for h in at_900["frontier"]]))
    for record, hashed in zip(records[900:], leaves[900:]):
        resumed.add(record, hashed)
    assert resumed.tree.root() == whole.tree.root() and resumed.block.root() == whole.block.root()
    assert resumed.blocks_from == 3 and resumed.blocks == [blocks[3]] + whole.blocks


@pytest.mark.parametrize("size", [1, 255, 256, 257, 700, 1024, 1300])
def test_proofs_from_block_hashes_and_two_blocks_of_leaves_equal_proofs_from_every_leaf(size):
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    blocks = [merkle.root(leaves[b:b + 256]) for b in range(0, size - size % 256, 256)]
    for index in sorted({0, size // 2, size - 1}):
        needed = {i: leaves[i] for b in {index // 256, size // 256} for i in range(b * 256, min((b + 1) * 256, size))}
        tiled = merkle.Tiled(blocks, needed)
        assert merkle.inclusion_path(index, size, tiled) == merkle.inclusion_proof(index, leaves)
        first = index + 1
        previous = {i: leaves[i] for i in range((first - 1) // 256 * 256, min(((first - 1) // 256 + 1) * 256, size))}
        assert merkle.consistency_path(first, size, merkle.Tiled(blocks, {**needed, **previous})) == \
            merkle.consistency_proof(first, leaves)
    if size > 1:                            # a leaf the proof needs and nobody read: said, not guessed
        with pytest.raises(merkle.ProofError):
            merkle.inclusion_path(size - 1, size, merkle.Tiled([], {}))
