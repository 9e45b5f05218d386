"""The deployer's handler and tick: fold what happened, decide deployments, gate canaries on evidence."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from services.bus import Event, Received, derive_id
from services.domain import alert, ArtifactRefused, SpecMonitoring
from services.adapters import ArtifactStore
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import Inventory
from services.bus.identity import SPEC_SIGNERS, TRAINED_SIGNER, signed_only
from services.bus.signing import Verdict

from .decide import Gates, advance, change, gate, on_approved, on_request, rollback, slo_breach
from .evidence import EvidenceBook, ServingWindow


class Deployer:
    def __init__(self, inventory: Inventory, deployments: Deployments, gates: Gates, canary_interval_s: float,
                 verify: Callable[[Received, tuple[str, ...]], Verdict], artifacts: ArtifactStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 specs: SpecMonitoring | None = None):
        self.inventory = inventory
        self.verify = verify
        self.artifacts = artifacts
        self.deployments = deployments
        self.gates = gates
        self.canary_interval_s = canary_interval_s
        self.evidence = EvidenceBook()
        self.specs = specs or SpecMonitoring()
        self.fold_spec = signed_only(self.specs.apply, verify, SPEC_SIGNERS)
        self.fold_inventory = signed_only(self.inventory.apply, verify, TRAINED_SIGNER)
        self.serving = ServingWindow()
        self.clock = clock
        self.live_evidence = {"mlbus.Prediction": self.evidence.prediction, "mlbus.Outcome": self.evidence.outcome}
        self.decisions = {"mlbus.ModelTrained": self._approved, "mlbus.ModelLifecycle": self._approved,
                          "mlbus.DeploymentRequested": self._requested}

    def __call__(self, message: Received) -> list[Event]:
        record, value, now = message.record, message.value, self.clock()
        evidence = self.live_evidence.get(record)
        if evidence:                              # serving traffic: the canary gates' evidence, the champion's SLOs
            evidence(value)
            return self._slo(value, now) if record == "mlbus.Prediction" else []
        self.fold_spec(message)                   # only a data scientist's signed spec
        self.fold_inventory(message)              # a version only from the trainer's key; a decision may wait for it
        self.deployments.apply(record, value)
        decide = self.decisions.get(record)
        return self._checked(decide(message, now) if decide else [], now)

    def _approved(self, message: Received, now: datetime) -> list[Event]:
        return [e for d in self._undeployed_approvals(message.value) for e in on_approved(
            self.deployments, self.inventory, d, now, self.canary_interval_s)]

    def _requested(self, message: Received, now: datetime) -> list[Event]:
        return on_request(self.deployments, self.inventory, message.value, self.verify(message, ("operator",)), now)

    def _undeployed_approvals(self, value: dict) -> list[dict]:
        """The approvals of this message's version that no deployment answers yet. Judged by the outputs, not
        by whether the message was new: the history read at start already holds a decision that is handled
        again after a crash (its transaction aborted) or that came while the deployer was down."""
        entry = self.inventory.version(value["model"], value["version"])
        if entry is None:
            return []
        return [d for d in entry.history if d["kind"] == "approved"
                and not self.deployments.answered(derive_id(d["event_id"], "deployment"))]

    def _slo(self, prediction: dict, now: datetime) -> list[Event]:
        """The champion's serving SLOs, judged every slo_window of its served predictions: a breach is a critical
        `slo` alert and, where the spec says so, a rollback to the previous champion."""
        model, monitoring = prediction["model"], self.specs.of(prediction["model"])
        champion = self.deployments.champion(model)
        if not (monitoring.slo_p99_ms or monitoring.slo_error_rate) or champion is None or not prediction["served"] \
                or prediction["version"] != champion["version"] or prediction["variant"] != "champion":
            return []
        rows = self.serving.add(model, prediction["version"], prediction["latency_ms"], prediction["error"] is not None)
        if len(rows) < monitoring.slo_window:
            return []
        self.serving.clear(model)
        breach = slo_breach(rows, monitoring)
        if breach is None:
            return []
        cause = derive_id("slo", model, prediction["version"], prediction["prediction_id"])
        events = [alert("slo", model, f"{model} v{prediction['version']} breaks its serving SLO: {breach}", cause, now,
                        severity="critical", version=prediction["version"],
                        evidence={"window": len(rows), "slo_p99_ms": monitoring.slo_p99_ms,
                                  "slo_error_rate": monitoring.slo_error_rate, "rollback": monitoring.slo_rollback})]
        current = self.deployments.current.get(model)
        if monitoring.slo_rollback and current and current["phase"] == "completed":
            events += rollback(self.deployments, model, derive_id(cause, "rollback"), "deployer",
                               f"automatic rollback: {breach}", cause, now, {"slo": breach})
        return self._checked(events, now)

    def tick(self) -> list[Event]:
        """Move every canary whose step has lasted its interval: next step, done, or rolled back."""
        now = self.clock()
        events: list[Event] = []
        for deployment in self.deployments.in_progress():
            if (now - deployment["changed_at"]).total_seconds() < deployment["step_interval_s"]:
                continue
            routes = {r["variant"]: r for r in deployment["routes"]}
            if not {"canary", "champion"} <= routes.keys():
                continue                            # not a canary in progress, whatever its phase says
            canary = self.evidence.stats(deployment["deployment_id"], routes["canary"]["version"])
            champion = self.evidence.stats(deployment["deployment_id"], routes["champion"]["version"])
            step_events = advance(deployment, gate(canary, champion, self.gates),
                                  {"canary": canary, "champion": champion}, now, self.deployments)
            if step_events:
                self.evidence.reset(deployment["deployment_id"])
            events += step_events
        return self._checked(events, now)

    def _checked(self, events: list[Event], now: datetime) -> list[Event]:
        """Re-hash the artifact of every version a change brings in; a mismatch keeps the old routes."""
        checked: list[Event] = []
        for event in events:
            if event.record == "mlbus.DeploymentChanged" and event.value["phase"] in ("started", "completed"):
                refusal = self._artifact_refusal(event.value)
                if refusal:
                    checked += self._refuse(event.value, refusal, now)
                    continue
            self.deployments.apply(event.record, event.value)
            checked.append(event)
        return checked

    def _artifact_refusal(self, deployment: dict) -> str | None:
        for route in deployment["routes"]:
            entry = self.inventory.version(deployment["model"], route["version"])
            if entry is None:
                continue
            try:                                # an ensemble's members too: they serve with it
                for artifact in [entry.trained, *entry.trained.get("members", [])]:
                    self.artifacts.verify(artifact["artifact_uri"], artifact["artifact_sha256"])
            except ArtifactRefused as error:
                return str(error)
        return None

    def _refuse(self, deployment: dict, reason: str, now: datetime) -> list[Event]:
        model = deployment["model"]
        refused = change(model, deployment["deployment_id"], deployment["strategy"], "refused",
                         self.deployments.routes(model), reason, "deployer", deployment["cause_id"], now,
                         version=deployment["version"])
        tampered = alert("tampered-artifact", model, f"deployment refused, the serving version stays: {reason}",
                         deployment["cause_id"], now, severity="critical", version=deployment["version"],
                         evidence={"deployment_id": deployment["deployment_id"]},
                         alert_id=derive_id(deployment["deployment_id"], "tampered"))
        self.deployments.apply(refused.record, refused.value)
        return [refused, tampered]
