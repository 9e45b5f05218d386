"""The auditor's handler: raw messages in, sealed records (and signed checkpoints) out, the log's state kept
between batches; committed heads go to the anchor outside Kafka."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import Message
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.bus import BadInput, Bus, Event, Received
from services.bus.access import ROLES
from services.bus.service_keys import SERVICE_ROLE
from services.bus.consumed import digest, headers_of, message_size, unreadable, unreadable_messages
from services.bus.edge import MAX_RECORD_BYTES
from services.bus.runtime import Forward
from services.domain import (ChainHead, key_name, Redaction, shard_leaves, shard_log_id, TreeHead, compiled_seal,
                             new_key, seal_value, subject_of)
from services.adapters import Anchor, log_id
from services.bus.native import native
from services.bus.logs import get_logger
from services.bus.received import decode_message
from services.bus.signing import SIGNED_RECORDS, Verdict

from .adapters import CheckpointTail
from .decide import (Bind, Crossing, Log, Page, Sign, anchored, append, attest, audit_record, checkpoint,
                     combined_event, erasable, item, key_created, newest_shard_heads, page_event, paged)

END, ROOM, BYTES, SPECIAL = range(4)     # why the compiled pager stopped a run (services/native/src/pager.rs)

Verify = Callable[[Received, tuple[str, ...]], Verdict]


class Auditor:
    def __init__(self, bus: Bus, read_log: Callable[[], Log], sign: Sign, anchor: Anchor, verify: Verify,
                 read_keys: Callable[[], dict[str, bytes]] = dict, clock=lambda: int(time.time() * 1000),
                 shard: int = 0, observed: frozenset[tuple[str, int]] = frozenset(),
                 combine: Combine | None = None, bind: Bind | None = None):
        """One shard's auditor (shard 0 of one: the whole log). `observed`: partitions (physical topic, partition)
        of erasure topics another shard audits, read only to delete this shard's key of an erased subject.
        `combine`: shard 0's of a sharded log signs the checkpoint of every shard's head. `bind`: signs each head's
        chain hash (decide.checkpoint; a head without it is trusted by no reader of committed heads)."""
        self.bus = bus
        self.shard = shard
        self.observed = observed
        self.combine = combine
        self.verify = verify
        self.read_log = read_log
        self.read_keys = read_keys
        self.log_state: Log | None = None
        self.keys: dict[str, bytes] = {}        # subject → data key (audit.keys as this auditor wrote it)
        self.ciphers: dict[str, AESGCM] = {}    # subject → its key's cipher, made once (dropped with the key)
        self.sign, self.bind = sign, bind
        self.anchor = anchor
        self.checkpoint_every = bus.settings.audit.checkpoint_every
        self.head_interval_ms = bus.settings.audit.head_interval_s * 1000
        self.clock = clock
        self.seal = compiled_seal(bus.schemas.schema("mlbus.AuditRecord").prefix)
        self.page_prefix = bus.schemas.schema("mlbus.AuditPage").prefix
        self.page_records = bus.settings.audit.page_records
        self.log_name = shard_log_id(log_id(bus), shard)
        self.redactions: dict[str, Redaction] = {}             # topic → how its personal fields are blanked
        self.metrics: AuditMetrics | None = None          # set by __main__: the runtime's registry
        self.signed_size = 0                    # the size of the last head signed
        self.signed_at = clock()
        self.unanchored: list[TreeHead] = []    # signed, in the open transaction: to the anchor once committed
        self.log = get_logger(component="auditor")
        self.pager = None if native is None else native.Pager(
            bus.schemas.schema("mlbus.AuditRecord").prefix, self._routes(), MAX_RECORD_BYTES, headers_of, unreadable,
            unreadable_messages)

    def __call__(self, messages: list[Message]) -> list[Event]:
        if self.log_state is None:
            # Read only now, after the runtime's init_transactions fenced any older auditor and aborted
            # what it had open: the tail read here is final, so the chain cannot fork.
            self.log_state = self.read_log()
            self.keys = self.read_keys()
            self.signed_size = self.log_state.head.sequence
            self._reanchor(self.log_state.resumed_from)
            self.log.info("log continues", shard=self.shard, sequence=self.log_state.head.sequence,
                          subjects=len(self.keys),
                          hash=self.log_state.head.hash[:12], root=self.log_state.tree.root().hex()[:12])
        now = self.clock()
        key_events: list[Event | Forward] = []
        events, heads = [], []
        for own, run in self._runs(messages):
            if own:
                sealed, signed = self._sealed(run, now, key_events)
                events, heads = events + sealed, heads + signed
            else:                       # an erasure topic another shard audits: in its place, between runs
                for message in run:
                    self._observe(message, key_events)
        events = key_events + events
        self._signed(heads)
        events += self.tick()
        self.log.info("audited", records=len(messages), sequence=self.log_state.head.sequence)
        return events

    def _runs(self, messages: list[Message]) -> list[tuple[bool, list[Message]]]:
        """The batch in runs, in order: (True, messages this shard audits) and (False, messages of an erasure
        partition it only observes) — so an erasure takes effect exactly where it stands in the batch (a subject's
        data before it sealed under the key it deletes, data after it under a new one)."""
        if not self.observed:
            return [(True, messages)]
        runs: list[tuple[bool, list[Message]]] = []
        for message in messages:
            own = (message.topic(), message.partition()) not in self.observed
            if runs and runs[-1][0] == own:
                runs[-1][1].append(message)
            else:
                runs.append((own, [message]))
        return runs

    def _sealed(self, messages: list[Message], now: int, key_events: list) -> tuple[list[Event], list[TreeHead]]:
        """A run of this shard's messages as pages (and the heads signed on the way): by the compiled pager, else
        by append and paged, in Python."""
        if self.pager is not None:
            return self._paged(messages, now, key_events)
        crossings = [self._crossing(m, now, key_events) for m in messages]
        appended, signed = append(self.log_state, crossings, now, self.checkpoint_every, self.sign, self.seal,
                                  self.bind)
        return paged(appended, lambda r: self.bus.schemas.encode("mlbus.AuditRecord", r), self.page_prefix,
                     self.log_name, self.page_records, shard=self.shard), signed

    def _paged(self, messages: list[Message], now: int, key_events: list) -> tuple[list[Event], list[TreeHead]]:
        """What append and paged do, with runs of messages sealed by the compiled pager straight into the page
        being filled; the messages it leaves to Python (signed acts, a topic outside the catalogue, a message the
        client cannot read) are audited here one by one, in their place."""
        log, every, events, heads = self.log_state, self.checkpoint_every, [], []
        page, index = Page(), 0
        while index < len(messages):
            if page.count and (page.count >= self.page_records or page.room() <= 0):     # full (or one large record)
                events.append(page_event(page, self.page_prefix, self.log_name, self.shard))
                page = Page()
            room = self.page_records - page.count
            if every:
                room = min(room, every - log.head.sequence % every)
            index, items, count, last_hash, made, why = self.pager.seal_run(
                messages, index, room, page.room(), not page.count, now, log.head.sequence, log.head.hash, log.tree,
                log.block, log.blocks, self.keys)
            key_events += [key_created(subject, self.keys[subject], now, self.shard) for subject in made]
            if count:
                page.add(items, count, log.head.sequence + 1)
                log.head = ChainHead(log.head.sequence + count, last_hash)
            if why == SPECIAL:
                crossing = self._crossing(messages[index], now, key_events)
                record, leaf, encoded = self.seal(audit_record(crossing, log.head.sequence + 1, now), log.head.hash)
                framed = item(encoded or self.bus.schemas.encode("mlbus.AuditRecord", record))
                if page.count and (page.count == self.page_records or len(framed) > page.room()):
                    events.append(page_event(page, self.page_prefix, self.log_name, self.shard))
                    page = Page()
                log.add(record, leaf)
                page.add(framed, 1, record["sequence"])
                index += 1
            elif why == BYTES:
                events.append(page_event(page, self.page_prefix, self.log_name, self.shard))
                page = Page()
            if every and log.head.sequence % every == 0 and (count or why == SPECIAL):
                event, signed = checkpoint(log, now, self.sign, self.bind)
                events.append(event)
                heads.append(signed)
        if page.count:
            events.append(page_event(page, self.page_prefix, self.log_name, self.shard))
        return events, heads

    def _routes(self) -> dict[str, tuple[str, bool, Redaction | None]]:
        """The compiled pager's routes: each audited topic by its name on the broker → (its catalogue name, whether
        Python audits its messages — signed acts, which it attests —, its redaction when it is personal)."""
        return {self.bus.catalogue.physical(topic.name): (topic.name, topic.schema in SIGNED_RECORDS,
                                                          self._redaction(topic) if topic.personal else None)
                for topic in self.bus.catalogue.topics.values()}

    def tick(self) -> list[Event]:
        """A signed head every MLBUS_AUDIT_HEAD_INTERVAL_S while records come (and none is due by count); with
        `combine`, the checkpoint of every shard's head when one has moved, as often."""
        events = [] if self.combine is None else self._combined(self.combine)
        if self.log_state is None or self.log_state.head.sequence == self.signed_size:
            return events
        if self.clock() - self.signed_at < self.head_interval_ms:
            return events
        return events + self._checkpoint()

    def _combined(self, combine: Combine) -> list[Event]:
        now = self.clock()
        if now - combine.signed_at < self.head_interval_ms:
            return []
        combine.newest, refused = newest_shard_heads(combine.newest, combine.tail.new(), combine.log, combine.shards,
                                                     combine.keys, combine.chain_at)
        for kept, problem in refused:
            self.log.error("shard head REFUSED for the combined checkpoint", log_id=kept.get("log_id"),
                           sequence=kept.get("sequence"), reason=problem)
        leaves = shard_leaves(combine.newest, combine.shards)
        if leaves == combine.leaves or not combine.newest:
            return []
        event, head = combined_event(leaves, combine.log, now, combine.sign)
        combine.leaves, combine.signed_at = leaves, now
        self.unanchored.append(head)            # to the anchor with the transaction that carries it
        self.log.info("combined checkpoint signed", shards=combine.shards,
                      sizes=[leaf.tree_size for leaf in leaves], root=head.root_hash[:12])
        return [event]

    def on_stop(self) -> list[Event]:
        """A signed head of where the log stands, unless one was just taken."""
        if self.combine is not None:
            self.combine.tail.close()
        if self.log_state is None or self.log_state.head.sequence == self.signed_size:
            return []
        return self._checkpoint()

    def forget_uncommitted(self) -> None:
        """After an aborted transaction: what it appended never reached the log, so the chain, the tree and the
        data keys are read again from what was committed, with the next batch (the runtime reads the aborted
        batch again)."""
        self.log_state, self.keys, self.ciphers, self.unanchored = None, {}, {}, []
        if self.combine is not None:            # a combined head it carried was never committed: sign it again
            self.combine.leaves, self.combine.signed_at = (), 0

    def on_committed(self) -> None:
        """The heads of the transaction just committed, appended to the anchor (after the commit, never
        before: a head in the anchor whose records were aborted would contradict the log forever)."""
        heads, self.unanchored = self.unanchored, []
        self.anchor.append(heads)
        if self.metrics is not None and self.log_state is not None:
            self.metrics.sequence.labels(str(self.shard)).set(self.log_state.head.sequence)
            self.metrics.signed_size.labels(str(self.shard)).set(self.signed_size)

    def _reanchor(self, head: TreeHead | None) -> None:
        """The head resumed from, appended to the anchor if the anchor holds none as large: a crash between a
        commit and its anchoring left it only on the topic (verify would read the anchor as rolled back)."""
        if head is None:
            return
        sizes = [h.tree_size for h in anchored(self.anchor.lines(head.log_id))]
        if max(sizes, default=0) < head.tree_size:
            self.anchor.append([head])
            self.log.warning("the anchor lacked the head resumed from: appended", tree_size=head.tree_size,
                             anchored=max(sizes, default=0))

    def _checkpoint(self) -> list[Event]:
        event, head = checkpoint(self.log_state, self.clock(), self.sign, self.bind)
        self._signed([head])
        return [event]

    def _signed(self, heads: list[TreeHead]) -> None:
        if heads:
            self.unanchored += heads
            self.signed_size, self.signed_at = heads[-1].tree_size, heads[-1].timestamp

    def _crossing(self, message: Message, now: int, key_events: list) -> Crossing:
        """The message as audited: who signed it, and its personal data sealed under its subject's key (a new
        key goes to audit.keys in the same transaction; an admin's erasure deletes one)."""
        topic = self.bus.catalogue.topics.get(self.bus.catalogue.logical(message.topic()))
        value, sealed, attested = message.value(), None, None
        if (oversize := oversize_header(message)) is not None:
            # More than any service reads (the edge refuses it): on record by size and digest, not by its bytes
            # (sealed, they would not compress: past audit.log's cap, a crash at every start).
            return Crossing(topic.name if topic else self.bus.catalogue.logical(message.topic()), message.partition(),
                            message.offset(), message.timestamp()[1], None, [oversize], None, None, None)
        if topic is not None and topic.schema in SIGNED_RECORDS:
            attested = self._attest(message, key_events)
        if topic is not None and topic.personal and value is not None:
            subject = subject_of(message.key())
            if subject not in self.keys:
                self.keys[subject] = new_key()
                key_events.append(key_created(subject, self.keys[subject], now, self.shard))
            if subject not in self.ciphers:
                self.ciphers[subject] = AESGCM(self.keys[subject])
            sealed = seal_value(value, subject, self.ciphers[subject])
            value = self._redaction(topic)(value)
        return Crossing(topic.name if topic else self.bus.catalogue.logical(message.topic()), message.partition(),
                        message.offset(), message.timestamp()[1], message.key(), headers_of(message),
                        value, attested, sealed)

    def _redaction(self, topic) -> Redaction:
        if topic.name not in self.redactions:
            self.redactions[topic.name] = Redaction(self.bus.schemas, topic.schema, topic.personal)
        return self.redactions[topic.name]

    def _attest(self, message: Message, key_events: list) -> str | None:
        """Who signed a person's act (only the topics that carry them are decoded: the rest stays raw). An
        erasure signed by an admin also deletes its subject's key here, before the batch's later records."""
        try:
            received = decode_message(self.bus, message)
        except BadInput:
            return None                      # audited as bytes; its consumers dead-letter it
        if received.record == "mlbus.ErasureRequested":
            return attest(received.value, self._erase(received, key_events))
        return attest(received.value, self.verify(received, (*ROLES, SERVICE_ROLE)))

    def _erase(self, received: Received, key_events: list) -> Verdict:
        """An erasure signed by an admin deletes this shard's key of its subject (each shard deletes its own: the
        shard that audits the erasure and every other, which reads the erasure topics for this alone)."""
        verdict = self.verify(received, ("admin",))
        if erasable(received.value, verdict):
            # named as a message key of that entity is (an id over 256 characters: its digest), not as typed
            subject = subject_of(received.value["subject"].encode())
            self.keys.pop(subject, None)
            self.ciphers.pop(subject, None)
            key_events.append(Forward(self.bus.catalogue.physical("audit.keys"),
                                      key_name(subject, self.shard).encode(), None, []))
            self.log.info("subject erased", by=verdict.signer, erasure_id=received.value["erasure_id"],
                          shard=self.shard)
        return verdict

    def _observe(self, message: Message, key_events: list) -> None:
        """A message of an erasure topic another shard audits: only its erasure is carried out here."""
        try:
            received = decode_message(self.bus, message)
        except BadInput:
            return
        if received.record == "mlbus.ErasureRequested":
            self._erase(received, key_events)


