"""The trainer's decisions (pure): when to train, on what, which run wins, what to announce."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from services.bus.edge import content
from services.bus import Event, derive_id
from services.domain import (alert, candidates, HIGHER_IS_BETTER, is_ensemble, member_record, training_request,
                             union)
from services.bus.identity import act_refusal as refusal_of
from services.bus.received import Received
from services.bus.projections.inventory import APPROVED, Inventory, ModelVersion
from services.bus.signing import Verdict

from .feature_sets import FeaturePlan, current_features, reproduced_features
from .view import TrainerView


@dataclass(frozen=True)
class TrainingPlan:
    request: dict
    spec: dict
    version: int
    batches: list[dict]                  # DataValidated values of the batches to train on
    grid: list[dict]                     # full hyperparameters of each run
    run_ids: list[str]
    seed: int
    reproduces: dict | None = None       # the TrainingRun being reproduced
    members: tuple[dict, ...] = ()       # an ensemble's members (EnsembleMember records), pinned
    features: FeaturePlan | None = None  # the feature views joined to the batches' label rows
    features_record: dict = field(default_factory=dict)    # what the join used (ModelTrained's feature fields)


def requests_for_new_data(view: TrainerView, validated: dict, now: datetime) -> list[Event]:
    """A passed batch asks for a training of every model whose spec trains on its dataset."""
    if not validated["passed"]:
        return []
    events = []
    for model, spec in sorted(view.specs.items()):
        request_id = derive_id(validated["validation_id"], model)
        if spec["dataset"] != validated["dataset"] or request_id in view.seen_requests or is_ensemble(spec):
            continue
        events.append(training_request(request_id, model, "new-data", "trainer", now, evidence={
            "batch_id": validated["batch_id"], "validation_id": validated["validation_id"]}))
    return events


def requests_for_member_change(view: TrainerView, lifecycle: dict, now: datetime) -> list[Event]:
    """An alias an ensemble names (MODEL@champion) moved to another version: a new ensemble version is asked for —
    the deployed one keeps its members. (Ensembles do not train on new data: their members do.)"""
    if lifecycle["kind"] != "promoted" or not lifecycle["alias"]:
        return []
    ref = f"{lifecycle['model']}@{lifecycle['alias']}"
    events = []
    for model, spec in sorted(view.specs.items()):
        request_id = derive_id(lifecycle["event_id"], model)
        if is_ensemble(spec) and ref in content(spec["ensemble_json"])["members"] \
                and request_id not in view.seen_requests:
            events.append(training_request(request_id, model, "member-changed", "trainer", now, evidence={
                "member": ref, "version": lifecycle["version"], "lifecycle_event_id": lifecycle["event_id"]}))
    return events


def plan_training(view: TrainerView, request: dict) -> TrainingPlan | str | None:
    """The plan for a request, the reason it cannot be trained, or None when there is nothing to train."""
    if request.get("reproduce_run_id"):
        return plan_reproduction(view, request)
    spec = view.specs.get(request["model"])
    if spec is None:
        return f"no spec for model {request['model']!r}: define one with `mlbus models define`"
    batches = choose_batches(view.passed_batches.get(spec["dataset"], []), spec["batches"], request["batch_ids"])
    if isinstance(batches, str):
        return batches
    if is_ensemble(spec):
        settings = content(spec["ensemble_json"])
        return ensemble_plan(view.inventory, spec, request, batches, settings["members"], settings.get("weights"),
                             settings["combine"], view.versions.get(spec["model"], 0) + 1)
    features = current_features(view.feature_views, spec)
    if isinstance(features, str):
        return features
    grid = candidates(spec)
    return TrainingPlan(request=request, spec=spec, version=view.versions.get(spec["model"], 0) + 1,
                        batches=batches, grid=grid, seed=spec["seed"], features=features,
                        run_ids=[derive_id(request["request_id"], "run", i) for i in range(len(grid))])


def ensemble_plan(inventory: Inventory, spec: dict, request: dict, batches: list[dict], refs: list[str],
                  weights: list[float] | None, method: str, version: int,
                  reproduces: dict | None = None) -> TrainingPlan | str | None:
    """An ensemble's plan: its members resolved to approved versions now (MODEL@VERSION or MODEL@ALIAS) and
    pinned; its features are theirs. None: an alias moved but the latest version already has these members."""
    members = []
    for ref, weight in zip(refs, weights or [1.0] * len(refs)):
        entry = member_version(inventory, ref)
        if isinstance(entry, str):
            return entry
        if entry.trained["task"] != spec["task"]:
            return f"member {ref} is a {entry.trained['task']} model, the ensemble's task is {spec['task']}"
        members.append(member_record(entry.trained, weight))
    latest = inventory.latest(spec["model"])
    if request["reason"] == "member-changed" and latest and [(m["model"], m["version"]) for m in members] == [
            (m["model"], m["version"]) for m in latest[-1].trained["members"]]:
        return None                 # e.g. both members moved at once: the latest version already pins these
    pinned_spec = {**spec, "features": union(members, "features"),
                   "categorical_features": union(members, "categorical_features")}
    settings = {"combine": method, "weights": [m["weight"] for m in members],
                "members": [f"{m['model']}@{m['version']}" for m in members]}
    return TrainingPlan(request=request, spec=pinned_spec, version=version, batches=batches, grid=[settings],
                        seed=spec["seed"], reproduces=reproduces, members=tuple(members),
                        run_ids=[derive_id(request["request_id"], "reproduction") if reproduces
                                 else derive_id(request["request_id"], "run", 0)])


def member_version(inventory: Inventory, ref: str) -> ModelVersion | str:
    """The approved version MODEL@VERSION or MODEL@ALIAS names, or why it cannot be a member."""
    model, _, which = ref.partition("@")
    entry = inventory.named(model, which)
    if entry is None:
        known = ", ".join(f"@{a}" for a in inventory.aliases.get(model, {})) or "none"
        return f"member {ref}: no such version (aliases of {model}: {known})"
    if entry.status != APPROVED:
        return f"member {model} v{entry.version} is {entry.status}: an ensemble is built from approved versions"
    if is_ensemble(entry.trained):
        return f"member {model} v{entry.version} is itself an ensemble: name its members instead"
    return entry


def choose_batches(passed: list[dict], selection: str, wanted_ids: list[str]) -> list[dict] | str:
    if wanted_ids:
        by_id = {b["batch_id"]: b for b in passed}
        missing = [i for i in wanted_ids if i not in by_id]
        return f"batches not passed validation: {', '.join(missing)}" if missing else [by_id[i] for i in wanted_ids]
    if not passed:
        return "no batch of the dataset has passed validation yet"
    if selection.startswith("latest:"):
        return passed[-int(selection.split(":", 1)[1]):]
    return list(passed)


def plan_reproduction(view: TrainerView, request: dict) -> TrainingPlan | str:
    original = view.runs.get(request["reproduce_run_id"])
    if original is None:
        return f"no recorded run {request['reproduce_run_id']!r}"
    if original.get("spec_json"):
        spec = content(original["spec_json"])
    elif (spec := view.specs.get(original["model"])) is None:       # a run recorded before spec_json existed
        return f"no spec for model {original['model']!r}"
    batches = batch_refs(original["batches"])
    recorded_spec = {**spec, "model": original["model"], "estimator": original["estimator"],
                     "metric": original["metric"]}
    reproduced = reproduced_features(view.feature_views, original, recorded_spec)
    if isinstance(reproduced, str):
        return reproduced
    features, recorded_spec = reproduced
    if is_ensemble(recorded_spec):          # the same members, by version: the ones the run combined
        settings = content(original["hyperparameters_json"])
        return ensemble_plan(view.inventory, recorded_spec, request, batches, settings["members"],
                             settings["weights"], settings["combine"], 0, original)
    return TrainingPlan(request=request, spec=recorded_spec, version=0, batches=batches,
                        grid=[content(original["hyperparameters_json"])], seed=original["seed"],
                        run_ids=[derive_id(request["request_id"], "reproduction")], reproduces=original,
                        features=features)


def best_run(results: list[dict], metric: str) -> int:
    """Index of the run with the best cross-validated metric (holdout as tie-break)."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    return max(range(len(results)), key=lambda i: (sign * results[i]["cv_metrics"].get(metric, float("nan")),
                                                  sign * results[i]["metrics"][metric]))


