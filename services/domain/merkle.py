"""Merkle tree hashing, inclusion and consistency proofs as RFC 9162 (Certificate Transparency 2.0) defines
them, over SHA-256: a leaf is SHA-256(0x00 || bytes), a node SHA-256(0x01 || left || right), and a tree of n
leaves splits at the largest power of two smaller than n. Pure functions on lists of leaf hashes.

The auditor's tree (docs/audit.md): a tree head (size, root) signed by the auditor commits to every record
before it; an inclusion proof shows one record is in it with log2(n) hashes; a consistency proof shows a later
head extends an earlier one, so history cannot be rewritten behind a head someone kept. The auditor and
`audit verify` grow the tree one leaf at a time with a Frontier, never holding the leaves.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from .compiled import native

LEAF, NODE = b"\x00", b"\x01"


class ProofError(ValueError):
    """A proof that cannot be checked as given (an index past the tree, a proof of the wrong length)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n ≥ 2): where a tree of n leaves divides."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH: the tree hash of the leaf hashes (the empty tree hashes the empty string)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


class Frontier:
    """A growing tree kept as the roots of its perfect subtrees, largest (leftmost) first — one per set bit of
    its size, log2(n) hashes: enough to append a leaf and to compute the root at every size on the way."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()):
        if len(hashes) != bin(size).count("1"):
            raise ProofError(f"a frontier of {size} leaves has {bin(size).count('1')} hashes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        self.hashes.append(leaf)
        carried = self.size
        while carried & 1:                      # equal-sized neighbours merge, as a binary counter carries
            right = self.hashes.pop()
            self.hashes[-1] = node_hash(self.hashes[-1], right)
            carried >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return hashlib.sha256(b"").digest()
        hashed = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            hashed = node_hash(left, hashed)
        return hashed


def growing_frontier(size: int = 0, hashes: Sequence[bytes] = ()) -> Frontier:
    """A Frontier the auditor grows: services/native's where it is built (the same size, hashes, append and root;
    the compiled pager appends to it in place), else this one."""
    if native is None:
        return Frontier(size, hashes)
    return native.Frontier(size, list(hashes))


class Leaves:
    """A tree given by all its leaf hashes: MTH of any range."""

    def __init__(self, leaves: Sequence[bytes]):
        self.leaves = leaves

    def mth(self, lo: int, hi: int) -> bytes:
        return root(self.leaves[lo:hi])


class Tiled:
    """A tree given by the hashes of its complete BLOCK-leaf blocks (what the auditor's checkpoints carry) and
    the leaf hashes of the few blocks a proof descends into: MTH of a range without the other leaves.
    A block-aligned range of whole blocks is the tree of their block hashes (RFC 9162 splits a multiple of
    BLOCK at a multiple of BLOCK), any other range the proof needs lies inside a block whose leaves are given."""

    def __init__(self, blocks: Sequence[bytes], leaves: dict[int, bytes]):
        self.blocks = blocks
        self.leaves = leaves

    def mth(self, lo: int, hi: int) -> bytes:
        if lo % BLOCK == 0 and (hi - lo) % BLOCK == 0 and hi // BLOCK <= len(self.blocks):
            return root(self.blocks[lo // BLOCK:hi // BLOCK])
        if hi - lo == 1:
            if lo not in self.leaves:
                raise ProofError(f"leaf {lo} is needed but was not read")
            return self.leaves[lo]
        k = split(hi - lo)
        return node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))


BLOCK = 256          # leaves per block: the auditor records each complete block's hash in its checkpoints


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, leaves): the sibling hashes from the leaf up to the root."""
    return inclusion_path(index, len(leaves), Leaves(leaves))


def inclusion_path(index: int, size: int, tree: Leaves | Tiled, lo: int = 0) -> list[bytes]:
    """PATH(index, D[lo:lo+size]) over any tree that hashes ranges."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    if size == 1:
        return []
    k = split(size)
    if index < k:
        return inclusion_path(index, k, tree, lo) + [tree.mth(lo + k, lo + size)]
    return inclusion_path(index - k, size - k, tree, lo + k) + [tree.mth(lo, lo + k)]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, leaves): what shows the tree of the first `first` leaves is a prefix of this one."""
    return consistency_path(first, len(leaves), Leaves(leaves))


def consistency_path(first: int, size: int, tree: Leaves | Tiled) -> list[bytes]:
    if not 0 < first <= size:
        raise ProofError(f"no consistency proof from size {first} to {size}")
    return _subproof(first, 0, size, tree, True)


def _subproof(m: int, lo: int, hi: int, tree: Leaves | Tiled, whole: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if whole else [tree.mth(lo, hi)]
    k = split(n)
    if m <= k:
        return _subproof(m, lo, lo + k, tree, whole) + [tree.mth(lo + k, hi)]
    return _subproof(m - k, lo + k, hi, tree, False) + [tree.mth(lo, lo + k)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """Whether `proof` shows the leaf hash at `index` in the tree of `size` whose root is `expected_root`."""
    if not 0 <= index < size:
        return False
    fn, sn, hashed = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            hashed = node_hash(sibling, hashed)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            hashed = node_hash(hashed, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hashed == expected_root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows the tree of `second` leaves (second_root) extends the one of `first` (first_root)."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:                # a power of two: the first tree is a node of the second
        path = [first_root] + path
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for hashed in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(hashed, fr), node_hash(hashed, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, hashed)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root