@dataclass
class Combine:
    """What shard 0's auditor of a sharded log needs for the checkpoint of every shard's head: the committed heads
    (tail), the auditor's own keys (only heads it signed are covered), how it signs for `<log>/shards`, and the chain
    hash of a shard's committed record at a sequence (`chain_at(shard, sequence)`, None when none is there): a head
    is covered only when bound to it (decide.newest_shard_heads)."""

    tail: CheckpointTail
    log: str
    shards: int
    keys: dict[str, bytes]
    sign: Callable[[int, str, int], TreeHead]
    chain_at: Callable[[int, int], str | None]
    newest: dict[int, TreeHead] = field(default_factory=dict)
    leaves: tuple = ()
    signed_at: int = 0


class AuditMetrics:
    """The auditor's own Prometheus series: how far audit.log goes, and how far its signed heads cover it."""

    def __init__(self, registry):
        from prometheus_client import Gauge
        self.sequence = Gauge("mlbus_audit_sequence", "The last committed sequence number of each audit.log shard",
                              ["shard"], registry=registry)
        self.signed_size = Gauge("mlbus_audit_signed_size", "Tree size of each shard's latest signed tree head",
                                 ["shard"], registry=registry)

    def forget(self, shard: int) -> None:
        """A shard this copy runs no more: its figures are the copy that runs it now's to report (a stale one
        would read as a shard stuck behind)."""
        for gauge in (self.sequence, self.signed_size):
            try:
                gauge.remove(str(shard))
            except KeyError:
                pass


OVERSIZE_HEADER = "mlbus.audit.oversize"


def oversize_header(message: Message) -> tuple[str, bytes] | None:
    """For a message whose key, value and headers hold more than MAX_RECORD_BYTES (decompressed: a topic caps
    only the compressed size), the header that stands for them in its audit record: their size and SHA-256."""
    size = message_size(message)
    return None if size <= MAX_RECORD_BYTES else (OVERSIZE_HEADER, f"{size} sha256:{digest(message)}".encode())