def reproduction_differences(original: dict, result: dict) -> list[str]:
    differences = []
    if original["predictions_sha256"] != result["predictions_sha256"]:
        differences.append("holdout predictions differ")
    for name, value in original["metrics"].items():
        if result["metrics"].get(name) != value:
            differences.append(f"{name}: {value} then, {result['metrics'].get(name)} now")
    if original["artifact_sha256"] and original["artifact_sha256"] != result["artifact_sha256"]:
        differences.append("artifact bytes differ (skops names its array files by object id)")
    return differences


def refusal(request: dict, reason: str, now: datetime, unverified: bool = False) -> Event:
    """A `training-refused` alert. `unverified`: the request's signature failed, so its id proves nothing — the
    alert then marks no request handled (its id is the refusal's own, not derived from the request's alone)."""
    return alert("training-refused", request["model"], f"training request {request['request_id']} not trained: "
                 f"{reason}", request["request_id"], now,
                 evidence={"request_id": request["request_id"], "reason": reason, "unverified": unverified},
                 alert_id=derive_id(request["request_id"], "training-refused", reason) if unverified else None)


Verify = Callable[[Received, tuple[str, ...]], Verdict]
# Who may make the acts the trainer takes (every one signed, by a person or a service): a spec by a data
# scientist; a training request by whom its reason says — people for theirs, a named service for its own.
SPEC_AUTHORS = ("data-scientist",)
REQUESTERS: dict[str, tuple[str, ...]] = {
    "manual": ("data-scientist", "operator"), "reproduce": ("data-scientist", "operator"), "schedule": ("operator",),
    "new-data": ("service:trainer",), "member-changed": ("service:trainer",), "drift": ("service:drift-watcher",)}


