"""What audit.log answers a reader who checks it: `audit verify` (the log walked against every head kept, then the
roots of trust apart — the anchor holds the newest head, a witness co-signed it), an inclusion or consistency proof,
and the log as `audit export` writes it. The CLI prints them; the console shows them."""
from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Callable, TypeVar

from services.bus.context import Bus
from services.bus.errors import BadInput

from services.domain import (BLOCK, REDACTED, Head, ShardAt, TreeHead, Verified, anchor_problem, check_proof,
                             combined_log_id, combined_of_checkpoint, combined_problem, committed_problem,
                             consistency_proof, cosignature_due_ms, cosigned_beyond, erased, head_of_checkpoint,
                             inclusion_proof, newest_head, parse_line, pinned, shard_log_id, shard_of_log_id,
                             signature_problem, split_view, witness_problem)

from .anchor import Anchor
from .audit_log import (anchored_heads, audit_records, checkpoint_shard, checkpoints, committed_chain_hash, decoded,
                        kept_heads, log_id, log_signers, records_between, shard_count, verify_log)
from .witness_log import cosignatures, proof_tree, witness_keys

T = TypeVar("T")


def verification(bus: Bus, extra_heads: list | None = None, extra_keys: dict[str, bytes] | None = None,
                 extra_witness_keys: dict[str, bytes] | None = None) -> dict:
    """audit.log checked shard by shard (each its own chain, tree and heads: those on audit.checkpoints, in the
    anchor and given that name its log id), then each shard's anchor and witness: what `audit verify` prints and
    the console shows. Keys given are pinned."""
    log, shards = log_id(bus), shard_count(bus)
    keys = pinned(log_signers(bus), extra_keys or {})
    on_topic = [head_of_checkpoint(c, "audit.checkpoints") for c in checkpoints(bus)]
    given = list(extra_heads or [])

    def walked(shard: int) -> tuple[list[Head], list[Head], list[Head], Verified]:
        mine = [h for h in on_topic if head_shard(h, log, shards) == shard]
        anchored = anchored_heads(bus, shard)
        heads = mine + anchored + [h for h in given if head_shard(h, log, shards) == shard]
        return mine, anchored, heads, verify_log(bus, heads, keys, shard_log_id(log, shard), shard=shard)

    # The shards' walks are independent: read (and, where compiled, hashed) at once, a thread each.
    with ThreadPoolExecutor(max_workers=min(shards, WALKERS)) as pool:
        walks = list(pool.map(walked, range(shards)))
    # Co-signatures are read after the walks: the witness had the walks' time to co-sign a fresh head.
    witness = None if all(w[3].broken for w in walks) else (
        pinned(witness_keys(bus), extra_witness_keys or {}), cosignatures(bus))
    reports = [shard_report(shard, shard_log_id(log, shard), *walk, keys,
                            partial(roots_problem, bus, shard, witness=witness)) for shard, walk in enumerate(walks)]
    verdict = whole_log(reports, log, bus.settings.audit.anchor, "pinned" if extra_keys else "declared")
    if shards > 1:
        # Only heads the shard's walk matched against its records: a head on audit.checkpoints the log does not hold (an
        # aborted transaction's, republished) is its shard's problem, and vouches for no combined head.
        shard_heads = [h.signed for walk in walks for h in walk[2] if h.signed is not None
                       and (walk[3].broken is None or h.tree_size < walk[3].broken.sequence)]
        anchored = [line for _, line in Anchor(bus.settings.audit.anchor).lines(combined_log_id(log))]
        verdict["combined"] = combined_report(checkpoints(bus), anchored, log, keys, shard_heads, shards)
        if verdict["intact"] and verdict["combined"]["problem"]:
            verdict.update(intact=False, reason=verdict["combined"]["problem"], caught_by="audit.checkpoints")
    return verdict


