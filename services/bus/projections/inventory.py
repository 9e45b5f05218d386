"""The model inventory: versions with their status, approvals and aliases, and each model's policy."""
from __future__ import annotations

from dataclasses import dataclass, field

AWAITING, APPROVED, REJECTED, RETIRED = "awaiting-approval", "approved", "rejected", "retired"
STATUS_AFTER = {"approved": APPROVED, "rejected": REJECTED, "retired": RETIRED}
# The policy of a model nobody defined one for: a person approves, not the one who asked for the training.
DEFAULT_POLICY = {"policy_version": 0, "thresholds": {}, "fairness": {}, "metric": None, "min_improvement": 0.0,
                  "human_approval": True, "approvers": [], "four_eyes": True}
# What the inventory is folded from, in the order a rebuild applies them.
INVENTORY_RECORDS = ("mlbus.PromotionPolicyDefined", "mlbus.ModelTrained", "mlbus.ModelLifecycle")


@dataclass
class ModelVersion:
    model: str
    version: int
    trained: dict                                # the ModelTrained record
    status: str = AWAITING
    history: list[dict] = field(default_factory=list)     # ModelLifecycle records, in order


@dataclass
class Inventory:
    versions: dict[tuple[str, int], ModelVersion] = field(default_factory=dict)
    policies: dict[str, dict] = field(default_factory=dict)           # model → PromotionPolicyDefined
    aliases: dict[str, dict[str, int]] = field(default_factory=dict)  # model → alias → version
    seen: set[str] = field(default_factory=set)                       # ids of folded lifecycle events
    causes: set[str] = field(default_factory=set)                     # ids of events already decided on
    # Decisions about a version not seen yet (topics interleave: a consumer may read the registry's
    # decision before the ModelTrained it is about); applied when the version arrives.
    waiting: dict[tuple[str, int], list[dict]] = field(default_factory=dict)

    def latest(self, model: str) -> list[ModelVersion]:
        return sorted((v for (m, _), v in self.versions.items() if m == model), key=lambda v: v.version)

    def version(self, model: str, version: int) -> ModelVersion | None:
        return self.versions.get((model, version))

    def named(self, model: str, which: str) -> ModelVersion | None:
        """The version `which` names: a number, or an alias (champion, ...)."""
        version = int(which) if which.isdigit() else self.aliases.get(model, {}).get(which)
        return None if version is None else self.version(model, version)

    def champion(self, model: str) -> ModelVersion | None:
        version = self.aliases.get(model, {}).get("champion")
        return None if version is None else self.version(model, version)

    def policy(self, model: str) -> dict:
        return self.policies.get(model, {**DEFAULT_POLICY, "model": model})

    def apply(self, record: str, value: dict) -> list[dict]:
        """Fold one event in; the same event twice changes nothing. Returns the lifecycle decisions that
        took effect now (one, or those that were waiting for this version)."""
        if record == "mlbus.ModelTrained":
            key = (value["model"], value["version"])
            self.versions.setdefault(key, ModelVersion(value["model"], value["version"], value))  # first one wins
            waiting = self.waiting.pop(key, [])
            for event in waiting:
                self._lifecycle(event)
            return waiting
        if record == "mlbus.PromotionPolicyDefined":
            if supersedes(value, self.policies.get(value["model"])):
                self.policies[value["model"]] = value
        elif record == "mlbus.ModelLifecycle" and value["event_id"] not in self.seen:
            self.seen.add(value["event_id"])
            self.causes.add(value["cause_id"])
            if self.version(value["model"], value["version"]) is None:
                self.waiting.setdefault((value["model"], value["version"]), []).append(value)
                return []
            self._lifecycle(value)
            return [value]
        return []

    def _lifecycle(self, event: dict) -> None:
        entry = self.versions[(event["model"], event["version"])]     # apply() calls this once the version is known
        entry.history.append(event)
        if event["kind"] in STATUS_AFTER:
            entry.status = STATUS_AFTER[event["kind"]]
        if event["kind"] == "promoted" and event["alias"]:
            self.aliases.setdefault(event["model"], {})[event["alias"]] = event["version"]


def supersedes(policy: dict, current: dict | None) -> bool:
    """A policy takes over only from an older one: a higher policy_version (the same one again changes nothing,
    and an old signed policy published again cannot bring its rules back)."""
    return current is None or policy["policy_version"] > current["policy_version"]


def artifact_refusal(act: dict, artifact_sha256: str) -> str | None:
    """An approval (or deployment) binds the artifact it is about, not only (model, version)."""
    bound = act.get("artifact_sha256")
    if bound is None:
        return "the act binds no artifact (artifact_sha256): it could be about any artifact under this version"
    if bound != artifact_sha256:
        return f"the act binds artifact {bound[:16]}…, this version's artifact is {artifact_sha256[:16]}…"
    return None


def approval_refusal(entry: ModelVersion | None, policy: dict, actor: str) -> str | None:
    """Why the policy does not let `actor` decide on this version now (the registry's rule; the console asks it
    too, to say why a person cannot approve), or None."""
    if entry is None:
        return "unknown model version"
    if entry.status != AWAITING:
        return f"version is {entry.status}, not awaiting approval"
    if policy["approvers"] and actor not in policy["approvers"]:
        return f"not an approver: the policy names {', '.join(policy['approvers'])}"
    if policy["four_eyes"] and actor == entry.trained["requested_by"].removeprefix("cli:"):
        return "four-eyes: the approver requested this training"
    if policy["four_eyes"] and actor == (entry.trained.get("spec_defined_by") or "").removeprefix("cli:"):
        return "four-eyes: the approver wrote the spec this version was trained from"
    return None


def inventory_from(events: list[tuple[str, dict]]) -> Inventory:
    """Fold (record, value) pairs in INVENTORY_RECORDS order, as a rebuild does: policies and versions
    before the decisions about them, however the topics they came from interleaved."""
    inventory = Inventory()
    for wanted in INVENTORY_RECORDS:
        for record, value in events:
            if record == wanted:
                inventory.apply(record, value)
    return inventory
