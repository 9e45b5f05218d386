"""The console wired to the bus: the readers of audit.log the CLI uses too (services/domain), the services' state
(services/bus/supervision), then uvicorn."""
from __future__ import annotations

import multiprocessing
import os

import uvicorn

from services.bus.context import Bus
from services.bus.schema_topic import SchemasTopicResolver
from services.bus.settings import Settings
from services.bus.supervision import service_rows
from services.domain import AuditIndex, audit_timeline, before_after, by_variant, explain_request, explain_scoring
from services.adapters import audit_export, audit_proof, audit_records, decoded, records_between, verification

from .app import Console
from .tls import console_certificate, is_loopback

TIMELINE_LINES = 300         # the audit screen's timeline: the newest decisions of audit.log
DECISIONS = ("mlbus.DataBatch", "mlbus.DataValidated", "mlbus.ModelSpecDefined", "mlbus.TrainingRequested",
             "mlbus.ModelTrained", "mlbus.PromotionPolicyDefined", "mlbus.ApprovalSubmitted", "mlbus.ModelLifecycle",
             "mlbus.DeploymentRequested", "mlbus.DeploymentChanged", "mlbus.Alert", "mlbus.ErasureRequested",
             "mlbus.BatchScored")


class AuditReader:
    """What the audit screen asks of audit.log: one request explained, and the decision timeline — read once in
    the background (traffic skipped undecoded), then only the records after what was read."""

    def __init__(self, bus: Bus, console: Console):
        self.bus, self.console = bus, console
        self.decisions: list = []           # decoded decision records (Audited), in sequence order
        self.read_to = 0                    # audit sequence read up to
        self.lines: list = []               # the timeline, newest first

    def __call__(self, request_id: str) -> dict | None:
        """A served prediction explained, or a batch scoring (`mlbus score`), from the whole log."""
        index = AuditIndex(list(decoded(self.bus, audit_records(self.bus))))
        return explain_request(index, request_id) or explain_scoring(index, request_id)

    def refresh(self) -> None:
        head = (self.console.view.head or {}).get("sequence") or 0
        if head <= self.read_to:
            return
        topics = {self.bus.catalogue.for_schema(r).name for r in DECISIONS}
        if self.read_to == 0:
            records = audit_records(self.bus, DECISIONS)
        else:
            records = [r for r in records_between(self.bus, self.read_to + 1) if r["source_topic"] in topics]
        self.decisions += decoded(self.bus, records)
        self.read_to = max([head] + [r["sequence"] for r in records])
        self.lines = list(reversed(audit_timeline(self.decisions, None)))[:TIMELINE_LINES]

    def timeline(self) -> list:
        return self.lines


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
