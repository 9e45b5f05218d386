"""Serving SLOs on the real broker: v2 is the champion (v1 before it) and its spec sets a p99 latency no real
serving meets; after one window of its served predictions the deployer raises a critical `slo` alert and, as
the spec says, rolls back to v1 — which then serves."""
from __future__ import annotations

from contextlib import ExitStack

import yaml

from services.bus.settings import PROJECT_ROOT
from services.adapters import publish_batch
from tests.support.datasets import good, write
from tests.support.polling import topic_values, wait_until
from tests.support.processes import running
from tests.support.scoring import routed, send_requests

MODEL = "breast_cancer_lr"
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer", "services.scorer")


def history(bus) -> list[dict]:
    return [d for d in topic_values(bus, "deployments") if d["model"] == MODEL]


def test_a_champion_breaking_its_latency_slo_is_alerted_and_rolled_back(bus, bus_env, cli, tmp_path):
    spec = yaml.safe_load((PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml").read_text())
    spec.update(grid={}, cv_folds=0, monitoring={"slo_p99_ms": 0.001, "slo_window": 20, "slo_rollback": True})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "policy.yaml").write_text(f"model: {MODEL}\nmetric: roc_auc\nhuman_approval: false\n")
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    assert cli("models", "define", str(tmp_path / "spec.yaml"), person="dana").returncode == 0
    scorer_log = tmp_path / "services.scorer.log"
    with ExitStack() as stack:
        for module in SERVICES:
            stack.enter_context(running(module, bus_env, tmp_path / f"{module}.log"))
        publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t")
        wait_until(lambda: [d for d in history(bus) if d["phase"] == "completed"], timeout=180, message="v1 serves")
        assert cli("train", MODEL, "--wait", "180", person="dana").returncode == 0          # v2: an automatic canary
        wait_until(lambda: [d for d in history(bus) if d["phase"] == "started"], timeout=60, message="v2's canary")
        assert cli("rollback", MODEL, person="olga").returncode == 0
        wait_until(lambda: history(bus)[-1]["phase"] == "rolled-back", timeout=60, message="the canary stopped")
        assert cli("deploy", MODEL, "2", "--strategy", "replace", person="olga").returncode == 0
        champion = wait_until(lambda: history(bus)[-1]["phase"] == "completed" and history(bus)[-1]["version"] == 2
                              and history(bus)[-1], timeout=60, message="v2 the champion")
        routed(scorer_log, champion)
        send_requests(bus, MODEL, 20, prefix="slow")
        [slo] = wait_until(lambda: [a for a in topic_values(bus, "alerts") if a["kind"] == "slo"], timeout=120,
                           message="the SLO alert")
        back = wait_until(lambda: history(bus)[-1]["phase"] == "rolled-back" and history(bus)[-1], timeout=60,
                          message="the automatic rollback")
        routed(scorer_log, back)
        later = send_requests(bus, MODEL, 5, prefix="after")
        answers = wait_until(lambda: [p for p in topic_values(bus, "inference.predictions")
                                      if p["request_id"] in later and p["served"]] or None, timeout=60,
                             message="answers after the rollback")

    assert slo["severity"] == "critical" and slo["version"] == 2 and "p99 latency" in slo["message"]
    assert back["actor"] == "deployer" and back["reason"].startswith("automatic rollback: p99 latency")
    assert [r["version"] for r in back["routes"]] == [1] and {p["version"] for p in answers} == {1}
