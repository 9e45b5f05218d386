"""registry on the real broker: registration, a human approval with refused approvers, the database — on
SQLite and on PostgreSQL."""
from __future__ import annotations

import json

from services.adapters import publish_batch
from services.bus.settings import PROJECT_ROOT
from tests.support.lag import behind
from tests.support.databases import table_rows
from tests.support.datasets import good, write
from tests.support.polling import read_topic, topic_values, wait_until
from tests.support.processes import free_port, running

EXAMPLES = PROJECT_ROOT / "scripts" / "examples"


def lifecycle(bus, expected: int) -> list[dict]:
    return [bus.schemas.decode(m.value())[1] for m in read_topic(bus, "models.lifecycle", expected, timeout=120)]


def test_a_version_waits_for_an_authorised_approver_and_the_database_follows(database_url, bus_env, bus, cli,
                                                                            tmp_path):
    bus_env["MLBUS_DATABASE_URL"] = database_url           # where the registry mirrors its decisions
    publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t")
    assert cli("models", "policy", str(EXAMPLES / "breast_cancer_policy.yaml"), person="lead").returncode == 0
    port = free_port()                 # the trainer's /metrics
    services = [running(m, bus_env, tmp_path / f"{m}.log", **({"MLBUS_METRICS_PORT": str(port)}
                                                              if m == "services.trainer" else {})) for m in
                ("services.validator", "services.trainer", "services.registry")]
    for service in services:
        service.__enter__()
    try:
        read_topic(bus, "data.validated", expected=1, timeout=120)
        wait_until(lambda: behind(bus, [port], ["data.validated"]) == 0, timeout=120,
                   message="the trainer to take in the validated batch")
        # The spec arrives after the trainer saw the validated batch, so only the manual request below trains.
        assert cli("models", "define", str(EXAMPLES / "breast_cancer_lr.yaml"), person="dana").returncode == 0
        assert cli("train", "breast_cancer_lr", "--wait", "180", person="bo").returncode == 0
        [registered] = lifecycle(bus, expected=1)
        assert registered["kind"] == "registered" and registered["version"] == 1

        viewer = cli("approve", "breast_cancer_lr", "1", "--reason", "metrics ok", person="mallory")
        assert viewer.returncode == 1 and "TOPIC_AUTHORIZATION_FAILED" in viewer.stderr    # the broker says no
        for approver in ("carl", "bo", "ana"):
            assert cli("approve", "breast_cancer_lr", "1", "--reason", "metrics ok", person=approver).returncode == 0
            wait_until(lambda: len(topic_values(bus, "models.lifecycle")) > 1 + ["carl", "bo", "ana"].index(approver),
                       timeout=60,
                       message=f"the registry's decision on {approver}'s approval")
    finally:
        for service in reversed(services):
            service.__exit__(None, None, None)

    decisions = lifecycle(bus, expected=4)
    assert [d["kind"] for d in decisions] == ["registered", "approval-refused", "approval-refused", "approved"]
    assert "not an approver" in decisions[1]["reason"] and decisions[1]["actor"] == "carl"
    assert "four-eyes" in decisions[2]["reason"] and decisions[2]["actor"] == "bo"
    assert decisions[3]["actor"] == "ana" and decisions[3]["policy_version"] == 1
    assert json.loads(decisions[3]["evidence_json"])["metrics"]["roc_auc"] > 0.95

    shown = json.loads(cli("models", "show", "breast_cancer_lr@1", "--json").stdout)
    assert shown[0]["status"] == "approved" and len(shown[0]["decisions"]) == 4
    rows = table_rows(database_url)
    assert [(r["model"], r["version"], r["status"]) for r in rows["model_versions"]] == \
        [("breast_cancer_lr", 1, "approved")]
    assert len(rows["lifecycle_events"]) == 4 and [r["policy_version"] for r in rows["policies"]] == [1]