def act_refusal(message: Received, verify: Verify) -> str | None:
    """Why a spec or training request is not taken (its signature, its signer), or None. The actor is the verified
    signer: a request's `requested_by` must name it, whatever the reason claims."""
    if message.record == "mlbus.ModelSpecDefined":
        return refusal_of(message, verify, SPEC_AUTHORS)
    if message.record != "mlbus.TrainingRequested":
        return None
    allowed = REQUESTERS.get(message.value["reason"])
    if allowed is None:
        return f"unknown reason {message.value['reason']!r} (one of {', '.join(REQUESTERS)})"
    return refusal_of(message, verify, allowed)


@dataclass(frozen=True)
class Provenance:
    code_version: str
    git_commit: str | None
    environment: dict


def batch_refs(batches: list[dict]) -> list[dict]:
    return [{"batch_id": b["batch_id"], "dataset": b["dataset"], "sha256": b["sha256"], "rows": b["rows"],
             "uri": b["uri"]} for b in batches]


# What a run takes from its spec beyond estimator and metric (recorded in the run, so reproduction uses them).
RUN_SPEC_FIELDS = ("dataset", "features", "categorical_features", "sensitive_features", "encoding", "target", "task",
                   "test_size", "cv_folds", "spec_sha256", "feature_views_json")
# A version's and a run's record of the feature views joined: none unless the spec names views.
NO_FEATURES = {"feature_views_json": None, "features_snapshot_sha256": None, "features_until_json": None}


