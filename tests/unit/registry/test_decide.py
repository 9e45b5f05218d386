"""The registry's pure decisions, folded through the shared inventory projection."""
import json
from datetime import datetime, timezone

from services.bus.projections.inventory import APPROVED, AWAITING, REJECTED, Inventory
from services.bus.signing import Verdict
from services.registry.decide import on_approval, on_deployment, on_policy, on_trained

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)
POLICY = {"model": "m", "policy_version": 2, "thresholds": {"roc_auc": 0.8}, "metric": "roc_auc",
          "min_improvement": 0.01, "human_approval": True, "approvers": ["ana", "bo"], "four_eyes": True}


def trained(version: int, roc_auc: float, requested_by: str = "cli:carl", run: str = "r") -> dict:
    return {"model": "m", "version": version, "run_id": f"{run}{version}", "metrics": {"roc_auc": roc_auc},
            "metric": "roc_auc", "artifact_sha256": "a" * 64, "requested_by": requested_by}


def fold(inventory: Inventory, record: str, value: dict, events) -> list:
    inventory.apply(record, value)
    for event in events:
        inventory.apply(event.record, event.value)
    return events


def registered(inventory: Inventory, value: dict) -> list:
    inventory.apply("mlbus.ModelTrained", value)
    return fold(inventory, "mlbus.ModelTrained", value, on_trained(inventory, value, f"c{value['version']}", NOW))


def approval(actor: str, version: int = 1, decision: str = "approve") -> dict:
    return {"approval_id": f"a-{actor}-{version}", "model": "m", "version": version, "decision": decision,
            "actor": actor, "reason": "looks good", "artifact_sha256": "a" * 64}


def verified(signer: str) -> Verdict:
    return Verdict(signer=signer, signer_key=f"key-of-{signer}")


def inventory_with_policy(**changes) -> Inventory:
    inventory = Inventory()
    inventory.apply("mlbus.PromotionPolicyDefined", {**POLICY, **changes})
    return inventory


def test_a_version_needing_a_human_waits_and_an_authorised_approval_releases_it():
    inventory = inventory_with_policy()
    assert [e.value["kind"] for e in registered(inventory, trained(1, 0.9))] == ["registered"]
    assert inventory.version("m", 1).status == AWAITING
    [approved] = fold(inventory, "x", {}, on_approval(inventory, approval("ana"), verified("ana"), NOW))
    assert approved.value["kind"] == "approved" and approved.value["actor"] == "ana"
    assert approved.value["policy_version"] == 2 and inventory.version("m", 1).status == APPROVED


def test_an_unauthorised_approver_and_a_four_eyes_violation_are_refused_with_reasons():
    inventory = inventory_with_policy(approvers=["ana", "carl", "dana"])
    registered(inventory, {**trained(1, 0.9, requested_by="cli:carl"), "spec_defined_by": "dana"})
    [stranger] = on_approval(inventory, approval("mallory"), verified("mallory"), NOW)
    [own] = on_approval(inventory, approval("carl"), verified("carl"), NOW)
    [author] = on_approval(inventory, approval("dana"), verified("dana"), NOW)
    assert stranger.value["kind"] == own.value["kind"] == author.value["kind"] == "approval-refused"
    assert "not an approver" in stranger.value["reason"] and "requested this training" in own.value["reason"]
    assert "wrote the spec" in author.value["reason"]
    assert inventory.version("m", 1).status == AWAITING


def test_an_approval_binds_the_versions_artifact():
    inventory = inventory_with_policy()
    registered(inventory, trained(1, 0.9))
    unbound = {**approval("ana"), "artifact_sha256": None}
    other = {**approval("ana"), "approval_id": "a2", "artifact_sha256": "b" * 64}
    refusals = [on_approval(inventory, act, verified("ana"), NOW)[0].value for act in (unbound, other)]
    assert [r["kind"] for r in refusals] == ["approval-refused"] * 2
    assert "binds no artifact" in refusals[0]["reason"] and "this version's artifact is" in refusals[1]["reason"]


def test_a_policy_that_does_not_supersede_the_current_one_is_refused():
    current = {"model": "m", "policy_version": 3, "defined_by": "lead", "act_id": "p3"}
    older = {**current, "policy_version": 2, "act_id": "p2"}
    assert on_policy(current, verified("lead"), "c", NOW, current) == []          # the same act read again
    [refused] = on_policy(older, verified("lead"), "c", NOW, current)
    assert "does not supersede the current v3" in refused.value["message"]
    assert on_policy({**current, "policy_version": 4, "act_id": "p4"}, verified("lead"), "c", NOW, current) == []


def test_auto_approval_when_the_policy_needs_no_human():
    inventory = inventory_with_policy(human_approval=False)
    kinds = [e.value["kind"] for e in registered(inventory, trained(1, 0.9))]
    assert kinds == ["registered", "approved"] and inventory.version("m", 1).status == APPROVED


