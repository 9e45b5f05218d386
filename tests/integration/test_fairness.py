"""The fairness gate on the real broker: loan applications with a planted bias against one group train a version
whose demographic-parity difference the trainer measures (equal to fairlearn's own on the same holdout
predictions) and the registry rejects, naming the metric and the groups; the same applications without the bias
train a version the policy approves; deployed, a window of traffic whose outcomes show the disparity raises a
`fairness` alert."""
from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timezone

import pandas as pd
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from services.bus import Event, Publisher, derive_id
from services.bus.settings import PROJECT_ROOT
from services.cli.sample_data import loan_applications
from services.adapters import ArtifactStore, local_path, publish_batch
from services.trainer.training import split
from tests.support.scoring import routed
from tests.support.polling import served, topic_values, wait_until
from tests.support.processes import running

EXAMPLES = PROJECT_ROOT / "scripts" / "examples"
MODEL = "loan_approval"
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer", "services.scorer",
            "services.drift_watcher")


def decisions(bus, version: int) -> list[dict]:
    return [e for e in topic_values(bus, "models.lifecycle") if e["model"] == MODEL and e["version"] == version]


def test_a_planted_bias_is_measured_and_rejected_the_same_data_without_it_passes(bus, bus_env, cli, tmp_path):
    assert cli("models", "policy", str(EXAMPLES / "loan_applications_policy.yaml"), person="lead").returncode == 0
    defined = cli("models", "define", str(EXAMPLES / "loan_applications_lr.yaml"), person="dana")
    assert defined.returncode == 0, defined.stderr
    biased, fair = tmp_path / "biased.csv", tmp_path / "fair.csv"
    loan_applications(3000, seed=1, bias=1.5).to_csv(biased, index=False)
    loan_applications(3000, seed=2).to_csv(fair, index=False)
    with ExitStack() as stack:
        for module in SERVICES:
            stack.enter_context(running(module, bus_env, tmp_path / f"{module}.log"))
        publish_batch(bus, "loan_applications", biased, "t")
        [rejected] = wait_until(lambda: [e for e in decisions(bus, 1) if e["kind"] == "rejected"], timeout=180,
                                message="v1 judged")
        publish_batch(bus, "loan_applications", fair, "t")
        [approved] = wait_until(lambda: [e for e in decisions(bus, 2) if e["kind"] in ("approved", "rejected")],
                                timeout=180, message="v2 judged")
        shown = json.loads(cli("models", "show", f"{MODEL}@1", "--json").stdout)[0]
        deployed = wait_until(lambda: [d for d in topic_values(bus, "deployments")
                                       if d["model"] == MODEL and d["phase"] == "completed"],
                              timeout=120, message="v2 deployed")
        routed(tmp_path / "services.scorer.log", deployed[-1])
        # online: applications from group F now come with low incomes, from M with high ones — the served
        # decisions select F far less often; once outcomes arrive, a window's figures cross the policy's limit
        publisher = Publisher(bus, "bank-app")
        first = ask(publisher, 200, "a")
        wait_until(lambda: len(served(bus, first)) == 200, timeout=120, message="the first 200 answers")
        tell_outcomes(publisher, first)
        ask(publisher, 200, "b")
        alert = wait_until(lambda: [a for a in topic_values(bus, "alerts") if a["kind"] == "fairness"],
                           timeout=180, message="a fairness alert")[0]
        online = wait_until(lambda: [r for r in topic_values(bus, "monitoring.drift")
                                     if json.loads(r["fairness_json"]).get("sex", {}).get("judged_groups")],
                            timeout=60, message="a drift report with online fairness")[0]

    trained = {t["version"]: t for t in topic_values(bus, "models.trained") if t["model"] == MODEL}
    report = json.loads(trained[1]["fairness_json"])["sex"]
    assert rejected["reason"].startswith(f"demographic_parity_difference for sex is {report['demographic_parity_difference']:.4g}")
    assert "≤ 0.1" in rejected["reason"]
    assert "F 0." in rejected["reason"] and "M 0." in rejected["reason"]
    assert rejected["actor"] == "policy:v1" and json.loads(rejected["evidence_json"])["fairness"]["sex"] == report
    assert approved["kind"] == "approved", approved["reason"]
    assert json.loads(trained[2]["fairness_json"])["sex"]["demographic_parity_difference"] <= 0.1
    # the recorded figures are fairlearn's on the version's own holdout predictions
    spec = json.loads(next(r for r in topic_values(bus, "training.runs") if r["version"] == 1)["spec_json"])
    [batch] = trained[1]["batches"]
    frame = pd.read_csv(local_path(batch["uri"]))
    data = split(frame, spec["features"], spec["target"], spec["task"], spec["test_size"], trained[1]["seed"],
                 tuple(spec["categorical_features"]), tuple(spec["sensitive_features"]))
    model = ArtifactStore(bus.settings.storage.artifacts_store, bus.settings.storage.max_artifact_bytes).load(
        trained[1]["artifact_uri"], trained[1]["artifact_sha256"])
    y_true, y_pred = (data.y_test == "yes").astype(int), (model.predict(data.x_test) == "yes").astype(int)
    groups = data.sensitive_test["sex"]
    assert abs(report["demographic_parity_difference"]
               - demographic_parity_difference(y_true, y_pred, sensitive_features=groups)) < 1e-9
    assert abs(report["equalized_odds_difference"]
               - equalized_odds_difference(y_true, y_pred, sensitive_features=groups)) < 1e-9
    assert shown["trained"]["importances"]["income"] > 0
    assert alert["severity"] == "critical" and alert["version"] == 2
    assert alert["message"].startswith("demographic_parity_difference for sex is") and "≤ 0.1" in alert["message"]
    figures = json.loads(online["fairness_json"])["sex"]
    assert figures["demographic_parity_difference"] > 0.5 and figures["groups"]["F"]["count"] >= 30


def applicant(i: int) -> tuple[dict, dict]:
    female = i % 2 == 0
    return ({"income": 20.0 if female else 95.0, "debt_ratio": 0.3, "years_employed": 6.0, "loan_amount": 20.0},
            {"sex": "F" if female else "M"})


def ask(publisher: Publisher, count: int, prefix: str) -> list[str]:
    ids = []
    for i in range(count):
        request_id = f"{prefix}-{i:04d}"
        features, categories = applicant(i)
        publisher.publish(Event("mlbus.InferenceRequest", key=request_id, id=derive_id(request_id), value={
            "request_id": request_id, "entity_id": request_id, "model": MODEL, "features": features,
            "categories": categories, "sent_at": datetime.now(timezone.utc)}))
        ids.append(request_id)
    publisher.flush()
    return ids


def tell_outcomes(publisher: Publisher, ids: list[str]) -> None:
    for i, request_id in enumerate(ids):
        publisher.publish(Event("mlbus.Outcome", key=request_id, id=derive_id("outcome", request_id), value={
            "outcome_id": derive_id("outcome", request_id), "request_id": request_id, "entity_id": request_id,
            "model": MODEL, "label": "yes" if i % 3 else "no", "value": None,
            "observed_at": datetime.now(timezone.utc)}))
    publisher.flush()