def run_event(plan: TrainingPlan, index: int, result: dict, provenance: Provenance, now: datetime,
              chosen: bool = False, artifact_sha256: str = "") -> Event:
    run_id = plan.run_ids[index]
    value = {"run_id": run_id, "model": plan.spec["model"], "request_id": plan.request["request_id"],
             "reason": plan.request["reason"], "estimator": plan.spec["estimator"],
             "hyperparameters_json": json.dumps(plan.grid[index], sort_keys=True), "metric": plan.spec["metric"],
             "metrics": result["metrics"], "cv_metrics": result["cv_metrics"], "chosen": chosen,
             "fairness_json": json.dumps(result.get("fairness", {}), sort_keys=True),
             "version": plan.version if chosen else None, "predictions_sha256": result["predictions_sha256"],
             "artifact_sha256": artifact_sha256, "batches": batch_refs(plan.batches), "seed": plan.seed,
             "duration_ms": result["duration_ms"], "cpu_seconds": result.get("cpu_seconds", 0.0),
             "code_version": provenance.code_version,
             "git_commit": provenance.git_commit, "environment": provenance.environment,
             "reproduces_run_id": None, "identical": None, "differences": [], "finished_at": now,
             "spec_json": json.dumps({k: plan.spec[k] for k in RUN_SPEC_FIELDS if plan.spec.get(k) is not None},
                                   sort_keys=True),
             "ran_on": result.get("ran_on"), **NO_FEATURES, **plan.features_record}
    if plan.reproduces:
        differences = reproduction_differences(plan.reproduces, {**result, "artifact_sha256": artifact_sha256})
        value.update(reproduces_run_id=plan.reproduces["run_id"], differences=differences,
                     identical=not [d for d in differences if d.startswith(("holdout", *result["metrics"]))])
    return Event("mlbus.TrainingRun", key=plan.spec["model"], id=run_id, subject=plan.spec["model"], value=value)


def trained_event(plan: TrainingPlan, best: int, result: dict, artifact: tuple[str, str], profile: list[dict],
                  provenance: Provenance, duration_ms: int, now: datetime, cpu_seconds: float = 0.0,
                  compute: dict | None = None) -> Event:
    """The version; duration_ms and cpu_seconds are the whole training's (every grid point): what it cost;
    compute, where its grid ran (compute.compute_used)."""
    spec, request = plan.spec, plan.request
    event_id = derive_id(request["request_id"], "trained")
    return Event("mlbus.ModelTrained", key=spec["model"], id=event_id,
                 subject=f"{spec['model']}@{plan.version}", value={
        "model": spec["model"], "version": plan.version, "run_id": plan.run_ids[best],
        "request_id": request["request_id"], "reason": request["reason"], "requested_by": request["requested_by"],
        "spec_defined_by": spec["defined_by"],
        "task": spec["task"], "estimator": spec["estimator"],
        "hyperparameters_json": json.dumps(plan.grid[best], sort_keys=True), "features": spec["features"],
        "categorical_features": list(spec.get("categorical_features", [])),
        "target": spec["target"], "metric": spec["metric"], "metrics": result["metrics"],
        "cv_metrics": result["cv_metrics"], "batches": batch_refs(plan.batches),
        "fairness_json": json.dumps(result.get("fairness", {}), sort_keys=True),
        "importances": result.get("importances", {}),
        "code_version": provenance.code_version, "git_commit": provenance.git_commit,
        "environment": provenance.environment, "seed": plan.seed, "duration_ms": duration_ms,
        "cpu_seconds": cpu_seconds,
        "artifact_uri": artifact[0], "artifact_sha256": artifact[1], "members": list(plan.members),
        "feature_profile": profile,
        "prediction_profile": result.get("prediction_profile"),
        "spec_sha256": spec["spec_sha256"], "card_json": spec.get("card_json", "{}"), "trained_at": now,
        "compute": {k: v for k, v in compute.items() if k != "workers"} if compute else None,
        "compute_workers": compute["workers"] if compute else None, **NO_FEATURES, **plan.features_record})
