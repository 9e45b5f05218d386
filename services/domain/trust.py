"""What `audit verify` asks of the log's roots of trust beyond the records themselves (pure): the anchor must hold
the newest signed head (not be missing, emptied or rolled back to an older copy), heads kept in different places
must agree, and a witness must have co-signed the newest head (witness.py).

Each problem is a (reason, where) pair: what is wrong, and which store it is about.
"""
from __future__ import annotations

from typing import Iterable

from .audit import Head
from .tree_head import TreeHead, signature_problem

Problem = tuple[str, str]


def newest(heads: Iterable[Head]) -> TreeHead | None:
    """The signed head of the largest tree among these (the first kept, at equal sizes)."""
    signed = [h.signed for h in heads if h.signed is not None]
    return max(signed, key=lambda h: h.tree_size, default=None)


def anchor_problem(on_topic: list[Head], anchored: list[Head], anchor: str) -> Problem | None:
    """Why the anchor does not vouch for the log (None when it does): it holds no head while audit.checkpoints
    holds signed ones (deleted, emptied, or pointed elsewhere), or its newest head is older than the topic's
    newest (lines removed from its end, or replaced by an older copy that is still consistent)."""
    on_topic_newest, anchored_newest = newest(on_topic), newest(anchored)
    if on_topic_newest is None:
        return None
    if anchored_newest is None:
        return (f"the anchor holds no head of this log, while audit.checkpoints holds signed heads up to size "
                f"{on_topic_newest.tree_size}: the anchor was deleted, emptied or moved (MLBUS_AUDIT_ANCHOR), and "
                f"without it a rewrite of the topics with recomputed heads cannot be told apart", f"anchor {anchor}")
    if anchored_newest.tree_size < on_topic_newest.tree_size:
        return (f"the anchor's newest head is of size {anchored_newest.tree_size}, but audit.checkpoints holds a "
                f"signed head of size {on_topic_newest.tree_size}: the anchor was rolled back (heads removed from "
                f"its end, or an older copy put in its place), or the auditor cannot write it", f"anchor {anchor}")
    return None


def split_view(heads: Iterable[Head], keys: dict[str, bytes]) -> Problem | None:
    """Two validly signed heads of the same size and log with different roots: the log was forked or rewritten
    (heads whose signature does not hold are reported as such by the walk, not here)."""
    seen: dict[tuple[str, int], Head] = {}
    for head in heads:
        signed = head.signed
        if signed is None or signature_problem(signed, keys) is not None:
            continue
        first = seen.setdefault((signed.log_id, signed.tree_size), head)
        if first.signed is not None and first.signed.root_hash != signed.root_hash:
            return (f"two signed heads of size {signed.tree_size} disagree: {first.source} says root "
                    f"{first.signed.root_hash[:16]}…, {head.source} says {signed.root_hash[:16]}… (a split view: the "
                    f"log was forked or rewritten)", head.source)
    return None


def pinned(declared: dict[str, bytes], given: dict[str, bytes]) -> dict[str, bytes]:
    """The keys to trust: those given on the command line alone when there are any (pinned: a key declared on
    the identities topic, which the broker's admin writes, is then not trusted), else the declared ones."""
    return dict(given) if given else dict(declared)
