"""What the console knows: the topics folded by the same projections the services run (the registry's
inventory, the deployer's deployments, the identities book), plus the lists the screens draw from.
Pure: `apply(record, value)` is called by a Follower thread; readers take `lock` while they look."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from services.bus.projections.deployments import Deployments
from services.bus.projections.identities import IDENTITY_RECORDS, Identities
from services.bus.projections.inventory import INVENTORY_RECORDS, Inventory
from services.domain import (FeatureView, ViewsRefused, ahead_of_clock, head_of_checkpoint, lateness_of,
                             signature_problem)

LISTED = ("mlbus.TrainingRun", "mlbus.ApprovalSubmitted", "mlbus.DeploymentChanged", "mlbus.DriftReport",
          "mlbus.Alert", "mlbus.KpiObserved", "mlbus.AuditCheckpoint", "mlbus.DataBatch", "mlbus.DataValidated")
RECORDS = (*INVENTORY_RECORDS, *IDENTITY_RECORDS, *LISTED)       # what the console follows
FEATURE_RECORDS = ("mlbus.FeatureViewDefined", "mlbus.FeatureValue")   # followed apart, in the background
VALUES_SAID_EVERY_MS = 5_000   # online values tell the pages at most this often (by broker time): not per value
MAX_REFUSED_VIEWS = 100
MAX_VIEW_VERSIONS = 10_000     # view versions whose freshness is kept
KEPT_PER_LIST = 5_000          # the newest runs, drift reports, alerts and KPI observations kept in memory
PENDING_HEADS = 1_000          # checkpoints signed by a key not declared yet, kept until it is (the oldest go first)


@dataclass
class ConsoleView:
    inventory: Inventory = field(default_factory=Inventory)
    deployments: Deployments = field(default_factory=Deployments)
    identities: Identities = field(default_factory=Identities)
    runs: list[dict] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)          # ApprovalSubmitted, as people sent them
    drift: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    kpis: list[dict] = field(default_factory=list)
    head: dict | None = None                                     # the latest AuditCheckpoint (signed tree head)
    #                                                              of the log (of shard 0, in a sharded log)
    heads: dict[str, dict] = field(default_factory=dict)         # log id (a shard's) → its latest AuditCheckpoint
    pending: list[dict] = field(default_factory=list, repr=False)  # checkpoints of a log-signer key not declared yet
    batches: dict[str, dict] = field(default_factory=dict)       # batch id → DataBatch
    validations: dict[str, dict] = field(default_factory=dict)   # batch id → DataValidated
    feature_views: dict[tuple[str, str], dict] = field(default_factory=dict)   # (view, version) → definition
    refused_views: list[dict] = field(default_factory=list)      # definitions that do not parse, with the reason
    feature_values: dict[tuple[str, str], dict] = field(default_factory=dict)  # (view, version) → freshness
    values_said_at: int = 0                                      # broker time the online values last told pages
    changes: int = 0                                             # bumped by every record folded in
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    listeners: list[Callable[[int], None]] = field(default_factory=list, repr=False)

    def apply(self, record: str, value: dict, at_ms: int = 0) -> None:
        with self.lock:
            if record in INVENTORY_RECORDS:
                self.inventory.apply(record, value)
            elif record in IDENTITY_RECORDS:
                self.identities.apply(record, value, at_ms)
                pending, self.pending = self.pending, []
                for checkpoint in pending:          # a log signer declared since: its heads count now
                    self._checkpoint(checkpoint)
            elif record == "mlbus.DeploymentChanged":
                self.deployments.apply(record, value)
            elif record == "mlbus.AuditCheckpoint":
                self._checkpoint(value)
            elif record == "mlbus.DataBatch":
                self.batches[value["batch_id"]] = value
            elif record == "mlbus.DataValidated":
                self.validations[value["batch_id"]] = value
            elif record == "mlbus.FeatureViewDefined":
                self._view_defined(value)
            elif record == "mlbus.FeatureValue":
                self._feature_value(value)
                if at_ms - self.values_said_at < VALUES_SAID_EVERY_MS:
                    return                  # folded; the pages hear of it with the next change
                self.values_said_at = at_ms
            else:
                listed = {"mlbus.TrainingRun": self.runs, "mlbus.ApprovalSubmitted": self.attempts,
                          "mlbus.DriftReport": self.drift, "mlbus.Alert": self.alerts, "mlbus.KpiObserved": self.kpis}
                kept = listed[record]
                kept.append(value)
                if len(kept) > KEPT_PER_LIST:
                    del kept[: len(kept) - KEPT_PER_LIST]
            self.changes += 1
            changes = self.changes
        for listener in list(self.listeners):
            listener(changes)

    def _view_defined(self, value: dict) -> None:
        """A signed view definition (the follower's check), kept by view and version; one that does not parse is
        kept apart with its reason, shown on its page."""
        from services.adapters import view_from_record       # pandas and SQLAlchemy: on first use
        try:
            view: FeatureView = view_from_record(value)
        except ViewsRefused as refused:
            self.refused_views = self.refused_views[-(MAX_REFUSED_VIEWS - 1):] + [
                {"view": str(value.get("view"))[:80], "version": str(value.get("version"))[:64],
                 "reason": str(refused)[:500], "defined_by": value.get("defined_by")}]
            return
        self.feature_views[(view.name, view.version)] = {"view": view, "record": value}

    def _feature_value(self, value: dict) -> None:
        """An online value: only how fresh its view version is (the newest value's time), and how many came."""
        key = (value["view"], value["version"])
        if key not in self.feature_values and len(self.feature_values) >= MAX_VIEW_VERSIONS:
            return                          # more view versions than any definition makes: a flood, not shown
        held = self.feature_values.setdefault(key, {"values": 0, "event_time": None, "computed_at": None,
                                                    "features": {}})
        held["values"] += 1
        at, computed_at, now_ms = value["event_time"], value["computed_at"], int(time.time() * 1000)
        defined = self.feature_views.get(key)                   # None: not defined yet
        lateness_ms = lateness_of(None if defined is None else defined["view"])
        if ahead_of_clock(int(at.timestamp() * 1000), now_ms, lateness_ms=lateness_ms) is not None or \
                ahead_of_clock(int(computed_at.timestamp() * 1000), now_ms, lateness_ms=0) is not None:
            return                          # counted, but no freshness: it would read "fresh" until that date
        if held["event_time"] is None or at > held["event_time"]:
            held["event_time"] = at
        if held["computed_at"] is None or computed_at > held["computed_at"]:
            held["computed_at"] = computed_at
        features = held["features"]
        if value["feature"] in features or len(features) < 200:     # a view defines at most 200
            features[value["feature"]] = max(features.get(value["feature"], at), at)

    def _checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint is a head only once its signature holds under a declared log signer's key: anyone who may
        write audit.checkpoints could otherwise claim a shard read up to any size (the timeline would then never
        read that shard again). One of a key not declared yet waits for it (identities may be read after it)."""
        holds = vouched(checkpoint, self.identities.log_signers())
        if holds:
            self._signed(checkpoint)
        elif holds is None:
            self.pending = self.pending[-(PENDING_HEADS - 1):] + [checkpoint]

    def _signed(self, checkpoint: dict) -> None:
        """A checkpoint kept as its shard's latest head (each shard of audit.log signs its own, under its log id);
        `head` is the log's own: shard 0's, whose log id is the others' prefix (`<log>/shard-k`)."""
        name = checkpoint.get("log_id") or ""
        if name not in self.heads or checkpoint["sequence"] >= self.heads[name]["sequence"]:
            self.heads[name] = checkpoint
        self.head = self.heads[min(self.heads, key=len)]

    def signed_sizes(self) -> int:
        """The sizes of every shard's latest head added up: grows whenever any shard signs a larger head."""
        with self.lock:
            return sum(h["sequence"] for h in self.heads.values())

    apply.timed = True          # type: ignore[attr-defined]  # identities need the broker's time


def vouched(checkpoint: dict, log_signers: dict[str, bytes]) -> bool | None:
    """Whether a checkpoint is a signed head whose signature holds under one of these keys (None: signed by a key
    not among them, which may be declared later; False: unsigned, unreadable or forged)."""
    signed = head_of_checkpoint(checkpoint, "audit.checkpoints").signed
    if signed is None:
        return False
    if signed.key_id not in log_signers:
        return None
    return signature_problem(signed, log_signers) is None