def combined_report(kept: list[dict], anchored: list[str], log: str, keys: dict[str, bytes],
                    shard_heads: list[TreeHead], shards: int) -> dict:
    """The signed checkpoints of every shard's head (`<log>/shards`), on audit.checkpoints and in the anchor: each
    must be signed by a log key, list every shard once in order, hash to the root it signs and name, per shard, a
    head that shard signed (services/domain/shard_heads.py); and each the anchor holds must be one on the topic
    (a combined head rewritten on the topic is caught against the anchor). The first problem, if any."""
    name = combined_log_id(log)
    problem, found = None, []
    for checkpoint in (c for c in kept if c.get("log_id") == name):
        try:
            combined = combined_of_checkpoint(checkpoint)
        except (KeyError, TypeError, ValueError) as error:
            problem = problem or f"a combined checkpoint on audit.checkpoints is malformed ({error})"
            continue
        found.append(combined.signed)
        problem = problem or combined_problem(combined, log, keys, shard_heads, shards)
    on_topic = {(h.tree_size, h.root_hash) for h in found}
    for line in anchored:
        try:
            head = parse_line(line)
        except ValueError as error:
            problem = problem or f"the anchor of {name} holds a line that is no tree head: {error}"
            continue
        if (head.tree_size, head.root_hash) not in on_topic:
            problem = problem or (f"the anchor holds a combined head (root {head.root_hash[:16]}…) that "
                                  f"audit.checkpoints does not: the combined checkpoints were rewritten")
    newest = max(found, key=lambda h: h.timestamp, default=None)
    return {"log_id": name, "checkpoints": len(found), "anchored": len(anchored),
            "newest_root": newest.root_hash if newest else None, "problem": problem}


WALKERS = 4         # shards walked at once: each a reader and a walk, on a machine of a few cores


def head_shard(head: Head, log: str, shards: int) -> int | None:
    """The shard a head is of: the one its signed log id names. A head without a signed one (a checkpoint from
    before the Merkle log, an unreadable one) and one naming no shard of this log are shard 0's: its walk reports
    them (as a v1 log's verify did). None: a head of another name under the log's (`<log>/shards`, the signed
    checkpoint of every shard's head), which is no shard's."""
    if head.signed is None:
        return 0
    named = shard_of_log_id(log, head.signed.log_id)
    if named is None and head.signed.log_id.startswith(f"{log}/") and \
            not head.signed.log_id.startswith(f"{log}/shard-"):
        return None
    return named if named is not None and named < shards else 0


def shard_report(shard: int, name: str, on_topic: list[Head], anchored: list[Head], heads: list[Head],
                 result: Verified, keys: dict[str, bytes], trust) -> dict:
    """One shard's verdict: its walk, a split view among its heads when it broke, else its roots of trust
    (`trust(on_topic, anchored, heads, keys, name)`: a problem and where, or None)."""
    broken = result.broken
    reason, where = (broken.reason, broken.head) if broken else (None, None)
    if broken is not None and (split := split_view(heads, keys)):
        reason = f"{reason}; {split[0]}"
    untrusted = None if broken else trust(on_topic, anchored, heads, keys, name)
    if untrusted:
        reason, where = untrusted
    return {"shard": shard, "log_id": name, "intact": broken is None and untrusted is None,
            "records": result.head.sequence if broken is None else None, "verified_up_to": result.head.sequence,
            "head": result.head.hash, "root": result.root, "checkpoints": len(on_topic),
            "anchored_heads": len(anchored), "heads_checked": result.heads,
            "first_bad_sequence": broken.sequence if broken else None, "reason": reason, "caught_by": where}


