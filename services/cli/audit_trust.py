"""`audit verify` and `audit check-proof`'s trust: the log walked against every head kept, then the roots of trust
checked apart — the anchor holds the newest head, and a witness co-signed it — with the keys pinned on the command
line when given (only they are trusted), else those declared on the identities topic."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.bus.context import Bus
from services.bus.errors import BadInput
from services.bus.settings import PROJECT_ROOT
from services.domain import (Cosignature, TreeHead, anchor_problem, cosigned_beyond, cosignatures, key_id,
                             kept_heads, log_id, log_signers, newest_head, pinned, read_public_key, split_view,
                             verify_log, witness_keys, witness_problem)


def verification(bus: Bus, extra_heads: list | None = None, extra_keys: dict[str, bytes] | None = None,
                 extra_witness_keys: dict[str, bytes] | None = None) -> dict:
    """audit.log checked against every head on audit.checkpoints, in the anchor and given, then the anchor and
    the witness: what `audit verify` prints and the console shows. Keys given are pinned."""
    on_topic, anchored = kept_heads(bus)
    keys = pinned(log_signers(bus), extra_keys or {})
    heads = on_topic + anchored + list(extra_heads or [])
    result = verify_log(bus, heads, keys, log_id(bus))
    broken = result.broken
    reason, where = (broken.reason, broken.head) if broken else (None, None)
    if broken is not None and (split := split_view(heads, keys)):
        reason = f"{reason}; {split[0]}"
    trust = None if broken else roots_problem(bus, on_topic, anchored, heads, keys, extra_witness_keys or {})
    if trust:
        reason, where = trust
    return {"intact": broken is None and trust is None, "records": result.head.sequence if broken is None else None,
            "verified_up_to": result.head.sequence, "head_hash": result.head.hash, "root_hash": result.root,
            "log_id": log_id(bus), "checkpoints": len(on_topic), "anchored_heads": len(anchored),
            "heads_checked": result.heads, "anchor": bus.settings.audit_anchor,
            "first_bad_sequence": broken.sequence if broken else None, "reason": reason, "caught_by": where,
            "keys": "pinned" if extra_keys else "declared", "warning": None}


def roots_problem(bus: Bus, on_topic: list, anchored: list, heads: list, keys: dict[str, bytes],
                  given_witness_keys: dict[str, bytes]) -> tuple[str, str] | None:
    """Once the log matches every head: the anchor must hold the newest, and a witness must have co-signed it
    (its co-signatures are read after the walk: the witness had the walk's time to co-sign a fresh head)."""
    if problem := anchor_problem(on_topic, anchored, bus.settings.audit_anchor):
        return problem
    trusted = pinned(witness_keys(bus), given_witness_keys)
    found = cosignatures(bus)
    problem = witness_problem(newest_head(heads), found, trusted, keys)
    if problem is None:
        # Heads are read again: the auditor may have signed (and the witness co-signed) one during the walk.
        problem = cosigned_beyond(newest_head(heads + sum(kept_heads(bus), [])), found, trusted, log_id(bus))
    return (problem, "audit.witness") if problem else None


def proof_witness_problem(document: dict, keys: dict[str, bytes], witness_keys: dict[str, bytes]) -> str | None:
    """Why a proof document's head is not co-signed by a pinned witness key (the head it proves against: an
    inclusion proof's, a consistency proof's second)."""
    try:
        head = TreeHead.from_json(document.get("tree_head") or document["second"])
        found = [Cosignature.from_json(c) for c in document.get("cosignatures") or []]
    except (KeyError, TypeError, ValueError) as error:
        return f"the proof's co-signatures are malformed: {error!r}"
    return witness_problem(head, found, witness_keys, keys)


def key_files(paths: list[Path], option: str = "--key") -> dict[str, bytes]:
    """Public keys given on the command line (PEM or raw base64), by key id."""
    keys = {}
    for path in paths:
        try:
            public = read_public_key(path.read_bytes())
        except (OSError, ValueError) as error:
            raise BadInput(f"{option} {path}: {error}") from None
        keys[key_id(public)] = public
    return keys


def with_cosignatures(bus: Bus, document: dict, head: TreeHead) -> dict:
    """A proof document with the witnesses' co-signatures of the head it proves against."""
    return {**document, "cosignatures": [c.as_json() for c in cosignatures(bus) if c.covers(head)]}


def run_witness() -> int:
    """`mlbus audit witness`: the witness in the foreground, as its own principal (python -m services.witness)."""
    return subprocess.run([sys.executable, "-m", "services.witness"], cwd=PROJECT_ROOT).returncode
