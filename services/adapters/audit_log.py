"""Reading audit.log back: its records in sequence order, and the events they hold decoded again with
their writers' schemas. What `mlbus audit` and the registry's rebuild are made of. The records as a reader holds
them, pure, are services/domain/audited.py."""
from __future__ import annotations

import base64
import heapq
import time
from datetime import datetime, timezone
from typing import Iterable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from services.domain import (NOT_AUDITED, Audited, Broken, ChainHead, EncodedWalk, Erasure, Head, LogKey, Verified,
                             entry_time, first_sequence, head_of_checkpoint, holding, key_name, misframed,
                             parse_line, personal_state, records_of, shard_log_id, shard_of_log_id, source_topic,
                             subject_of, unseal_value, verify_walk)
from services.bus.consumed import position
from services.bus.context import Bus
from services.bus.envelope import Event
from services.bus.identity import read_identities
from services.bus.kafka import base_config, group_id
from services.bus.projections.identities import LOG_SIGNER_ROLE
from services.bus.publish import Publisher
from services.bus.errors import BadInput
from services.bus.replay import read_ahead, read_batches, read_messages, read_topics
from services.bus.schema_topic import SchemasTopicResolver

from .anchor import Anchor


def audit_records(bus: Bus, records: Iterable[str] | None = None, timeout_s: float = 300.0,
                  shard: int | None = None) -> list[dict]:
    """Every committed AuditRecord, each with its "shard" (audit.log's partition), in sequence order per shard
    and, across shards, in the order their events were made (time, then shard and sequence); with `shard`, that
    shard's alone. Each message is a page of records, or one in a v1 log. With `records`, only those whose event
    is of these types: a topic carries one record type, and a record's source topic is read from its first fields,
    so the others are skipped without decoding (replaying decisions does not read the traffic)."""
    wanted = None if records is None else {bus.catalogue.for_schema(r).name for r in records}
    found = [{**bus.schemas.decode(value, "mlbus.AuditRecord")[1], "shard": m.partition()}
             for m in read_messages(bus, ["audit.log"], timeout_s, partition=shard)
             for value in records_of(bus.schemas, m.value())
             if wanted is None or source_topic(bus.schemas, value) in wanted]
    shards: dict[int, list[dict]] = {}
    for record in found:
        shards.setdefault(record["shard"], []).append(record)
    if len(shards) < 2:
        return found
    # Merged by when their events were made, each shard's records kept in their own order (heapq.merge takes
    # the earliest head each time: a shard whose clock stepped back is not reordered).
    return list(heapq.merge(*shards.values(), key=lambda r: (r["source_timestamp"], r["shard"])))


def verify_log(bus: Bus, heads: Iterable[Head], keys: dict[str, bytes], log: str,
               timeout_s: float = 300.0, shard: int = 0) -> Verified:
    """A shard of audit.log (its partition) verified as it is read, a fetch at a time, on its raw values (compiled
    where it can be: EncodedWalk), against its heads (`log`: its log id); the next fetch is read in a thread while
    the walk hashes this one."""
    walk = EncodedWalk(lambda value: bus.schemas.decode(value, "mlbus.AuditRecord")[1],
                       bus.schemas.schema("mlbus.AuditRecord").fingerprint)

    def values(batch: list) -> list[bytes]:
        found: list[bytes] = []
        for message in batch:
            if problem := misframed(bus.schemas, message.value()):
                raise Misframed(f"{problem} (audit.log offset {message.offset()}): its framing was changed")
            found += records_of(bus.schemas, message.value())
        return found

    try:
        return verify_walk(read_ahead(values(b) for b in read_batches(bus, ["audit.log"], timeout_s, partition=shard)),
                           walk, heads, keys, log)
    except Misframed as error:
        return Verified(ChainHead(walk.sequence, walk.hash), walk.root().hex(), 0,
                        Broken(walk.sequence + 1, str(error)))


class Misframed(Exception):
    """A page whose framing does not match its records (verify reports it as where the log breaks)."""


def checkpoints(bus: Bus) -> list[dict]:
    return [r.value for r in read_topics(bus, ["audit.checkpoints"])]


