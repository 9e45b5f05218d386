"""The fairness gate on the real broker: loan applications with a planted bias against one group train a version
whose demographic-parity difference the trainer measures (equal to fairlearn's own on the same holdout
predictions) and the registry rejects, naming the metric and the groups; the same applications without the bias
train a version the policy approves."""
from __future__ import annotations

import json

import pandas as pd
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from services.bus.settings import PROJECT_ROOT
from services.cli.sample_data import loan_applications
from services.domain import ArtifactStore, local_path
from services.domain.datasets import publish_batch
from services.trainer.training import split
from tests.support.polling import topic_values, wait_until
from tests.support.processes import running

EXAMPLES = PROJECT_ROOT / "scripts" / "examples"
MODEL = "loan_approval"


def decisions(bus, version: int) -> list[dict]:
    return [e for e in topic_values(bus, "models.lifecycle") if e["model"] == MODEL and e["version"] == version]


def test_a_planted_bias_is_measured_and_rejected_the_same_data_without_it_passes(bus, bus_env, cli, tmp_path):
    assert cli("models", "policy", str(EXAMPLES / "loan_applications_policy.yaml"), person="lead").returncode == 0
    defined = cli("models", "define", str(EXAMPLES / "loan_applications_lr.yaml"), person="dana")
    assert defined.returncode == 0, defined.stderr
    biased, fair = tmp_path / "biased.csv", tmp_path / "fair.csv"
    loan_applications(3000, seed=1, bias=1.5).to_csv(biased, index=False)
    loan_applications(3000, seed=2).to_csv(fair, index=False)
    with running("services.validator", bus_env, tmp_path / "validator.log"), \
            running("services.trainer", bus_env, tmp_path / "trainer.log"), \
            running("services.registry", bus_env, tmp_path / "registry.log"):
        publish_batch(bus, "loan_applications", biased, "t")
        [rejected] = wait_until(lambda: [e for e in decisions(bus, 1) if e["kind"] == "rejected"], timeout=180,
                                message="v1 judged")
        publish_batch(bus, "loan_applications", fair, "t")
        [approved] = wait_until(lambda: [e for e in decisions(bus, 2) if e["kind"] in ("approved", "rejected")],
                                timeout=180, message="v2 judged")
        shown = json.loads(cli("models", "show", f"{MODEL}@1", "--json").stdout)[0]

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
    model = ArtifactStore(bus.settings.artifacts_dir, bus.settings.max_artifact_bytes).load(
        trained[1]["artifact_uri"], trained[1]["artifact_sha256"])
    y_true, y_pred = (data.y_test == "yes").astype(int), (model.predict(data.x_test) == "yes").astype(int)
    groups = data.sensitive_test["sex"]
    assert abs(report["demographic_parity_difference"]
               - demographic_parity_difference(y_true, y_pred, sensitive_features=groups)) < 1e-9
    assert abs(report["equalized_odds_difference"]
               - equalized_odds_difference(y_true, y_pred, sensitive_features=groups)) < 1e-9
    assert shown["trained"]["importances"]["income"] > 0
