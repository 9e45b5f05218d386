"""What audit.log answers a reader who checks it: `audit verify` (the log walked against every head kept, then the
roots of trust apart — the anchor holds the newest head, a witness co-signed it), an inclusion or consistency proof,
and the log as `audit export` writes it. The CLI prints them; the console shows them."""
from __future__ import annotations

import base64
from datetime import datetime

from services.bus.context import Bus
from services.bus.errors import BadInput

from services.domain import (BLOCK, REDACTED, TreeHead, anchor_problem, check_proof, consistency_proof,
                             cosigned_beyond, erased, head_of_checkpoint, inclusion_proof, newest_head, pinned,
                             signature_problem, split_view, witness_problem)

from .audit_log import (anchored_heads, audit_records, checkpoints, decoded, kept_heads, log_id, log_signers,
                        records_between, verify_log)
from .witness_log import cosignatures, proof_tree, witness_keys


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
            "heads_checked": result.heads, "anchor": bus.settings.audit.anchor,
            "first_bad_sequence": broken.sequence if broken else None, "reason": reason, "caught_by": where,
            "keys": "pinned" if extra_keys else "declared", "warning": None}


def roots_problem(bus: Bus, on_topic: list, anchored: list, heads: list, keys: dict[str, bytes],
                  given_witness_keys: dict[str, bytes]) -> tuple[str, str] | None:
    """Once the log matches every head: the anchor must hold the newest, and a witness must have co-signed it
    (its co-signatures are read after the walk: the witness had the walk's time to co-sign a fresh head)."""
    if anchoring := anchor_problem(on_topic, anchored, bus.settings.audit.anchor):
        return anchoring
    trusted = pinned(witness_keys(bus), given_witness_keys)
    found = cosignatures(bus)
    problem = witness_problem(newest_head(heads), found, trusted, keys)
    if problem is None:
        # Heads are read again: the auditor may have signed (and the witness co-signed) one during the walk.
        problem = cosigned_beyond(newest_head(heads + sum(kept_heads(bus), [])), found, trusted, log_id(bus))
    return (problem, "audit.witness") if problem else None


def with_cosignatures(bus: Bus, document: dict, head: TreeHead) -> dict:
    """A proof document with the witnesses' co-signatures of the head it proves against."""
    return {**document, "cosignatures": [c.as_json() for c in cosignatures(bus) if c.covers(head)]}


def proof(bus: Bus, target: str | None, consistency: int | None = None) -> tuple[dict, str]:
    """An inclusion proof of one record (REQUEST_ID or SEQUENCE) or a consistency proof from the signed head of
    size `consistency`, against the latest validly signed head, checked before it is returned."""
    kept = checkpoints(bus)
    keys = log_signers(bus)
    heads = _heads_by_size(bus, kept)
    if not heads:
        raise BadInput("no signed tree head covers the log yet (the auditor signs one every "
                       "MLBUS_AUDIT_CHECKPOINT_EVERY records and every MLBUS_AUDIT_HEAD_INTERVAL_S seconds)")
    cosigned = {(c.tree_size, c.root_hash) for c in cosignatures(bus)}
    heads.sort(key=lambda h: ((h.tree_size, h.root_hash) in cosigned, h.tree_size))   # co-signed last: tried first
    latest = _first_valid(reversed(heads), keys)
    if consistency is not None:
        first = _first_valid([h for h in heads if h.tree_size == consistency], keys)
        if first is None:
            raise BadInput(f"no validly signed head of size {consistency}; signed sizes: "
                           + ", ".join(str(h.tree_size) for h in heads[-10:]))
        tree = proof_tree(bus, kept, latest.tree_size, {(first.tree_size - 1) // BLOCK})
        document = with_cosignatures(bus, consistency_proof(first, latest, tree), latest)
    elif target is None:
        raise BadInput("give the record to prove (REQUEST_ID or SEQUENCE) or the size to prove consistency from")
    else:
        sequence = _sequence_of(bus, target)
        covering = _first_valid(reversed([h for h in heads if h.tree_size >= sequence]), keys)
        if covering is None:
            raise BadInput(f"record #{sequence} is after the last signed head "
                           f"({max(h.tree_size for h in heads)}): try again "
                           f"once the auditor signs the next one")
        tree = proof_tree(bus, kept, covering.tree_size, {(sequence - 1) // BLOCK})
        [record] = records_between(bus, sequence, sequence)
        document = with_cosignatures(bus, inclusion_proof(record, tree, covering), covering)
    holds, what = check_proof(document, keys)
    if not holds:
        raise BadInput(f"the log does not reproduce its signed head ({what}): run `mlbus audit verify`")
    return document, what


def _heads_by_size(bus: Bus, kept: list[dict]) -> list:
    """This log's signed heads, on the topic and in the anchor, by size (the anchor's first at a size)."""
    found = [head_of_checkpoint(c, "audit.checkpoints") for c in kept] + anchored_heads(bus)
    return sorted((h.signed for h in found if h.signed is not None and h.signed.log_id == log_id(bus)),
                  key=lambda h: h.tree_size)


def _first_valid(heads, keys: dict[str, bytes]):
    """The first of these heads whose signature holds (signatures are checked only as far as needed)."""
    return next((h for h in heads if signature_problem(h, keys) is None), None)


def _sequence_of(bus: Bus, target: str) -> int:
    """A sequence number as given, or the audit sequence of a request's served prediction (only the
    predictions' records are decoded)."""
    if target.isdigit():
        if int(target) < 1:
            raise BadInput("audit sequence numbers start at 1")
        return int(target)
    for event in decoded(bus, audit_records(bus, ["mlbus.Prediction"])):
        if event.record == "mlbus.Prediction" and (value := event.value) and value["request_id"] == target \
                and value["served"]:
            return event.sequence
    raise BadInput(f"audit.log holds no served prediction for request {target}")


def exported(bus: Bus, since: datetime | None = None, until: datetime | None = None):
    """audit.log as `audit export` writes it, one dict per record (personal data as the reader may see it)."""
    for event in decoded(bus, audit_records(bus)):
        if (since and event.at < since) or (until and event.at > until):
            continue
        entry = event.entry
        yield {"sequence": event.sequence, "audited_at": entry["audited_at"], "at": event.at,
                "topic": event.topic, "partition": entry["source_partition"],
                "offset": entry["source_offset"], "actor": event.actor, "record": event.record,
                "key": base64.b64encode(entry["key"]).decode() if entry["key"] else None,
                "headers": {h["key"]: h["value"].decode("utf-8", "replace") if h["value"] else None
                            for h in entry["headers"]},
                "value": event.shown() if event.record else REDACTED if event.personal == "redacted" else (
                    base64.b64encode(entry["value"]).decode() if entry["value"] else None),
                "personal_data": event.personal,
                "erased": erased(event.erasure) if event.erasure else None,
                "prev_hash": entry["prev_hash"], "hash": entry["hash"]}
