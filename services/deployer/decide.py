"""The deployer's decisions (pure): which versions serve which share of a model's traffic, and when a
canary moves on, completes or rolls back. Each decision is a DeploymentChanged event with its reason."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from services.bus import Event, derive_id
from services.bus.projections.deployments import Deployments
from services.bus.projections.inventory import APPROVED, Inventory, artifact_refusal
from services.bus.signing import Verdict, signature_refusal

DEFAULT_STEPS = (10, 25, 50, 100)
STRATEGIES = ("replace", "canary", "shadow", "champion-challenger")


def route(version: int, variant: str, share: float, sha256: str, served: bool = True) -> dict:
    return {"version": version, "variant": variant, "share": round(share, 6), "served": served,
            "artifact_sha256": sha256}


def change(model: str, deployment_id: str, strategy: str, phase: str, routes: list[dict], reason: str, actor: str,
           cause_id: str, now: datetime, version: int | None = None, steps: list[int] | None = None, step: int = 0,
           interval_s: float = 0.0, evidence: dict | None = None) -> Event:
    event_id = derive_id(deployment_id, phase, step)
    return Event("mlbus.DeploymentChanged", key=model, id=event_id, subject=model, value={
        "deployment_id": deployment_id, "model": model, "strategy": strategy, "phase": phase, "routes": routes,
        "reason": reason, "actor": actor, "cause_id": cause_id, "changed_at": now, "version": version,
        "steps": list(steps or []), "step": step, "step_interval_s": interval_s,
        "evidence_json": json.dumps(evidence or {}, sort_keys=True)})


def on_approved(deployments: Deployments, inventory: Inventory, lifecycle: dict, now: datetime,
                interval_s: float) -> list[Event]:
    """An approved version goes out by itself: straight in when nothing serves, else as a canary."""
    if lifecycle["kind"] != "approved":
        return []
    strategy = "canary" if deployments.champion(lifecycle["model"]) else "replace"
    request = {"request_id": lifecycle["event_id"], "model": lifecycle["model"], "version": lifecycle["version"],
               "action": "deploy", "strategy": strategy, "percent": None, "steps": [], "step_interval_s": interval_s,
               "actor": "deployer", "reason": f"approved by {lifecycle['actor']}"}
    return deploy(deployments, inventory, request, now)


def on_request(deployments: Deployments, inventory: Inventory, request: dict, verdict: Verdict,
               now: datetime) -> list[Event]:
    """A person's deploy or rollback request; `verdict`: its signature's check (only an operator's counts)."""
    unsigned = signature_refusal(verdict, request["actor"])
    model = request["model"]
    if unsigned is None and deployments.answered(derive_id(request["request_id"], "deployment")):
        return []                           # delivered again (after a restart): carried out once
    if unsigned:            # its own deployment id: an act that is not theirs must not answer the request's id
        return [change(model, derive_id(request["request_id"], "deployment", "unverified", unsigned),
                       request["strategy"], "refused",
                       deployments.routes(model), unsigned, f"unverified:{request['actor']}", request["request_id"],
                       now, version=request["version"])]
    entry = inventory.version(model, request["version"]) if request["action"] == "deploy" else None
    unbound = entry and artifact_refusal(request, entry.trained["artifact_sha256"])
    if unbound:
        return [change(model, derive_id(request["request_id"], "deployment"), request["strategy"], "refused",
                       deployments.routes(model), unbound, request["actor"], request["request_id"], now,
                       version=request["version"])]
    return deploy(deployments, inventory, request, now)


def deploy(deployments: Deployments, inventory: Inventory, request: dict, now: datetime) -> list[Event]:
    """Carry out a deploy or rollback request (a verified person's, or the deployer's own after an approval)."""
    model, deployment_id = request["model"], derive_id(request["request_id"], "deployment")
    if request["action"] == "rollback":
        return rollback(deployments, model, deployment_id, request["actor"], request["reason"] or "rollback requested",
                        request["request_id"], now)
    refused = refusal_reason(deployments, inventory, request)
    if refused:
        return [change(model, deployment_id, request["strategy"], "refused", deployments.routes(model), refused,
                       request["actor"], request["request_id"], now, version=request["version"])]
    version = request["version"]
    sha = inventory.version(model, version).trained["artifact_sha256"]
    champion = deployments.champion(model)
    strategy = request["strategy"] if champion else "replace"
    common = dict(model=model, deployment_id=deployment_id, strategy=strategy, actor=request["actor"],
                  cause_id=request["request_id"], now=now, version=version)
    reason = request["reason"] or f"{strategy} of v{version}"
    if strategy == "replace":
        return [change(**common, phase="completed", routes=[route(version, "champion", 1.0, sha)], reason=reason)]
    old = route(champion["version"], "champion", 1.0, champion["artifact_sha256"])
    if strategy == "shadow":
        return [change(**common, phase="completed", routes=[old, route(version, "shadow", 0.0, sha, served=False)],
                       reason=reason)]
    if strategy == "champion-challenger":
        share = (request["percent"] or 50) / 100
        return [change(**common, phase="completed", reason=reason,
                       routes=[{**old, "share": round(1 - share, 6)}, route(version, "challenger", share, sha)])]
    steps = list(request["steps"] or DEFAULT_STEPS)
    return [change(**common, phase="started", reason=reason, steps=steps, interval_s=request["step_interval_s"],
                   routes=canary_routes(old, version, sha, steps[0]))]


def refusal_reason(deployments: Deployments, inventory: Inventory, request: dict) -> str | None:
    if request["strategy"] not in STRATEGIES:
        return f"unknown strategy {request['strategy']!r}; choose {', '.join(STRATEGIES)}"
    entry = inventory.version(request["model"], request["version"] or 0)
    if entry is None:
        return f"{request['model']} v{request['version']} is not registered"
    if entry.status != APPROVED:
        return f"only approved versions can be deployed; v{entry.version} is {entry.status}"
    busy = deployments.current.get(request["model"])
    if busy and busy["phase"] in ("started", "step"):
        return f"a canary of v{busy['version']} is in progress; roll back or wait for it"
    return None


def canary_routes(champion: dict, version: int, sha: str, percent: int) -> list[dict]:
    share = percent / 100
    return [{**champion, "share": round(1 - share, 6)}, route(version, "canary", share, sha)]


def rollback(deployments: Deployments, model: str, deployment_id: str, actor: str, reason: str, cause_id: str,
             now: datetime, evidence: dict | None = None) -> list[Event]:
    """Back to the champion alone (a canary in progress), or to the champion before the current one."""
    current = deployments.current.get(model)
    target = previous_champion(deployments, model) if current and current["phase"] == "completed" else \
        deployments.champion(model)
    if current is None or target is None:
        return [change(model, deployment_id, "rollback", "refused", deployments.routes(model),
                       "nothing to roll back to", actor, cause_id, now)]
    routes = [route(target["version"], "champion", 1.0, target["artifact_sha256"])]
    return [change(model, current["deployment_id"], current["strategy"], "rolled-back", routes, reason, actor,
                   cause_id, now, version=current["version"], step=current["step"], evidence=evidence)]


def previous_champion(deployments: Deployments, model: str) -> dict | None:
    serving = deployments.champion(model)
    for earlier in reversed(deployments.history.get(model, [])[:-1]):
        if earlier["phase"] in ("completed", "rolled-back"):
            champion = next((r for r in earlier["routes"] if r["variant"] == "champion"), None)
            if champion and serving and champion["version"] != serving["version"]:
                return champion
    return None


@dataclass(frozen=True)
class Gates:
    """What a canary step must show before it moves on (defaults are conservative)."""

    min_predictions: int = 20
    max_error_rate: float = 0.02
    max_latency_ratio: float = 3.0       # canary p99 ≤ this × the champion's p99 (floor 5 ms)
    min_outcomes: int = 20
    max_accuracy_drop: float = 0.05     # classification: canary accuracy ≥ champion's − this
    max_mae_increase: float = 0.10      # regression: canary MAE ≤ champion's × (1 + this)


def gate(canary: dict, champion: dict, gates: Gates) -> tuple[str, str]:
    """('wait' | 'pass' | 'fail', why) from each version's live statistics in the current step."""
    if canary["count"] < gates.min_predictions:
        return "wait", f"{canary['count']} of {gates.min_predictions} predictions seen"
    if canary["errors"] / canary["count"] > gates.max_error_rate:
        return "fail", f"scoring errors {canary['errors']}/{canary['count']} above {gates.max_error_rate:.0%}"
    if champion["count"] and canary["p99_ms"] > gates.max_latency_ratio * max(champion["p99_ms"], 5.0):
        return "fail", f"p99 latency {canary['p99_ms']:.1f} ms vs champion {champion['p99_ms']:.1f} ms"
    if canary["outcomes"] >= gates.min_outcomes and champion["outcomes"] >= gates.min_outcomes:
        verdict = quality_gate(canary, champion, gates)
        if verdict:
            return "fail", verdict
    elif canary["outcomes"] < gates.min_outcomes and champion["outcomes"] >= gates.min_outcomes:
        return "wait", f"{canary['outcomes']} of {gates.min_outcomes} outcomes for the canary"
    return "pass", "errors, latency and online quality within the gates"


def quality_gate(canary: dict, champion: dict, gates: Gates) -> str | None:
    """Why the canary's online quality fails against the champion's: MAE for regression, accuracy for
    classification (each judged only when both versions have it)."""
    if canary.get("mae") is not None and champion.get("mae") is not None:
        limit = champion["mae"] * (1 + gates.max_mae_increase)
        if canary["mae"] > limit:
            return (f"online MAE {canary['mae']:.4g} vs champion {champion['mae']:.4g} "
                    f"(more than +{gates.max_mae_increase:.0%})")
        return None
    if canary.get("accuracy") is not None and champion.get("accuracy") is not None:
        drop = champion["accuracy"] - canary["accuracy"]
        if drop > gates.max_accuracy_drop:
            return (f"online accuracy {canary['accuracy']:.3f} vs champion {champion['accuracy']:.3f} "
                    f"(drop {drop:.3f} > {gates.max_accuracy_drop})")
    return None


def advance(deployment: dict, verdict: tuple[str, str], evidence: dict, now: datetime,
            deployments: Deployments) -> list[Event]:
    """The next canary step, the completion, or the automatic rollback."""
    outcome, why = verdict
    if outcome == "wait":
        return []
    model, steps, step = deployment["model"], deployment["steps"], deployment["step"]
    if outcome == "fail":
        return rollback(deployments, model, deployment["deployment_id"], "deployer", f"automatic rollback: {why}",
                        deployment["deployment_id"], now, evidence)
    canary = next(r for r in deployment["routes"] if r["variant"] == "canary")
    champion = next(r for r in deployment["routes"] if r["variant"] == "champion")
    common = dict(model=model, deployment_id=deployment["deployment_id"], strategy="canary", actor="deployer",
                  cause_id=deployment["deployment_id"], now=now, version=deployment["version"], steps=steps,
                  interval_s=deployment["step_interval_s"], evidence=evidence)
    if step + 1 >= len(steps) or steps[step + 1] >= 100:
        return [change(**common, phase="completed", step=step + 1, reason=f"canary passed every step: {why}",
                       routes=[route(canary["version"], "champion", 1.0, canary["artifact_sha256"])])]
    return [change(**common, phase="step", step=step + 1, reason=f"step {steps[step + 1]}%: {why}",
                   routes=canary_routes(champion, canary["version"], canary["artifact_sha256"], steps[step + 1]))]


def slo_breach(rows: list[tuple[float, bool]], monitoring) -> str | None:
    """Why the champion's window of (latency ms, failed) breaks its SLOs, or None (0 in a setting: not judged)."""
    import numpy as np
    latencies = [latency for latency, failed in rows if not failed]
    errors = sum(failed for _, failed in rows) / len(rows)
    if monitoring.slo_error_rate and errors > monitoring.slo_error_rate:
        return f"error rate {errors:.1%} over {len(rows)} predictions, the SLO is ≤ {monitoring.slo_error_rate:.1%}"
    p99 = float(np.percentile(latencies, 99)) if latencies else 0.0
    if monitoring.slo_p99_ms and p99 > monitoring.slo_p99_ms:
        return f"p99 latency {p99:.1f} ms over {len(rows)} predictions, the SLO is ≤ {monitoring.slo_p99_ms:g} ms"
    return None
