"""The console wired to the bus: the readers of audit.log the CLI uses too (services/domain), the services' state
(services/bus/supervision), then uvicorn."""
from __future__ import annotations

import heapq
import multiprocessing
import os
from typing import Callable

import uvicorn

from services.bus.context import Bus
from services.bus.schema_topic import SchemasTopicResolver
from services.bus.settings import Settings
from services.bus.supervision import service_rows
from services.domain import (AuditIndex, audit_timeline, before_after, by_variant, committed_problem, explain_request,
                             explain_scoring, shard_of_log_id)
from services.adapters import (audit_export, audit_proof, audit_records, committed_chain_hash, decoded, log_id,
                               records_between, verification)

from .app import Console
from .tls import console_certificate, is_loopback

TIMELINE_LINES = 300         # the audit screen's timeline: the newest decisions of audit.log
DECISIONS = ("mlbus.DataBatch", "mlbus.DataValidated", "mlbus.ModelSpecDefined", "mlbus.TrainingRequested",
             "mlbus.ModelTrained", "mlbus.PromotionPolicyDefined", "mlbus.ApprovalSubmitted", "mlbus.ModelLifecycle",
             "mlbus.DeploymentRequested", "mlbus.DeploymentChanged", "mlbus.Alert", "mlbus.ErasureRequested",
             "mlbus.BatchScored")


class AuditReader:
    """What the audit screen asks of audit.log: one request explained, and the decision timeline — read once in
    the background (traffic skipped undecoded), then only each shard's records after what was read of it."""

    def __init__(self, bus: Bus, console: Console):
        self.bus, self.console = bus, console
        self.shards: dict[int, list] = {}       # shard → its decoded decision records (Audited), in sequence order
        self.read_up_to: dict[int, int] = {}    # shard → the audit sequence read up to
        self.lines: list = []                   # the timeline, newest first
        self.held: set[tuple] = set()           # (log id, size, root) of heads found their shard's committed log's

    @property
    def read_to(self) -> int:
        """Shard 0's (a v1 log's) sequence read up to: what the console's health reports."""
        return self.read_up_to.get(0, 0)

    def __call__(self, request_id: str) -> dict | None:
        """A served prediction explained, or a batch scoring (`mlbus score`), from the whole log."""
        index = AuditIndex(list(decoded(self.bus, audit_records(self.bus))))
        return explain_request(index, request_id) or explain_scoring(index, request_id)

    def refresh(self) -> None:
        log = log_id(self.bus)
        with self.console.view.lock:
            heads, keys = dict(self.console.view.heads), self.console.view.identities.log_signers()
        signed = committed_sizes(heads, keys, log, self.held,
                                 lambda shard, sequence: committed_chain_hash(self.bus, shard, sequence))
        behind = unread(signed, self.read_up_to, log)
        if not behind:
            return
        topics = {self.bus.catalogue.for_schema(r).name for r in DECISIONS}
        if not self.read_up_to:
            records = audit_records(self.bus, DECISIONS)
        else:
            records = [r for shard in sorted(behind) for r in records_between(
                self.bus, self.read_up_to.get(shard, 0) + 1, shard=shard) if r["source_topic"] in topics]
        sharded = any(shard > 0 for shard in list(behind) + list(self.read_up_to))
        for event in decoded(self.bus, records, sharded=sharded):
            self.shards.setdefault(event.shard, []).append(event)
        for record in records:
            self.read_up_to[record["shard"]] = max(self.read_up_to.get(record["shard"], 0), record["sequence"])
        for shard, size in behind.items():
            self.read_up_to[shard] = max(self.read_up_to.get(shard, 0), size)
        # Each shard's decisions in their order, the shards merged by when the events were made (as audit_records).
        merged = heapq.merge(*self.shards.values(), key=lambda e: (e.entry["source_timestamp"], e.shard))
        self.lines = list(reversed(audit_timeline(list(merged), None)))[:TIMELINE_LINES]

    def timeline(self) -> list:
        return self.lines


def committed_sizes(heads: dict[str, dict], keys: dict[str, bytes], log: str, held: set[tuple],
                    chain_at: Callable[[int, int], str | None]) -> dict[str, int]:
    """Each shard's latest head (log id → checkpoint) as its size, when it is the shard's committed log's (bound to the
    chain hash its record at that size holds: committed_problem; `held` remembers those found so). The timeline reads a
    shard up to its head and then past it only: a head of an aborted transaction republished, larger than the log,
    would hide the records the log then gets up to that size."""
    sizes = {}
    for name, head in heads.items():
        shard = shard_of_log_id(log, name or log)
        if shard is None:
            continue
        known = (name, head.get("sequence"), head.get("root_hash"))
        if known not in held and committed_problem(head, keys, lambda sequence: chain_at(shard, sequence)) is None:
            held.add(known)
        if known in held:
            sizes[name] = head["sequence"]
    return sizes


def unread(signed: dict[str, int], read_up_to: dict[int, int], log: str) -> dict[int, int]:
    """The shards whose latest signed head (log id → size) is past what was read of them: shard → that size.
    A head of another log's id is not this log's shards'."""
    sizes = {shard_of_log_id(log, name or log): size for name, size in signed.items()}
    return {shard: size for shard, size in sizes.items() if shard is not None and size > read_up_to.get(shard, 0)}


def compare(observed: list[dict], history: list[dict]) -> dict:
    return {"before_after": [c.as_dict() for c in before_after(observed, history)],
            "by_variant": [c.as_dict() for c in by_variant(observed, history)]}


def verified_in_a_child(settings: Settings) -> dict:
    """`audit verify` in a process of its own, at a lower priority: a whole pass over a large log is minutes of
    CPU, which in the console's process would hold the interpreter from the pages it serves."""
    os.nice(10)
    bus = Bus.from_settings(settings)
    bus.schemas.resolver = SchemasTopicResolver(bus)
    return verification(bus)


def verifier(bus: Bus):
    def verify() -> dict:
        with multiprocessing.get_context("spawn").Pool(1) as child:
            return child.apply(verified_in_a_child, (bus.settings,))
    return verify


def console_for(bus: Bus) -> Console:
    console = Console(bus, services=lambda: service_rows(bus), verifier=verifier(bus),
                      prover=lambda target: audit_proof(bus, target), exporter=lambda: audit_export(bus),
                      kpi_compare=compare)
    console.explainer = AuditReader(bus, console)
    return console


def serve(bus: Bus, host: str, port: int | None) -> None:
    bus.schemas.resolver = SchemasTopicResolver(bus)        # messages of older writer schemas too
    # beyond this machine only over HTTPS: cookies and signatures must not cross a network in the clear
    cert, key = (None, None) if is_loopback(host) else console_certificate(bus.settings, host)
    console = console_for(bus)
    console.start()
    port = port or bus.settings.services.console_port
    print(f"mlbus console on {'https' if cert else 'http'}://{host}:{port}/ (log in with your identity file: "
          f"it is read in your browser, never sent)", flush=True)
    try:
        uvicorn.run(console.app(), host=host, port=port, log_level="warning",
                    ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None)
    finally:
        console.stop()
