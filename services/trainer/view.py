"""What the trainer knows, folded from events (pure): specs, passed batches, versions, runs, requests."""
from __future__ import annotations

from dataclasses import dataclass, field

from services.bus.edge import content
from services.bus.projections.inventory import Inventory

from .feature_sets import ViewCatalogue


@dataclass
class TrainerView:
    specs: dict[str, dict] = field(default_factory=dict)                # model → latest ModelSpecDefined
    passed_batches: dict[str, list[dict]] = field(default_factory=dict)  # dataset → DataValidated, in order
    versions: dict[str, int] = field(default_factory=dict)              # model → latest version
    runs: dict[str, dict] = field(default_factory=dict)                 # run id → TrainingRun
    handled_requests: set[str] = field(default_factory=set)             # trained (or refused) already
    seen_requests: set[str] = field(default_factory=set)                # on training.requests already
    inventory: Inventory = field(default_factory=Inventory)             # versions, statuses, aliases: members
    feature_views: ViewCatalogue = field(default_factory=ViewCatalogue)  # followed from features.views

    def apply(self, record: str, value: dict) -> None:
        """Fold one event in; applying the same event twice changes nothing."""
        if record == "mlbus.ModelSpecDefined":
            self.specs[value["model"]] = value
        elif record == "mlbus.DataValidated" and value["passed"]:
            batches = self.passed_batches.setdefault(value["dataset"], [])
            if all(b["batch_id"] != value["batch_id"] for b in batches):
                batches.append(value)
        if record in ("mlbus.ModelTrained", "mlbus.ModelLifecycle"):
            self.inventory.apply(record, value)
        if record == "mlbus.ModelTrained":
            self.versions[value["model"]] = max(self.versions.get(value["model"], 0), value["version"])
            self.handled_requests.add(value["request_id"])
        elif record == "mlbus.TrainingRun":
            self.runs[value["run_id"]] = value
            self.handled_requests.add(value["request_id"])
        elif record == "mlbus.TrainingRequested":
            self.seen_requests.add(value["request_id"])
        elif record == "mlbus.Alert" and value["kind"] == "training-refused" and not unverified(value):
            self.handled_requests.add(value["cause_id"])


def unverified(alert: dict) -> bool:
    """A refusal of a request whose signature failed: it says nothing about the request id it names."""
    evidence = content(alert.get("evidence_json"))
    return isinstance(evidence, dict) and bool(evidence.get("unverified"))