def decoded(bus: Bus, records: Iterable[dict], keys: dict[str, bytes] | None = None,
            sharded: bool = False) -> Iterator[Audited]:
    """The records' events decoded. Personal data is opened with its key in the shard that sealed it (read from
    audit.keys unless `keys` is given): an erased subject's fields stay blank, with what `audit forget` recorded.
    Each event names its shard; where one of the records is of a shard other than 0 (or `sharded` says so), the
    log is sharded and events are placed `shard:sequence`."""
    if bus.schemas.resolver is None:
        bus.schemas.resolver = SchemasTopicResolver(bus)
    records = list(records)
    erased = placed_erasures(bus, records)
    sharded = sharded or any(entry.get("shard", 0) for entry in records)
    refused = False
    for entry in records:
        record, value, personal, erasure, erasure_shard = None, None, None, None, 0
        payload = entry["value"]
        sealed = entry.get("sealed")
        if sealed is not None:
            if keys is None:                        # read once, and only when personal data is to be opened
                keys = data_keys(bus)
                refused, keys = keys is None, keys or {}
            # Each shard seals with its own key of a subject (entries without a shard are a v1 log's: shard 0);
            # an erasure, by subject, deletes every shard's.
            key = keys.get(key_name(sealed["subject"], entry.get("shard", 0)))
            opened = unseal_value(sealed, key) if key else None
            erasure, erasure_shard = erased.get(sealed["subject"], (None, 0)) if opened is None else (None, 0)
            personal = personal_state(opened is not None, erasure is not None, refused)
            payload = opened if opened is not None else payload
        if payload is not None and not entry["source_topic"].endswith(".dlq"):
            try:
                record, value = bus.schemas.decode(payload)
            except BadInput:
                pass
            if record is not None and record != _carried(bus, entry["source_topic"]):
                record, value = None, None          # the topic decides the type: a misplaced record folds nowhere
        hidden = personal_fields(bus, entry["source_topic"]) if personal == "redacted" else ()
        yield Audited(entry["sequence"], entry_time(entry), entry["source_topic"], entry["actor"], record, value,
                      {**entry, "value": payload}, personal, erasure, hidden, entry.get("shard", 0), sharded,
                      erasure_shard)


def personal_fields(bus: Bus, source_topic: str) -> tuple[str, ...]:
    topic = bus.catalogue.topics.get(source_topic)
    return topic.personal if topic is not None else ()


def data_keys(bus: Bus) -> dict[str, bytes] | None:
    """Each subject's data key on audit.keys; None when the broker refuses this principal the topic (only the
    auditor and people with the dpo role may read it): personal data is then shown redacted. Any other failure
    of the broker, or a key that does not decode, is raised."""
    if keys_refused(topic_error(bus, "audit.keys")):
        return None
    keys: dict[str, bytes] = {}
    for message in read_messages(bus, ["audit.keys"], timeout_s=30):
        key = message.key()
        subject = key.decode("utf-8", "replace") if key else ""
        if message.value() is None:
            keys.pop(subject, None)
        else:
            keys[subject] = bus.schemas.decode(message.value(), "mlbus.DataKey")[1]["key"]
    return keys


def keys_refused(error: KafkaError | None) -> bool:
    """True when the broker refused the topic (TOPIC_AUTHORIZATION_FAILED: no keys, redacted); any other error
    of the broker is raised: a broker that is down must not read as "you may not see this"."""
    if error is None:
        return False
    if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return True
    raise KafkaException(error)


def topic_error(bus: Bus, name: str, timeout_s: float = 30.0) -> KafkaError | None:
    """The error the broker's metadata gives this principal for a topic (None: it may describe it). A topic it
    may not read is silent when assigned, so its metadata is asked first."""
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "replay")})
    try:
        physical = bus.catalogue.physical(name)
        return consumer.list_topics(physical, timeout=timeout_s).topics[physical].error
    finally:
        consumer.close()


def erasures(bus: Bus, records: list[dict]) -> dict[str, Erasure]:
    """The erasures the log records (signed by an admin, as the auditor verified), by the name the auditor gives
    their subject (subject_of, as it names a message key: a long entity id by its digest)."""
    return {subject: erasure for subject, (erasure, _) in placed_erasures(bus, records).items()}


def placed_erasures(bus: Bus, records: list[dict]) -> dict[str, tuple[Erasure, int]]:
    """erasures(), each with the shard its record is in (its audit_sequence counts in that shard's chain)."""
    found: dict[str, tuple[Erasure, int]] = {}
    for entry in records:
        signed = "(signed, key" in entry["actor"] and not entry["actor"].startswith("unverified")
        if entry["source_topic"] != "audit.erasures" or entry["value"] is None or not signed:
            continue                        # an erasure the auditor did not carry out
        try:
            value = bus.schemas.decode(entry["value"], "mlbus.ErasureRequested")[1]
        except BadInput:
            continue
        found[subject_of(value["subject"].encode())] = (Erasure(
            value["subject"], entry["source_timestamp"], entry["actor"], value["reason"], entry["sequence"]),
            entry.get("shard", 0))
    return found


