"""The inventory folds decisions that arrive before the version they are about (topics interleave)."""
from services.bus.projections.inventory import APPROVED, Inventory

TRAINED = {"model": "m", "version": 1, "run_id": "r1", "artifact_sha256": "s"}


def lifecycle(kind: str, n: int) -> dict:
    return {"event_id": f"e{n}", "model": "m", "version": 1, "kind": kind, "alias": None, "cause_id": f"c{n}"}


def test_a_decision_read_before_its_version_waits_and_takes_effect_when_the_version_arrives():
    inventory = Inventory()
    assert inventory.apply("mlbus.ModelLifecycle", lifecycle("registered", 1)) == []
    assert inventory.apply("mlbus.ModelLifecycle", lifecycle("approved", 2)) == []
    applied = inventory.apply("mlbus.ModelTrained", TRAINED)
    assert [e["kind"] for e in applied] == ["registered", "approved"]
    assert inventory.version("m", 1).status == APPROVED
    assert inventory.apply("mlbus.ModelLifecycle", lifecycle("approved", 2)) == []      # twice: once


def test_in_order_a_decision_takes_effect_at_once():
    inventory = Inventory()
    assert inventory.apply("mlbus.ModelTrained", TRAINED) == []
    assert [e["kind"] for e in inventory.apply("mlbus.ModelLifecycle", lifecycle("approved", 1))] == ["approved"]