def test_thresholds_and_the_champion_comparison_reject_with_evidence():
    inventory = inventory_with_policy(human_approval=False)
    [_, below] = registered(inventory, trained(1, 0.7))
    assert below.value["kind"] == "rejected" and "threshold" in below.value["reason"]
    registered(inventory, trained(2, 0.9))
    inventory.aliases["m"] = {"champion": 2}
    [_, small] = registered(inventory, trained(3, 0.905))
    evidence = json.loads(small.value["evidence_json"])
    assert small.value["kind"] == "rejected" and evidence["champion_version"] == 2
    assert abs(evidence["improvement"] - 0.005) < 1e-9 and inventory.version("m", 3).status == REJECTED


def test_registered_versions_are_immutable_and_redelivery_is_ignored():
    inventory = inventory_with_policy()
    registered(inventory, trained(1, 0.9))
    assert on_trained(inventory, trained(1, 0.9), "c1", NOW) == []                      # the same record again
    [refused] = on_trained(inventory, trained(1, 0.95, run="other"), "c9", NOW)
    assert refused.value["kind"] == "refused" and "immutable" in refused.value["reason"]
    assert inventory.version("m", 1).trained["metrics"]["roc_auc"] == 0.9


def test_an_approval_delivered_twice_is_decided_once():
    inventory = inventory_with_policy()
    registered(inventory, trained(1, 0.9))
    fold(inventory, "x", {}, on_approval(inventory, approval("ana"), verified("ana"), NOW))
    assert on_approval(inventory, approval("ana"), verified("ana"), NOW) == []


def test_a_completed_deployment_promotes_its_champion_once():
    inventory = inventory_with_policy(human_approval=False)
    registered(inventory, trained(1, 0.9))
    deployment = {"deployment_id": "d1", "model": "m", "phase": "completed", "strategy": "replace", "actor": "deployer",
                  "routes": [{"version": 1, "variant": "champion", "share": 1.0, "served": True,
                              "artifact_sha256": ""}]}
    [promoted] = fold(inventory, "x", {}, on_deployment(inventory, deployment, NOW))
    assert promoted.value["kind"] == "promoted" and promoted.value["alias"] == "champion"
    assert inventory.aliases == {"m": {"champion": 1}}
    assert on_deployment(inventory, deployment, NOW) == []


def test_a_new_champion_retires_the_old_one_when_it_no_longer_serves():
    inventory = inventory_with_policy(human_approval=False)
    registered(inventory, trained(1, 0.9))
    registered(inventory, trained(2, 0.95))
    route = {"variant": "champion", "share": 1.0, "served": True, "artifact_sha256": ""}
    first = {"deployment_id": "d1", "model": "m", "phase": "completed", "strategy": "replace", "actor": "deployer",
             "routes": [{**route, "version": 1}]}
    fold(inventory, "x", {}, on_deployment(inventory, first, NOW))
    second = {**first, "deployment_id": "d2", "strategy": "canary", "routes": [{**route, "version": 2}]}
    events = fold(inventory, "x", {}, on_deployment(inventory, second, NOW))
    assert [(e.value["kind"], e.value["version"]) for e in events] == [("promoted", 2), ("retired", 1)]
    assert inventory.version("m", 1).status == "retired" and inventory.aliases["m"]["champion"] == 2


def test_an_approval_whose_signature_fails_is_refused_with_the_reason_and_decides_nothing():
    inventory = inventory_with_policy()
    registered(inventory, trained(1, 0.9))
    [forged] = on_approval(inventory, approval("ana"), Verdict(refusal="unknown signing key k9"), NOW)
    assert forged.value["kind"] == "approval-refused" and forged.value["actor"] == "unverified:ana"
    assert forged.value["reason"] == "signature: unknown signing key k9"
    [borrowed] = on_approval(inventory, approval("ana"), verified("bo"), NOW)       # bo signed, claims ana
    assert borrowed.value["kind"] == "approval-refused" and "signed by bo" in borrowed.value["reason"]
    assert inventory.version("m", 1).status == AWAITING


def test_four_eyes_compares_the_verified_signer_with_who_requested_the_training():
    inventory = inventory_with_policy(approvers=[])
    registered(inventory, trained(1, 0.9, requested_by="cli:bo"))
    [own] = on_approval(inventory, approval("bo"), verified("bo"), NOW)
    assert own.value["kind"] == "approval-refused" and "four-eyes" in own.value["reason"]


def test_a_policy_is_adopted_only_when_an_admin_signed_it():
    assert on_policy(POLICY | {"defined_by": "cli:lead"}, verified("lead"), "p1", NOW) == []
    [refused] = on_policy(POLICY | {"defined_by": "cli:lead"}, Verdict(refusal="unsigned: ..."), "p1", NOW)
    assert refused.record == "mlbus.Alert" and refused.value["kind"] == "policy-refused"


def test_an_unverified_approval_marks_no_approval_id_decided():
    inventory = inventory_with_policy()
    registered(inventory, trained(1, 0.9))
    forged = approval("ana", decision="reject")
    [refused] = fold(inventory, "x", {}, on_approval(inventory, forged, Verdict(refusal="unsigned"), NOW))
    assert refused.value["kind"] == "approval-refused"
    [rejected] = on_approval(inventory, forged, verified("ana"), NOW)          # ana's own act, with that id, after
    assert rejected.value["kind"] == "rejected"