def whole_log(shards: list[dict], log: str, anchor: str, keys: str) -> dict:
    """The log's verdict from its shards' (in shard order): intact when every shard is; the figures summed; the
    first broken shard (else the first untrusted one) named. A v1 log's is its one shard's, as it always was;
    a sharded log has no one head or root (each shard's are under "shards")."""
    failed = next((s for s in shards if s["first_bad_sequence"] is not None), None) or \
        next((s for s in shards if not s["intact"]), None)
    one = shards[0] if len(shards) == 1 else None
    total = sum(s["verified_up_to"] for s in shards)
    return {"intact": failed is None, "records": total if all(s["records"] is not None for s in shards) else None,
            "verified_up_to": total, "head_hash": one["head"] if one else None,
            "root_hash": one["root"] if one else None, "log_id": log,
            "checkpoints": sum(s["checkpoints"] for s in shards),
            "anchored_heads": sum(s["anchored_heads"] for s in shards),
            "heads_checked": sum(s["heads_checked"] for s in shards), "anchor": anchor,
            "first_bad_sequence": failed["first_bad_sequence"] if failed else None,
            "first_bad_shard": failed["shard"] if failed else None,
            "reason": failed["reason"] if failed else None, "caught_by": failed["caught_by"] if failed else None,
            "keys": keys, "warning": None, "shards": shards}


def roots_problem(bus: Bus, shard: int, on_topic: list, anchored: list, heads: list, keys: dict[str, bytes],
                  name: str, witness: tuple[dict[str, bytes], list] | None) -> tuple[str, str] | None:
    """Once a shard matches every head of it: the anchor must hold its newest, and a witness must have co-signed
    it (`witness`: the trusted witness keys and the co-signatures, read once after the walks). A head signed just
    now is given until it is MLBUS_AUDIT_WITNESS_WAIT_S old for both: the auditor appends it to the anchor right
    after its commit, and a witness co-signs it within seconds; a verify landing in between is no finding."""
    wait_ms = int(bus.settings.audit.witness_wait_s * 1000)
    anchor = bus.settings.audit.anchor
    anchored = _settled(
        lambda read: _young_for_ms(newest_head(on_topic), wait_ms) if anchor_problem(on_topic, read, anchor) else 0,
        lambda: anchored_heads(bus, shard), anchored)
    if anchoring := anchor_problem(on_topic, anchored, anchor):
        return anchoring
    trusted, found = witness if witness is not None else ({}, [])
    newest = newest_head(heads)
    found = _settled(lambda read: cosignature_due_ms(newest, read, trusted, keys, wait_ms, int(time.time() * 1000)),
                     lambda: cosignatures(bus), found)
    problem = witness_problem(newest, found, trusted, keys)
    if problem is None:
        # Heads are read again: the auditor may have signed (and the witness co-signed) one during the walk.
        problem = cosigned_beyond(newest_head(heads + sum(kept_heads(bus, shard), [])), found, trusted, name)
    return (problem, "audit.witness") if problem else None


def _settled(due_ms: Callable[[T], int], reread: Callable[[], T], read: T) -> T:
    """What was read, read again every 0.5 s (sooner when less is due) for as long as due_ms of it gives it time:
    the reading to judge."""
    while (due := due_ms(read)) > 0:
        time.sleep(min(0.5, due / 1000))
        read = reread()
    return read


def _young_for_ms(head: TreeHead | None, patience_ms: int) -> int:
    return 0 if head is None else head.young_for_ms(patience_ms, int(time.time() * 1000))


def with_cosignatures(bus: Bus, document: dict, head: TreeHead, found: list | None = None) -> dict:
    """A proof document with the witnesses' co-signatures of the head it proves against (`found`: those on
    audit.witness, when already read)."""
    return {**document, "cosignatures": [c.as_json() for c in (cosignatures(bus) if found is None else found)
                                         if c.covers(head)]}