def _carried(bus: Bus, source_topic: str) -> str | None:
    topic = bus.catalogue.topics.get(source_topic)
    return topic.schema if topic is not None else None


def log_id(bus: Bus) -> str:
    """The log's name in its signed heads: MLBUS_AUDIT_LOG_ID, else audit.log's topic (with its namespace).
    Keep it when the log moves to another cluster: heads kept earlier still name it."""
    return bus.settings.audit.log_id or bus.catalogue.physical("audit.log")


def declare_log_key(admin_bus: Bus) -> LogKey:
    """The auditor's signing key (MLBUS_AUDIT_KEY), made if missing, and its public key on the identities topic
    under the role log-signer (which signs no act), unless it is there already. Idempotent; run as admin."""
    path = admin_bus.settings.audit.key
    key = LogKey.load(path) if path.exists() else LogKey.create(path)
    if key.key_id not in read_identities(admin_bus).keys:
        publisher = Publisher(admin_bus, "cli:admin")
        publisher.publish(Event("mlbus.IdentityDeclared", {
            "key_id": key.key_id, "name": "auditor", "principal": "auditor", "roles": [LOG_SIGNER_ROLE],
            "public_key": base64.b64encode(key.public).decode(), "proof": key.proof("auditor"),
            "created_at": datetime.now(timezone.utc),
            "revoked_at": None, "declared_by": "admin"}, key=key.key_id, id=f"{key.key_id}-created", subject="auditor"))
        publisher.flush()
    return key


def anchored_heads(bus: Bus, shard: int = 0) -> list[Head]:
    """The heads kept in the anchor (MLBUS_AUDIT_ANCHOR) for a shard of this log (its log id's own file or
    folder); a line that is no head is a problem."""
    found = []
    for where, line in Anchor(bus.settings.audit.anchor).lines(shard_log_id(log_id(bus), shard)):
        try:
            signed = parse_line(line)
            found.append(Head(f"anchor {where}", signed.tree_size, signed=signed))
        except ValueError as error:
            found.append(Head(f"anchor {where}", 0,
                              problem=f"anchor {where} holds a line that is no tree head: {error}"))
    return found


def kept_heads(bus: Bus, shard: int | None = None) -> tuple[list[Head], list[Head]]:
    """Every head kept for this log: (those on audit.checkpoints, those in the anchor); with `shard`, that shard's
    alone (a checkpoint goes to the shard its log id names: checkpoint_shard)."""
    kept = checkpoints(bus)
    shards = range(shard_count(bus)) if shard is None else [shard]
    if shard is not None:
        kept = [c for c in kept if checkpoint_shard(c, log_id(bus)) == shard]
    return [head_of_checkpoint(c, "audit.checkpoints") for c in kept], [h for k in shards
                                                                         for h in anchored_heads(bus, k)]


def checkpoint_shard(checkpoint: dict, log: str) -> int | None:
    """The shard a checkpoint's head is of: the one its log id names; one without a log id is a v1 log's
    (shard 0); None: no shard's of this log (another log's id, or `<log>/shards`, every shard's heads signed).
    Readers that take one shard's checkpoints (its proofs' block hashes) leave those out."""
    return shard_of_log_id(log, checkpoint.get("log_id") or log)


def shard_count(bus: Bus, timeout_s: float = 30.0) -> int:
    """audit.log's partitions on the broker: its shards (1: a v1 log)."""
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "replay")})
    try:
        physical = bus.catalogue.physical("audit.log")
        topic = consumer.list_topics(physical, timeout=timeout_s).topics[physical]
        if topic.error is not None:
            raise KafkaException(topic.error)
        return len(topic.partitions)
    finally:
        consumer.close()


def log_signers(bus: Bus) -> dict[str, bytes]:
    """The auditor's public keys declared on the identities topic (key id → raw key)."""
    return read_identities(bus).log_signers()


