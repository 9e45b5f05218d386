"""The registry's handler with in-memory ports (database, verifier): an approval of a version that does not
exist is refused as an event, and the database mirror is written for the model either way."""
from datetime import datetime, timezone

from services.bus.projections.inventory import Inventory
from services.bus.signing import Verdict
from services.registry.handlers import Registry
from tests.support.handlers import received

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


class Database:
    """The SQL mirror's port: remembers which models it was asked to save."""

    def __init__(self):
        self.saved: list[set[str]] = []

    def save(self, inventory: Inventory, models: set[str]) -> None:
        self.saved.append(models)


def test_an_approval_of_a_version_that_does_not_exist_is_an_approval_refused_event():
    database = Database()
    registry = Registry(Inventory(), database, lambda message, roles: Verdict(signer="ana", signer_key="k"),
                        clock=lambda: NOW)
    approval = {"approval_id": "a1", "model": "no-such-model", "version": 999, "decision": "approve",
                "actor": "ana", "reason": "ok", "submitted_at": NOW}
    [refused] = registry(received("mlbus.ApprovalSubmitted", approval))
    assert refused.value["kind"] == "approval-refused" and refused.value["actor"] == "ana"
    assert database.saved == [{"no-such-model"}]
    assert registry(received("mlbus.ApprovalSubmitted", approval)) == []        # the same approval: decided once


def test_an_unsigned_policy_is_refused_with_an_alert_and_not_adopted():
    registry = Registry(Inventory(), Database(), lambda message, roles: Verdict(refusal="no signature"),
                        clock=lambda: NOW)
    policy = {"model": "m", "policy_version": 1, "thresholds": {}, "metric": "roc_auc", "min_improvement": 0.0,
              "human_approval": False, "approvers": [], "four_eyes": False, "defined_by": "cli:mallory"}
    [alert] = registry(received("mlbus.PromotionPolicyDefined", policy))
    assert alert.value["kind"] == "policy-refused" and "no signature" in alert.value["message"]
    assert "m" not in registry.inventory.policies
