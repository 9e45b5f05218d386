"""The registry's decisions (pure): register a trained version, judge it against the model's promotion
policy and its champion, accept or refuse approvals, and record alias changes that deployments make.
Every decision is a ModelLifecycle event that carries its evidence: the policy and its version, the
metrics compared, the champion, who decided.
"""
from __future__ import annotations

import json
from datetime import datetime

from services.bus.edge import content
from services.bus import Event, derive_id
from services.domain import alert, FAIRNESS_METRICS, fairness_breach, groups_line, HIGHER_IS_BETTER
from services.bus.signing import Verdict, signature_refusal
from services.bus.projections.inventory import (Inventory, ModelVersion, approval_refusal, artifact_refusal,
                                               supersedes)


def lifecycle(model: str, version: int, kind: str, actor: str, reason: str, cause_id: str, now: datetime,
              policy: dict | None = None, evidence: dict | None = None, alias: str | None = None) -> Event:
    event_id = derive_id(cause_id, model, version, kind)
    return Event("mlbus.ModelLifecycle", key=model, id=event_id, subject=f"{model}@{version}", value={
        "event_id": event_id, "model": model, "version": version, "kind": kind, "alias": alias, "actor": actor,
        "reason": reason, "policy_version": policy["policy_version"] if policy else None,
        "evidence_json": json.dumps(evidence or {}, sort_keys=True), "cause_id": cause_id, "occurred_at": now})


def on_trained(inventory: Inventory, trained: dict, cause_id: str, now: datetime) -> list[Event]:
    model, version = trained["model"], trained["version"]
    existing = inventory.version(model, version)
    if existing is not None and existing.trained["run_id"] != trained["run_id"]:
        return [lifecycle(model, version, "refused", "registry", "version already registered; registered "
                          "versions are immutable", cause_id, now, evidence={"run_id": trained["run_id"]})]
    if existing is not None and existing.history:
        return []                                              # the same record delivered again
    policy = inventory.policy(model)
    verdict, evidence = judge(trained, policy, inventory.champion(model))
    events = [lifecycle(model, version, "registered", "registry", "trained version registered", cause_id, now,
                        policy, {"run_id": trained["run_id"], "metrics": trained["metrics"],
                                 "artifact_sha256": trained["artifact_sha256"]})]
    if verdict:
        events.append(lifecycle(model, version, "rejected", f"policy:v{policy['policy_version']}", verdict,
                                cause_id, now, policy, evidence))
    elif not policy["human_approval"]:
        events.append(lifecycle(model, version, "approved", f"policy:v{policy['policy_version']}",
                                "meets the policy; no human approval required", cause_id, now, policy, evidence))
    return events


def judge(trained: dict, policy: dict, champion: ModelVersion | None) -> tuple[str | None, dict]:
    """(the reason the policy rejects it, or None; the evidence either way)."""
    metrics = trained["metrics"]
    evidence: dict = {"metrics": metrics, "thresholds": policy["thresholds"]}
    for name, limit in sorted(policy["thresholds"].items()):
        value = metrics.get(name)
        higher = HIGHER_IS_BETTER.get(name, True)
        if value is None or (value < limit if higher else value > limit):
            return f"{name} {value} does not meet the threshold {'≥' if higher else '≤'} {limit}", evidence
    fairness = content(trained.get("fairness_json"))
    if policy.get("fairness"):
        evidence.update(fairness=fairness, fairness_thresholds=policy["fairness"])
        breach = fairness_breach(fairness, policy["fairness"])
        if breach:
            name, attribute, value, limit = breach
            direction = "≥" if FAIRNESS_METRICS.get(name) else "≤"
            return (f"{name} for {attribute} is {value:.4g}, the policy needs {direction} {limit}: "
                    f"{groups_line(fairness[attribute], name)}"), evidence
    metric = policy["metric"] or trained["metric"]
    if champion is not None and metric in champion.trained["metrics"]:
        sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
        improvement = sign * (metrics.get(metric, float("nan")) - champion.trained["metrics"][metric])
        evidence.update(champion_version=champion.version, champion_metrics=champion.trained["metrics"],
                        compared_metric=metric, improvement=improvement)
        if not improvement >= policy["min_improvement"]:
            return (f"{metric} improves on champion v{champion.version} by {improvement:.4g}, the policy needs "
                    f"{policy['min_improvement']}"), evidence
    return None, evidence


