"""A model card from audit.log's events alone: each section checked against the events it came from, the card
as of a past moment, and markup in a name rendered as text."""
import json
from datetime import datetime, timedelta, timezone

from services.cli.model_card import NO_IMPORTANCES, NO_SENSITIVE, html, markdown, model_card
from services.domain import Audited
from services.domain.fairness import group_fairness
from tests.unit.console.test_pages import lifecycle, trained

T0 = datetime(2026, 11, 27, 9, tzinfo=timezone.utc)


def event(sequence: int, record: str, value: dict) -> Audited:
    return Audited(sequence, T0 + timedelta(minutes=sequence), "t", "x", record, value, {})


def story() -> list[Audited]:
    card = {"owner": "claims team", "description": "flags fraud", "intended_use": "triage", "risk_level": "high"}
    return [
        event(1, "mlbus.DataBatch", {"batch_id": "b1", "dataset": "d", "sha256": "f" * 64, "rows": 10}),
        event(2, "mlbus.DataValidated", {"batch_id": "b1", "contract": "d@v1", "passed": True}),
        event(3, "mlbus.PromotionPolicyDefined", {"model": "m", "policy_version": 1, "metric": "roc_auc",
                                                  "thresholds": {"roc_auc": 0.9}, "min_improvement": 0.0,
                                                  "human_approval": True, "approvers": ["ana"], "four_eyes": True,
                                                  "defined_by": "cli:lead"}),
        event(4, "mlbus.ModelTrained", {**trained("m", 1), "card_json": json.dumps(card)}),
        event(5, "mlbus.ModelLifecycle", lifecycle("m", 1, "registered", "registry", "registered", 5)),
        event(6, "mlbus.ModelLifecycle", lifecycle("m", 1, "approved", "ana", "reviewed", 6)),
        event(7, "mlbus.DeploymentChanged", {"deployment_id": "d1", "model": "m", "strategy": "replace",
                                             "phase": "completed", "actor": "deployer",
                                             "routes": [{"version": 1, "variant": "champion", "share": 1.0}]}),
        event(8, "mlbus.DriftReport", {"model": "m", "version": 1, "window_id": "w1", "drift_share": 0.5,
                                       "dataset_drift": True, "performance": [{"variant": "champion", "metric":
                                                                               "accuracy", "value": 0.8,
                                                                               "outcomes": 40}]}),
        event(9, "mlbus.Alert", {"model": "m", "version": 1, "kind": "drift", "severity": "critical",
                                 "message": "drifted"}),
        event(10, "mlbus.ModelTrained", trained("m", 2))]


def test_each_section_comes_from_its_events():
    card = model_card(story(), "m", 1)
    assert card["audit_sequence"] == 4 and card["purpose"]["owner"] == "claims team"
    assert card["purpose"]["risk_level"] == "high" and card["purpose"]["target"] == "y"
    [batch] = card["training_data"]
    assert batch["audit_sequence"] == 1 and batch["validation"] == {"contract": "d@v1", "passed": True, "audit_sequence": 2}
    assert card["estimator"]["hyperparameters"] == {"C": 1.0} and card["estimator"]["artifact_sha256"] == "a" * 64
    assert card["metrics"]["holdout"] == {"roc_auc": 0.97}
    assert card["fairness"] == NO_SENSITIVE and card["importances"] == NO_IMPORTANCES
    assert [p["audit_sequence"] for p in card["governance"]["policies"]] == [3]
    assert [(d["kind"], d["actor"], d["audit_sequence"]) for d in card["governance"]["decisions"]] == [
        ("registered", "registry", 5), ("approved", "ana", 6)]
    assert card["governance"]["decisions"][1]["evidence"] == {"signer_key": "key-ana"}
    assert [(d["phase"], d["share"], d["audit_sequence"]) for d in card["deployments"]] == [("completed", 1.0, 7)]
    monitoring = card["monitoring"]
    assert monitoring["windows"] == 1 and monitoring["drifted_windows"] == 1
    assert monitoring["last_window"]["audit_sequence"] == 8 and [a["audit_sequence"] for a in monitoring["alerts"]] == [9]


def test_the_card_as_it_stood_before_the_approval_and_before_the_training():
    before = model_card(story(), "m", 1, until=T0 + timedelta(minutes=5, seconds=30))
    assert [d["kind"] for d in before["governance"]["decisions"]] == ["registered"] and before["deployments"] == []
    assert model_card(story(), "m", 1, until=T0 + timedelta(minutes=3)) is None
    assert model_card(story(), "m", 9) is None


def test_markdown_names_every_section_and_html_escapes_values():
    events = story()
    events[3].value["card_json"] = json.dumps({"description": "<img src=x onerror=alert(1)>"})
    text = markdown(model_card(events, "m", 1))
    for heading in ("Purpose", "Training data", "Estimator", "Metrics", "Fairness", "Global importances",
                    "Governance", "Deployments", "Drift and online performance"):
        assert f"## {heading}" in text
    page = html(model_card(events, "m", 1))
    assert "<img" not in page and "&lt;img src=x" in page


def test_fairness_and_importances_come_from_the_version_record():
    truth = ["yes", "no"] * 40
    report = {"sex": group_fairness(truth, ["yes"] * 80, ["F", "M"] * 40, "classification", "yes")}
    events = story()
    events[3].value.update(fairness_json=json.dumps(report), importances={"income": 0.2, "sex": 0.05, "age": -0.01})
    card = model_card(events, "m", 1)
    assert card["fairness"] == report and list(card["importances"]) == ["income", "sex", "age"]
    text = markdown(card)
    assert "**sex** (groups of ≥ 30 holdout rows judged: F, M): demographic_parity_difference 0.0000" in text
    assert "  - F: count 40, selection_rate 1.000" in text and "- income: 0.2000" in text
