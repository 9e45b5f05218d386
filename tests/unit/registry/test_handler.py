"""The registry's handler with in-memory ports (database, verifier): an approval of a version that does not
exist is refused as an event, and each message writes only the rows it changed."""
from datetime import datetime, timezone

from services.bus.projections.inventory import Inventory
from services.registry.handlers import Registry
from tests.support.handlers import received, refusing_people, verified_as

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


class Database:
    """The SQL mirror's port: remembers the rows of each write."""

    def __init__(self):
        self.writes: list[list] = []

    def write(self, rows: list) -> None:
        self.writes.append(rows)


def test_an_approval_of_a_version_that_does_not_exist_is_an_approval_refused_event():
    database = Database()
    registry = Registry(Inventory(), database, verified_as("ana"),
                        clock=lambda: NOW)
    approval = {"approval_id": "a1", "model": "no-such-model", "version": 999, "decision": "approve",
                "actor": "ana", "reason": "ok", "submitted_at": NOW}
    [refused] = registry(received("mlbus.ApprovalSubmitted", approval))
    assert refused.value["kind"] == "approval-refused" and refused.value["actor"] == "ana"
    assert database.writes == [[]]                      # a refusal of an unknown version changes no row
    assert registry(received("mlbus.ApprovalSubmitted", approval)) == []        # the same approval: decided once


def test_an_unsigned_policy_is_refused_with_an_alert_and_not_adopted():
    registry = Registry(Inventory(), Database(), refusing_people("no signature"),
                        clock=lambda: NOW)
    policy = {"model": "m", "policy_version": 1, "thresholds": {}, "metric": "roc_auc", "min_improvement": 0.0,
              "human_approval": False, "approvers": [], "four_eyes": False, "defined_by": "cli:mallory"}
    [alert] = registry(received("mlbus.PromotionPolicyDefined", policy))
    assert alert.value["kind"] == "policy-refused" and "no signature" in alert.value["message"]
    assert "m" not in registry.inventory.policies


def trained(version: int) -> dict:
    return {"model": "m", "version": version, "run_id": f"r{version}", "estimator": "logistic_regression",
            "metric": "roc_auc", "metrics": {"roc_auc": 0.8 + version / 100}, "artifact_uri": f"file:///a/{version}",
            "artifact_sha256": "a" * 64, "requested_by": "cli:carl", "trained_at": NOW}


def deployed(version: int) -> dict:
    return {"deployment_id": f"d{version}", "model": "m", "phase": "completed", "strategy": "direct",
            "actor": "deployer", "routes": [{"version": version, "variant": "champion", "served": True, "share": 1.0}]}


def test_each_message_writes_the_rows_it_changed_not_the_models_history():
    database = Database()
    registry = Registry(Inventory(), database, verified_as("ana"),
                        clock=lambda: NOW)
    for version in (1, 2, 3):
        registry(received("mlbus.ModelTrained", trained(version), offset=version))
        registry(received("mlbus.DeploymentChanged", deployed(version), offset=version))
    written = [{(type(row).__name__, row.version, getattr(row, "kind", None)) for row in rows}
               for rows in database.writes]
    assert written[-2] == {("ModelVersionRow", 3, None), ("LifecycleRow", 3, "registered")}
    # v3 promoted to champion, v2 retired: their decisions, both versions' statuses, the alias — nothing of v1
    assert written[-1] == {("LifecycleRow", 3, "promoted"), ("ModelVersionRow", 3, None), ("AliasRow", 3, None),
                           ("LifecycleRow", 2, "retired"), ("ModelVersionRow", 2, None)}
    assert [len(rows) for rows in database.writes[-1:]] == [5]                           # each row once


def test_a_refused_policy_writes_nothing_and_an_adopted_one_writes_its_row():
    policy = {"model": "m", "policy_version": 1, "thresholds": {}, "metric": "roc_auc", "min_improvement": 0.0,
              "human_approval": False, "approvers": [], "four_eyes": False, "defined_by": "cli:root"}
    refused, adopted = Database(), Database()
    Registry(Inventory(), refused, refusing_people("no signature"), clock=lambda: NOW)(
        received("mlbus.PromotionPolicyDefined", policy))
    Registry(Inventory(), adopted, verified_as("root"), clock=lambda: NOW)(
        received("mlbus.PromotionPolicyDefined", policy))
    assert refused.writes == [[]]
    assert [(type(row).__name__, row.policy_version) for row in adopted.writes[0]] == [("PolicyRow", 1)]


def test_a_version_record_not_signed_by_the_trainer_is_refused_and_registers_nothing():
    from services.bus.signing import Verdict
    trained = {"model": "m", "version": 1, "run_id": "r1", "metrics": {"roc_auc": 0.99}, "metric": "roc_auc",
               "artifact_sha256": "a" * 64, "requested_by": "trainer"}
    for verdict in (Verdict(refusal="unsigned: …"), Verdict(signer="eve", signer_key="k")):
        registry = Registry(Inventory(), Database(), lambda message, roles, v=verdict: v, clock=lambda: NOW)
        [alerted] = registry(received("mlbus.ModelTrained", trained))
        assert alerted.value["kind"] == "trained-refused" and registry.inventory.version("m", 1) is None