def on_approval(inventory: Inventory, approval: dict, verdict: Verdict, now: datetime) -> list[Event]:
    """Decide on a person's approval or rejection; `verdict` is its signature's check (signing.verify_act):
    the verified signer is the actor, whatever the record claims."""
    model, version = approval["model"], approval["version"]
    cause = approval["approval_id"]
    if cause in inventory.causes and not replayed(verdict):
        return []                                              # delivered twice: decided once
    entry = inventory.version(model, version)
    policy = inventory.policy(model)
    actor = verdict.signer or f"unverified:{approval['actor']}"
    unverified = signature_refusal(verdict, approval["actor"])
    refusal = unverified or approval_refusal(entry, policy, actor) or \
        artifact_refusal(approval, entry.trained["artifact_sha256"])
    signed = {"signer": verdict.signer, "signer_key": verdict.signer_key}
    if unverified:          # its own cause id: an act that is not theirs must not mark the approval id decided
        cause = derive_id(cause, "unverified", unverified)
    if refusal:
        return [lifecycle(model, version, "approval-refused", actor, refusal, cause, now, policy,
                          {"decision": approval["decision"], "reason": approval["reason"], **signed})]
    kind = "approved" if approval["decision"] == "approve" else "rejected"
    return [lifecycle(model, version, kind, actor, approval["reason"], cause, now, policy,
                      {"decision": approval["decision"], "metrics": entry.trained["metrics"], **signed})]


def replayed(verdict: Verdict) -> bool:
    """The act was taken already elsewhere (signing.ActLedger): a copy published again, refused on the record."""
    return bool(verdict.refusal and verdict.refusal.startswith("replayed"))


def on_policy(policy: dict, verdict: Verdict, cause_id: str, now: datetime, current: dict | None = None) -> list[Event]:
    """A policy takes effect only when an admin signed it and it supersedes the current one (a higher
    policy_version); otherwise an alert says who tried what."""
    refusal = verdict.refusal
    if refusal is None and current is not None and not supersedes(policy, current):
        if current.get("act_id") and current.get("act_id") == policy.get("act_id"):
            return []                                   # the same act read again
        refusal = (f"policy v{policy['policy_version']} does not supersede the current v{current['policy_version']} "
                   f"(a replayed or out-of-order policy)")
    if refusal is None:
        return []
    return [alert("policy-refused", policy["model"], f"policy v{policy['policy_version']} of {policy['model']} not "
                  f"adopted: {refusal}", cause_id, now,
                  evidence={"claimed_by": policy["defined_by"], "refusal": refusal})]


def on_deployment(inventory: Inventory, deployment: dict, now: datetime) -> list[Event]:
    """A completed deployment makes its serving champion (and challenger) the model's aliases; a champion
    that no longer serves at all is retired."""
    if deployment["phase"] != "completed" or deployment["deployment_id"] in inventory.causes:
        return []
    model = deployment["model"]
    current = inventory.aliases.get(model, {})
    events = []
    for route in deployment["routes"]:
        alias = route["variant"] if route["variant"] in ("champion", "challenger") else None
        if alias and route["served"] and current.get(alias) != route["version"]:
            events.append(lifecycle(model, route["version"], "promoted", deployment["actor"],
                                    f"{alias} since deployment {deployment['deployment_id']}",
                                    deployment["deployment_id"], now, alias=alias,
                                    evidence={"previous": current.get(alias), "share": route["share"],
                                              "strategy": deployment["strategy"]}))
    serving = {r["version"] for r in deployment["routes"]}
    previous = current.get("champion")
    if events and previous is not None and previous not in serving:
        events.append(lifecycle(model, previous, "retired", deployment["actor"],
                                f"no longer serves since deployment {deployment['deployment_id']}",
                                deployment["deployment_id"], now, evidence={"replaced_by": sorted(serving)}))
    return events
