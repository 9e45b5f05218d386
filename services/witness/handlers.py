"""The witness's handler: each batch of checkpoints judged (decide), each shard's newest head co-signed when it
extends the last head of that shard co-signed, the newest combined head of all shard heads co-signed when each of
its shard heads is a prefix of one co-signed, and a forged or inconsistent head refused loudly — never co-signed,
never built upon. A v1 log is its shard 0."""
from __future__ import annotations

import time
from typing import Callable

from services.bus import Event, Received, derive_id
from services.bus.logs import get_logger
from services.domain import (CombinedHead, committed_problem, Cosignature, LogKey, TreeHead, combined_log_id,
                             combined_of_checkpoint, cosign, decide_combined, head_of_checkpoint, shard_log_id,
                             shard_of_log_id)
from services.domain import WitnessDecision as Decision
from services.domain import decide_witness as decide

from .adapters import WitnessState

Evidence = Callable[[list[dict], "TreeHead | None", TreeHead, bool], "tuple[list[bytes] | None, str | None]"]


class Witness:
    def __init__(self, state: WitnessState, key: LogKey, log_id: str, log_keys: Callable[[], dict[str, bytes]],
                 evidence: Evidence, publish: Callable[[Event], None], clock=lambda: int(time.time() * 1000),
                 shards: int | None = None, *, chain_at: Callable[[int, int], str | None]):
        """`shards`: audit.log's partitions (fixed when it is made): a head of a shard past them is no shard of this
        log, and a combined head must cover them all (None: not bounded). `chain_at(shard, sequence)`: the chain hash
        of the shard's committed record there (None: none), which a head must be bound to before it is co-signed."""
        self.state, self.key, self.log_id, self.shards, self.chain_at = state, key, log_id, shards, chain_at
        self.read_log_keys, self.evidence, self.publish, self.clock = log_keys, evidence, publish, clock
        self.log_keys = log_keys()
        self.lasts: dict[int, TreeHead | None] = {}     # each shard's last co-signed head, read at its first head
        self.combined = state.combined()
        self.kept: dict[int, list[dict]] = {}           # each shard's checkpoints: their block hashes make its proofs
        self.signed: dict[tuple[str, int, str], TreeHead] = {}   # every shard head seen, for the combined heads
        self.refused = 0
        self.log = get_logger(component="witness")

    @property
    def last(self) -> TreeHead | None:
        """Shard 0's last co-signed head (a v1 log's only one)."""
        return self.last_of(0)

    def last_of(self, shard: int) -> TreeHead | None:
        if shard not in self.lasts:
            self.lasts[shard] = self.state.last(shard)
        return self.lasts[shard]

    def __call__(self, received: list[Received]) -> list[Decision]:
        """Judge a batch: every head's signature, each shard's newest head against the last one of that shard
        co-signed, then the newest combined head."""
        by_shard, foreign, combined = self._sort([r.value for r in received])
        key_ids = [h.key_id for heads in by_shard.values() for h in heads] + [c.get("key_id") for c in combined]
        if any(k not in self.log_keys for k in key_ids):
            self.log_keys = self.read_log_keys()        # a key declared since the witness started
        decisions = [self._refuse(decide(None, h, self.log_keys, self.log_id)) for h in foreign]
        for shard in sorted(by_shard):
            decisions += self._shard(shard, by_shard[shard])
        return decisions + (self._combined(combined) if combined else [])

    def _sort(self, checkpoints: list[dict]) -> tuple[dict[int, list[TreeHead]], list[TreeHead], list[dict]]:
        """(each shard's signed heads, the heads of no shard of this log, the combined heads' checkpoints); each
        shard's checkpoints kept for its proofs, every signed head for the combined heads, an unsigned one refused."""
        by_shard: dict[int, list[TreeHead]] = {}
        foreign: list[TreeHead] = []
        combined: list[dict] = []
        for checkpoint in checkpoints:
            name = checkpoint.get("log_id") or self.log_id      # a checkpoint from before signed heads: a v1 log's
            if name == combined_log_id(self.log_id):
                combined.append(checkpoint)
                continue
            shard = self._shard_of(name)
            if shard is not None:
                self.kept.setdefault(shard, []).append(checkpoint)
            head = head_of_checkpoint(checkpoint, "audit.checkpoints")
            if head.signed is None:
                self._refuse(Decision("refuse", head.problem or f"a checkpoint at {head.tree_size} carries no "
                                                                f"signed head"))
            else:
                (foreign if shard is None else by_shard.setdefault(shard, [])).append(head.signed)
                self.signed[(head.signed.log_id, head.signed.tree_size, head.signed.root_hash)] = head.signed
        return by_shard, foreign, combined

    def _shard_of(self, log_id: str) -> int | None:
        shard = shard_of_log_id(self.log_id, log_id)
        return shard if shard is None or self.shards is None or shard < self.shards else None

    def _shard(self, shard: int, heads: list[TreeHead]) -> list[Decision]:
        newest = max(heads, key=lambda h: h.tree_size)
        name = shard_log_id(self.log_id, shard)
        decisions = [decide(self.last_of(shard), h, self.log_keys, name) for h in heads if h is not newest]
        for decision in (d for d in decisions if d.action == "refuse"):
            self._refuse(decision, shard)
        return decisions + [self._judge(shard, newest)]

    def _judge(self, shard: int, head: TreeHead) -> Decision:
        last, name, kept = self.last_of(shard), shard_log_id(self.log_id, shard), self.kept.get(shard, [])
        if last is not None and head.tree_size < last.tree_size:
            return decide(last, head, self.log_keys, name)     # catching up after a restart
        proof, root = self.evidence(kept, last, head, False)
        decision = decide(last, head, self.log_keys, name, proof, root)
        if decision.action == "refuse" and proof is not None:
            # The block hashes the proof was made from are not signed: before crying split view, the proof is
            # made again from the records themselves.
            proof, root = self.evidence(kept, last, head, True)
            decision = decide(last, head, self.log_keys, name, proof, root)
        if decision.action == "cosign" and (problem := self._uncommitted(shard, head, kept)):
            decision = Decision("refuse", problem)
        if decision.action == "cosign":
            cosignature = cosign(self.key, self.state.name, head, self.clock())
            self.publish(cosignature_event(cosignature))
            self.state.cosigned(head, cosignature, shard)
            self.lasts[shard] = head
            self.log.info("head co-signed", shard=shard, tree_size=head.tree_size, root=head.root_hash[:16],
                          why=decision.reason)
        elif decision.action == "refuse":
            self._refuse(decision, shard)
        else:
            self.log.info("head not co-signed yet", shard=shard, tree_size=head.tree_size, why=decision.reason)
        return decision

    def _uncommitted(self, shard: int, head: TreeHead, kept: list[dict]) -> str | None:
        """Why the head is not its shard's committed log's (None when a checkpoint carrying it is bound to the chain
        hash the log's committed record at its size holds: committed_problem). Consistency with the last head
        co-signed is not enough: a head signed in a transaction that aborted extends the committed prefix it forked
        from, and once co-signed every committed head after it would read as a split view."""
        carrying = [c for c in kept if c.get("sequence") == head.tree_size and c.get("root_hash") == head.root_hash]
        problems = [committed_problem(c, self.log_keys, lambda sequence: self.chain_at(shard, sequence))
                    for c in carrying]
        return None if None in problems else (problems[-1] if problems else "no checkpoint carries the head")

    def _combined(self, checkpoints: list[dict]) -> list[Decision]:
        """The newest combined head judged (the others only for a forgery): its shard heads must be ones
        co-signed, or prefixes of them."""
        found: list[CombinedHead] = []
        for checkpoint in checkpoints:
            try:
                found.append(combined_of_checkpoint(checkpoint))
            except ValueError as error:
                self._refuse(Decision("refuse", f"a checkpoint of {combined_log_id(self.log_id)} is no combined "
                                                f"head: {error}"))
        older = [self._decide_combined(c, whole=None) for c in found[:-1]]
        for decision in (d for d in older if d.action == "refuse"):
            self._refuse(decision)
        return older + ([self._judge_combined(found[-1])] if found else [])

    def _judge_combined(self, combined: CombinedHead) -> Decision:
        decision = self._decide_combined(combined, whole=False)
        if decision.action == "refuse" and decision.reason.startswith("SPLIT VIEW"):
            decision = self._decide_combined(combined, whole=True)     # proofs made again from the records
        if decision.action == "cosign":
            cosignature = cosign(self.key, self.state.name, combined.signed, self.clock())
            self.publish(cosignature_event(cosignature))
            self.state.combined_cosigned(combined, cosignature)
            self.combined = combined
            self.log.info("combined head co-signed", shards=combined.signed.tree_size,
                          root=combined.signed.root_hash[:16], why=decision.reason)
        elif decision.action == "refuse":
            self._refuse(decision)
        else:
            self.log.info("combined head not co-signed yet", shards=combined.signed.tree_size, why=decision.reason)
        return decision

    def _decide_combined(self, combined: CombinedHead, whole: bool | None) -> Decision:
        """decide_combined with each shard's last co-signed head and, unless whole is None, the consistency proofs
        from an older shard head in it to that one."""
        cosigned = {leaf.shard: last for leaf in combined.leaves if (last := self.last_of(leaf.shard)) is not None}
        proofs = {} if whole is None else self._leaf_proofs(combined, cosigned, whole)
        return decide_combined(combined, self.log_id, self.log_keys, self.signed.values(), cosigned, self.combined,
                               proofs, self.shards)

    def _leaf_proofs(self, combined: CombinedHead, cosigned: dict[int, TreeHead],
                     whole: bool) -> dict[int, list[bytes]]:
        proofs = {}
        for leaf in combined.leaves:
            last = cosigned.get(leaf.shard)
            head = self.signed.get((shard_log_id(self.log_id, leaf.shard), leaf.tree_size, leaf.root_hash))
            if head is not None and last is not None and 0 < leaf.tree_size < last.tree_size:
                proof, _ = self.evidence(self.kept.get(leaf.shard, []), head, last, whole)
                if proof is not None:
                    proofs[leaf.shard] = proof
        return proofs

    def _refuse(self, decision: Decision, shard: int | None = None) -> Decision:
        self.refused += 1
        last = self.last_of(shard) if shard is not None else None
        self.log.critical("head REFUSED: not co-signed", reason=decision.reason, shard=shard,
                          last_cosigned=last.tree_size if last else None)
        return decision


def cosignature_event(cosignature: Cosignature) -> Event:
    return Event("mlbus.WitnessCosignature", cosignature.as_json(), key=cosignature.log_id,
                 id=derive_id("cosignature", cosignature.key_id, cosignature.tree_size, cosignature.root_hash,
                              cosignature.cosigned_at))