def committed_chain_hash(bus: Bus, shard: int, sequence: int) -> str | None:
    """The chain hash of a shard's committed record at `sequence` (None when the log holds none there): what a head
    bound to its chain hash is checked against (audited.committed_problem). A few fetches (records_between)."""
    found = records_between(bus, sequence, sequence, shard=shard) if sequence > 0 else []
    return found[0]["hash"] if found and found[0]["sequence"] == sequence else None


def records_between(bus: Bus, first: int, last: int | None = None, timeout_s: float = 30.0,
                    shard: int = 0) -> list[dict]:
    """A shard's committed records with first ≤ sequence ≤ last (last=None: to its end when called), read by
    offset rather than from the start: the message holding `first` is found by bisecting the offsets on each
    message's first sequence (a page's, or a v1 record's own), a message per step — a few fetches on any log.
    `audit prove` reads its blocks so, the auditor the tail after its last checkpoint."""
    topic = bus.catalogue.physical("audit.log")
    consumer = Consumer({**base_config(bus.settings), "group.id": group_id(bus.settings, "tail"),
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         # Jumping between offsets near the end of the log: a fetch the broker holds for
                         # data (500 ms by default) would delay each jump by as much.
                         "fetch.wait.max.ms": 10, "enable.partition.eof": True, "fetch.error.backoff.ms": 10,
                         "fetch.queue.backoff.ms": 10,
                         # ... and each jump reads about one page (up to 2 MiB + 256 KiB), not the tens of MiB a
                         # consumer prefetches by default, which every new position throws away; without the
                         # backoffs' defaults (1 s, 500 ms: measured, most jumps waited a whole second).
                         "queued.min.messages": 1, "queued.max.messages.kbytes": 2560,
                         "max.partition.fetch.bytes": 2_621_440, "fetch.max.bytes": 2_621_440})
    try:
        low, end = consumer.get_watermark_offsets(TopicPartition(topic, shard), timeout=timeout_s)

        def read_at(offset: int) -> tuple[int, int | None] | None:
            found = _messages_from(consumer, (topic, shard), offset, 1, end, timeout_s)
            return (found[0][0], first_sequence(bus.schemas, found[0][1])) if found else None

        def from_offset(start: int) -> list[dict]:
            records = []
            for _, value in _messages_from(consumer, (topic, shard), start, None, end, timeout_s,
                                           until=lambda v: (f := first_sequence(bus.schemas, v)) is not None and
                                           last is not None and f > last):
                for raw in records_of(bus.schemas, value):
                    record = bus.schemas.decode(raw, "mlbus.AuditRecord")[1]
                    if record["sequence"] >= first and (last is None or record["sequence"] <= last):
                        records.append({**record, "shard": shard})
            return records

        start = holding(read_at, first, low, end)
        records = from_offset(start)
        if records and records[0]["sequence"] != first and start != low:
            # The framing led past `first` (a page whose first sequence lies, or one that holds nothing: verify
            # names it): the records are read from the log's start instead, so none is hidden from the caller.
            records = from_offset(low)
        return records
    finally:
        consumer.close()


def _messages_from(consumer: Consumer, where: tuple[str, int], offset: int, count: int | None, end: int,
                   timeout_s: float, until=None) -> list[tuple[int, bytes]]:
    """Up to `count` (None: every) committed messages' (offset, value) from `offset` on, before `end`, stopping
    before the first value `until` says is past what is wanted. The end is the client's partition EOF (past the
    transaction markers and aborted records a read_committed client skips), or `end`; a broker that gives
    nothing for `timeout_s` is an error, never an empty answer."""
    if offset >= end:
        return []
    consumer.assign([TopicPartition(*where, offset)])
    found: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while count is None or len(found) < count:
        # A batch returns when full or at its timeout: short waits, until EOF or the deadline.
        messages = consumer.consume(1000 if count is None else min(count - len(found), 1000), 0.05)
        for message in messages:
            if (error := message.error()) is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return found
                raise KafkaException(error)
            if until is not None and until(message.value()):
                return found
            found.append((position(message)[2], message.value() or b""))
            if found[-1][0] >= end - 1 or len(found) == count:
                return found
        if not messages and time.monotonic() > deadline:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"audit.log gave nothing from offset {offset} "
                                                                   f"for {timeout_s:.0f} s"))
    return found


def audited_topics(bus: Bus) -> list[str]:
    """The catalogue topics the auditor reads: every one but audit.log, its checkpoints, its data keys and the
    witness's co-signatures."""
    return [name for name in bus.catalogue.topics if name not in NOT_AUDITED]