def proof(bus: Bus, target: str | None, consistency: int | None = None, shard: int = 0) -> tuple[dict, str]:
    """An inclusion proof of one record (REQUEST_ID, or its place SHARD:SEQUENCE, a bare SEQUENCE being shard 0's)
    or a consistency proof of a shard from its signed head of size `consistency`, against the shard's latest validly
    signed head (a shard's heads name its log id), checked before it is returned."""
    at = None if target is None or consistency is not None else _place_of(bus, target)
    shard = at.shard if at is not None else shard
    # What a proof reads does not depend on each other but for the last incomplete block (it needs the head): read
    # at once, a client each. One after the other, each read's connection and its wait at the topic's end made up
    # most of `audit prove`'s 1.3 s (scripts/bench audit, 3 shards).
    # The blocks an inclusion proof reads: the record's, and — guessed from the anchor's newest head of the shard (a
    # file), which is most often the head it is proved against — the incomplete last one. A wrong guess is read again
    # (proof_tree takes a block read in advance only when it holds every record the head covers there).
    anchored = anchored_heads(bus, shard)
    guess = max((h.tree_size for h in anchored if h.signed is not None), default=0)
    blocks = set() if at is None else {(at.sequence - 1) // BLOCK} | (
        {guess // BLOCK} if guess >= at.sequence and guess % BLOCK else set())
    with ThreadPoolExecutor(max_workers=3 + len(blocks)) as pool:
        reading = pool.submit(checkpoints, bus)
        signers = pool.submit(log_signers, bus)
        witnessed = pool.submit(cosignatures, bus)
        read = {b: pool.submit(records_between, bus, b * BLOCK + 1, (b + 1) * BLOCK, shard=shard) for b in blocks}
        kept = _shard_checkpoints(reading.result(), log_id(bus), shard)
        keys, found = signers.result(), witnessed.result()
        preread = {b: future.result() for b, future in read.items()}
    heads = _heads_by_size(bus, kept, shard, anchored)
    if not heads:
        raise BadInput("no signed tree head covers the log yet (the auditor signs one every "
                       "MLBUS_AUDIT_CHECKPOINT_EVERY records and every MLBUS_AUDIT_HEAD_INTERVAL_S seconds)"
                       + (f" in shard {shard}" if shard else ""))
    cosigned = {(c.tree_size, c.root_hash) for c in found}
    heads.sort(key=lambda h: ((h.tree_size, h.root_hash) in cosigned, h.tree_size))   # co-signed last: tried first
    committed = partial(_committed, bus, shard, keys, kept, anchored, preread)
    if consistency is not None:
        first = _first_valid([h for h in heads if h.tree_size == consistency], keys)
        if first is None:
            raise BadInput(f"no validly signed head of size {consistency}; signed sizes: "
                           + ", ".join(str(h.tree_size) for h in heads[-10:]))
        latest = _first_valid(reversed(heads), keys, committed)
        if latest is None:
            raise BadInput("no signed head of the log's is known to be committed (in the anchor, or bound to the "
                           "chain hash its record holds): run `mlbus audit verify`")
        tree = proof_tree(bus, kept, latest.tree_size, {(first.tree_size - 1) // BLOCK}, shard)
        document = with_cosignatures(bus, consistency_proof(first, latest, tree), latest, found)
    elif at is None:
        raise BadInput("give the record to prove (REQUEST_ID or [SHARD:]SEQUENCE) or the size to prove consistency "
                       "from")
    else:
        sequence = at.sequence
        covering = _first_valid(reversed([h for h in heads if h.tree_size >= sequence]), keys, committed)
        if covering is None:
            raise BadInput(f"no signed head known to be the log's covers record #{target} (the last signed: size "
                           f"{max(h.tree_size for h in heads)}): try again once the auditor signs the next one")
        holding = (sequence - 1) // BLOCK
        tree = proof_tree(bus, kept, covering.tree_size, {holding}, shard, preread)
        [record] = [r for r in preread.get(holding, []) if r["sequence"] == sequence] or records_between(
            bus, sequence, sequence, shard=shard)
        document = with_cosignatures(bus, inclusion_proof(record, tree, covering), covering, found)
    holds, what = check_proof(document, keys)
    if not holds:
        raise BadInput(f"the log does not reproduce its signed head ({what}): run `mlbus audit verify`")
    return document, what


def _shard_checkpoints(kept: list[dict], log: str, shard: int) -> list[dict]:
    """The checkpoints of one shard (their block hashes and heads make its proofs)."""
    return [c for c in kept if checkpoint_shard(c, log) == shard]


def _heads_by_size(bus: Bus, kept: list[dict], shard: int, anchored: list[Head] | None = None) -> list:
    """A shard's signed heads, on the topic and in the anchor (`anchored`, when already read), by size (the
    anchor's first at a size)."""
    name = shard_log_id(log_id(bus), shard)
    found = [head_of_checkpoint(c, "audit.checkpoints") for c in kept] + (
        anchored_heads(bus, shard) if anchored is None else anchored)
    return sorted((h.signed for h in found if h.signed is not None and h.signed.log_id == name),
                  key=lambda h: h.tree_size)


def _first_valid(heads, keys: dict[str, bytes], committed=None):
    """The first of these heads whose signature holds (signatures are checked only as far as needed) and, with
    `committed`, the first of them known to be its shard's committed log's — else the first that carries no chain
    signature (a log signed before heads were bound) — else none."""
    unbound = None
    for head in heads:
        if signature_problem(head, keys) is not None:
            continue
        known = True if committed is None else committed(head)
        if known:
            return head
        if known is None and unbound is None:
            unbound = head
    return unbound


def _committed(bus: Bus, shard: int, keys: dict[str, bytes], kept: list[dict], anchored: list[Head],
               preread: dict[int, list[dict]], head: TreeHead) -> bool | None:
    """Whether a head is known to be the shard's committed log's: in the anchor (which holds only heads whose
    transaction committed) or on audit.checkpoints bound to the chain hash the log's record at its size holds
    (committed_problem; the record looked up among the blocks already read, else read). None: only unbound
    checkpoints carry it (signed before heads were bound). A head of an aborted transaction, republished, is neither:
    proved against, it would make a proof of a history the log never held (the record's own block may be in it)."""
    if any(h.signed is not None and (h.signed.tree_size, h.signed.root_hash) == (head.tree_size, head.root_hash)
           for h in anchored):
        return True
    carrying = [c for c in kept if (c.get("sequence"), c.get("root_hash")) == (head.tree_size, head.root_hash)]
    known = {r["sequence"]: r["hash"] for records in preread.values() for r in records}

    def chain_at(sequence: int) -> str | None:
        return known[sequence] if sequence in known else committed_chain_hash(bus, shard, sequence)
    if any(committed_problem(c, keys, chain_at) is None for c in carrying):
        return True
    return None if carrying and not any(c.get("chain_signature") for c in carrying) else False


def _place_of(bus: Bus, target: str) -> ShardAt:
    """A record's place as given (SHARD:SEQUENCE, or a bare SEQUENCE: shard 0's), or the place of a request's
    served prediction (only the predictions' records are decoded)."""
    if target.replace(":", "").isdigit():
        try:
            at = ShardAt.parse(target)
        except ValueError as error:
            raise BadInput(str(error)) from None
        if at.sequence < 1:
            raise BadInput("audit sequence numbers start at 1")
        return at
    for event in decoded(bus, audit_records(bus, ["mlbus.Prediction"])):
        if event.record == "mlbus.Prediction" and (value := event.value) and value["request_id"] == target \
                and value["served"]:
            return ShardAt(event.shard, event.sequence)
    raise BadInput(f"audit.log holds no served prediction for request {target}")


def exported(bus: Bus, since: datetime | None = None, until: datetime | None = None):
    """audit.log as `audit export` writes it, one dict per record (personal data as the reader may see it)."""
    for event in decoded(bus, audit_records(bus)):
        if (since and event.at < since) or (until and event.at > until):
            continue
        entry = event.entry
        yield {"sequence": event.sequence, **({"shard": event.shard} if event.sharded else {}),
                "audited_at": entry["audited_at"], "at": event.at,
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
