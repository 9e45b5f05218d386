"""The witness's handler: each batch of checkpoints judged (decide), the newest head co-signed when it extends the
last one co-signed, and a forged or inconsistent head refused loudly — never co-signed, never built upon."""
from __future__ import annotations

import time
from typing import Callable

from services.bus import Event, Received, derive_id
from services.bus.logs import get_logger
from services.domain import Cosignature, LogKey, TreeHead, cosign, head_of_checkpoint
from services.domain import WitnessDecision as Decision
from services.domain import decide_witness as decide

from .adapters import WitnessState

Evidence = Callable[[list[dict], "TreeHead | None", TreeHead, bool], "tuple[list[bytes] | None, str | None]"]


class Witness:
    def __init__(self, state: WitnessState, key: LogKey, log_id: str, log_keys: Callable[[], dict[str, bytes]],
                 evidence: Evidence, publish: Callable[[Event], None], clock=lambda: int(time.time() * 1000)):
        self.state, self.key, self.log_id = state, key, log_id
        self.read_log_keys, self.evidence, self.publish, self.clock = log_keys, evidence, publish, clock
        self.log_keys = log_keys()
        self.last = state.last()
        self.kept: list[dict] = []          # every checkpoint so far: their block hashes make the proofs
        self.refused = 0
        self.log = get_logger(component="witness")

    def __call__(self, received: list[Received]) -> list[Decision]:
        """Judge a batch: every head's signature, and the newest head against the last one co-signed."""
        checkpoints = [r.value for r in received]
        self.kept += checkpoints
        heads = []
        for checkpoint in checkpoints:
            head = head_of_checkpoint(checkpoint, "audit.checkpoints")
            if head.signed is None:
                self._refuse(Decision("refuse", head.problem or f"a checkpoint at {head.tree_size} carries no "
                                                                f"signed head"))
            else:
                heads.append(head.signed)
        if not heads:
            return []
        if any(h.key_id not in self.log_keys for h in heads):
            self.log_keys = self.read_log_keys()        # a key declared since the witness started
        newest = max(heads, key=lambda h: h.tree_size)
        decisions = [decide(self.last, h, self.log_keys, self.log_id) for h in heads if h is not newest]
        for decision in (d for d in decisions if d.action == "refuse"):
            self._refuse(decision)
        return decisions + [self._judge(newest)]

    def _judge(self, head: TreeHead) -> Decision:
        if self.last is not None and head.tree_size < self.last.tree_size:
            return decide(self.last, head, self.log_keys, self.log_id)     # catching up after a restart
        proof, root = self.evidence(self.kept, self.last, head, False)
        decision = decide(self.last, head, self.log_keys, self.log_id, proof, root)
        if decision.action == "refuse" and proof is not None:
            # The block hashes the proof was made from are not signed: before crying split view, the proof is
            # made again from the records themselves.
            proof, root = self.evidence(self.kept, self.last, head, True)
            decision = decide(self.last, head, self.log_keys, self.log_id, proof, root)
        if decision.action == "cosign":
            cosignature = cosign(self.key, self.state.name, head, self.clock())
            self.publish(cosignature_event(cosignature))
            self.state.cosigned(head, cosignature)
            self.last = head
            self.log.info("head co-signed", tree_size=head.tree_size, root=head.root_hash[:16], why=decision.reason)
        elif decision.action == "refuse":
            self._refuse(decision)
        else:
            self.log.info("head not co-signed yet", tree_size=head.tree_size, why=decision.reason)
        return decision

    def _refuse(self, decision: Decision) -> None:
        self.refused += 1
        self.log.critical("head REFUSED: not co-signed", reason=decision.reason,
                          last_cosigned=self.last.tree_size if self.last else None)


def cosignature_event(cosignature: Cosignature) -> Event:
    return Event("mlbus.WitnessCosignature", cosignature.as_json(), key=cosignature.log_id,
                 id=derive_id("cosignature", cosignature.key_id, cosignature.tree_size, cosignature.root_hash,
                              cosignature.cosigned_at))
